"""Video files: writing browser-playable H.264 (PyAV). Reading and sampling live here too."""
from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np


def write_h264(frames_rgb: Iterable[np.ndarray], path: str | Path, fps: float, crf: int = 23) -> Path:
    """Write RGB uint8 frames (H, W, 3) as H.264 yuv420p MP4 with the moov atom up front.

    Browsers cannot play MPEG-4 part 2, and Gradio only converts when an ffmpeg binary exists, so
    everything the UI shows goes through here. Odd sizes are cropped by one pixel (yuv420p needs even).
    """
    import av  # imported here: av must be imported before decord anywhere in the process

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".partial" + path.suffix)
    rate = Fraction(fps).limit_denominator(1001)
    n = 0
    with av.open(str(tmp), mode="w", options={"movflags": "+faststart"}) as container:
        stream = None
        for frame in frames_rgb:
            if stream is None:
                h, w = frame.shape[:2]
                stream = container.add_stream("libx264", rate=rate)
                stream.width, stream.height = w - w % 2, h - h % 2
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf), "preset": "veryfast"}
            frame = np.ascontiguousarray(frame[: stream.height, : stream.width, :3])
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
            n += 1
        if stream is None:
            raise ValueError(f"no frames to write to {path}")
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)  # never leave a half-written file under the final name
    return path
