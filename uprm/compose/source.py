"""The footage we compose onto: probing and streaming frames through uprm.video, errors as ComposeError.

Frames are decoded sequentially rather than sought: seeking in AVI/MPEG-4 part 2 lands on key frames
only, and composition must be frame-exact and identical run to run.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from uprm.compose.errors import ComposeError
from uprm.evidence import VideoInfo

MIN_SIDE_PX = 64


def probe(path: str | Path) -> VideoInfo:
    """Metadata of a source video as decoded; ComposeError when it is missing, unreadable or tiny."""
    from uprm.video import VideoError, probe as probe_video

    try:
        info = probe_video(path)
    except VideoError as exc:
        raise ComposeError(f"source video: {exc}") from exc
    if info.frame_count < 2 or min(info.width, info.height) < MIN_SIDE_PX:
        raise ComposeError(
            f"{Path(path).name}: {info.frame_count} frames of {info.width}x{info.height} px is too little "
            f"video to compose on (need 2+ frames, {MIN_SIDE_PX}+ px a side)"
        )
    return info


def iter_frames(path: str | Path, start: int = 0, stop: int | None = None, step: int = 1
                ) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (frame index, RGB uint8 (H, W, 3)) for indices start, start+step, ... < stop, in order."""
    from uprm.video import iter_frames as decode

    for frame in decode(path):
        index = frame.frame_index
        if stop is not None and index >= stop:
            break
        if index >= start and (index - start) % step == 0:
            yield index, frame.rgb()
