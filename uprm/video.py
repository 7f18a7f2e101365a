"""Video files: probing, streaming decode with time-grid sampling, and writing browser-playable H.264.

Everything goes through PyAV. Frames are decoded one at a time and converted to RGB only when a
caller asks for them, so memory stays bounded whatever the video's length. Times are seconds from the
video stream's start; ``frame_index`` counts decoded frames from 0.

Bad input raises :class:`VideoError` (a ``ValueError``) with what was wrong and what to do. A file
that breaks part-way yields what could be decoded and reports the rest through ``on_warning``
(default: a :class:`VideoDecodeWarning` through :mod:`warnings`).
"""
from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from uprm.evidence import VideoInfo

# 2 samples per second: a person walking at 1.4 m/s moves about one body width between samples, so
# tracks stay associated and short events (a push, a fall: ~1 s) get two or more samples, while the
# per-sample front-ends (detector, pose, masks, frame features: ~0.15-0.25 s per sample on 2 CPU
# cores) run at about 0.3-0.5x real time. Higher rates cost linearly and add little for 1-2 s events.
DEFAULT_SAMPLE_FPS = 2.0

MAX_FRAME_SIDE = 16384  # larger than any real camera (and than H.264/HEVC allow): refuse as corrupt
MIN_FPS, MAX_FPS = 0.1, 1000.0  # outside this the container's timing is not believable
MAX_CONSECUTIVE_DECODE_ERRORS = 25
MAX_CLAIMED_FRAMES = 10_000_000  # a container claiming more frames than this is lying: do not quote it
STILL_IMAGE_FORMATS = ("image2", "image2pipe")  # plus FFmpeg's "<codec>_pipe" picture demuxers  # past this many broken packets in a row, stop and keep what we have


class VideoError(ValueError):
    """The file cannot be used as a video; the message says what was wrong and what to do."""


class VideoDecodeWarning(UserWarning):
    """Part of the video could not be decoded; what could be read was used."""


WarnFn = Callable[[str], None]


def _default_warn(message: str) -> None:
    warnings.warn(message, VideoDecodeWarning, stacklevel=3)


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """sha256 of the file's bytes, read in 1 MiB chunks (never the whole file in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def _check_path(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: no such file. Check the path (quote it if it has spaces).")
    if not path.is_file():
        raise VideoError(f"{path}: is a directory or special file, not a video file.")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: the file is empty (0 bytes). Upload or copy it again.")
    return path


def _open(path: Path):
    import av  # imported here: av must be imported before decord anywhere in the process

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(
            f"{path.name}: cannot be read as a video ({exc.__class__.__name__}: {exc}). Is it a "
            "video file (mp4, avi, mkv, webm, mov)? If it is, it is damaged or truncated: re-export it."
        ) from exc
    fmt = container.format.name
    if fmt in STILL_IMAGE_FORMATS or (fmt.endswith("_pipe") and fmt not in ("gif_pipe",)):
        container.close()
        raise VideoError(
            f"{path.name}: is a still image ({fmt.removesuffix('_pipe')}), not a video. "
            "Provide a video file (mp4, avi, mkv, webm, mov)."
        )
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        container.close()
        what = f"only {', '.join(kinds)} streams" if kinds else "no streams at all"
        raise VideoError(
            f"{path.name}: holds {what} and no video stream (audio-only or not a video). "
            "Provide a file with a video track."
        )
    return container


def _normalise_rotation(deg: float) -> int:
    """Display rotation (counter-clockwise degrees) snapped to 0/90/180/270."""
    return int(round(deg / 90.0)) % 4 * 90


def _sane_rate(rate) -> float | None:
    if rate is None:
        return None
    value = float(rate)
    return value if MIN_FPS <= value <= MAX_FPS else None


def probe(path: str | Path) -> VideoInfo:
    """Metadata of a video as decoded, not as its container claims.

    The frame count and fps come from demuxing every packet of the video stream (cheap: no decoding)
    and the packets' timestamps; the first frame is decoded to verify the stream decodes and to read
    its size and display rotation. Width and height are those of the displayed (rotated) picture.
    ``iter_frames`` then verifies the rest: a truncated file yields fewer frames plus a warning.
    """
    import av

    path = _check_path(path)
    content_hash = file_sha256(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        n_packets, pts_min, pts_max = 0, math.inf, -math.inf
        demux_error = None
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # flush packet
                n_packets += 1
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is not None:
                    pts_min, pts_max = min(pts_min, ts), max(pts_max, ts)
        except av.error.FFmpegError as exc:
            demux_error = exc
        if n_packets == 0:
            raise VideoError(
                f"{path.name}: has a video stream but no frames (zero-length video)"
                + (f"; reading failed with: {demux_error}" if demux_error else "")
                + ". Record or export the video again."
            )

        # fps: measured from timestamps when they span the stream, else the container's claim.
        measured = None
        if stream.time_base and n_packets >= 2 and pts_max > pts_min:
            measured = (n_packets - 1) / float((pts_max - pts_min) * stream.time_base)
        claimed = _sane_rate(stream.average_rate) or _sane_rate(stream.guessed_rate)
        fps = _sane_rate(measured) or claimed
        if fps is not None and claimed is not None and abs(fps - claimed) <= 0.005 * claimed:
            fps = claimed  # same rate: keep the container's exact rational (25, not 24.99999)
        if fps is None:
            raise VideoError(
                f"{path.name}: frame rate is not believable (container says {stream.average_rate}, "
                f"timestamps give {measured}); re-encode it with a constant frame rate "
                "(e.g. ffmpeg -i in -r 25 out.mp4)."
            )
    finally:
        container.close()
    container = _open(path)  # reopened rather than seeked: seeking is unreliable on damaged files
    try:
        stream = container.streams.video[0]
        first = _first_frame(container, stream)
        if first is None:
            raise VideoError(
                f"{path.name}: no video frame could be decoded: the file is truncated or corrupt. "
                "Re-export or re-download it."
            )
        width, height = first.width, first.height
        if not (0 < width <= MAX_FRAME_SIDE and 0 < height <= MAX_FRAME_SIDE):
            raise VideoError(
                f"{path.name}: frame size {width}x{height} is not a real video size "
                f"(1..{MAX_FRAME_SIDE} px per side); the header is corrupt."
            )
        rotation = _normalise_rotation(first.rotation)
        if rotation in (90, 270):
            width, height = height, width
    finally:
        container.close()
    if demux_error is not None:
        _default_warn(f"{path.name}: reading stopped after {n_packets} frames ({demux_error}); truncated?")

    return VideoInfo(
        path=str(path), content_hash=content_hash, fps=float(fps), frame_count=n_packets,
        duration_s=n_packets / float(fps), width=width, height=height, rotation_deg=rotation,
    )


def _first_frame(container, stream):
    import av

    errors = 0
    try:
        for packet in container.demux(stream):
            try:
                for frame in packet.decode():
                    return frame
            except av.error.FFmpegError:
                errors += 1
                if errors > MAX_CONSECUTIVE_DECODE_ERRORS:
                    return None
    except av.error.FFmpegError:
        return None
    return None


@dataclass
class DecodedFrame:
    """One decoded frame; pixels are converted only when :meth:`rgb` is called."""

    time_s: float
    frame_index: int
    rotation_deg: int  # counter-clockwise, applied by rgb()
    _frame: object  # av.VideoFrame

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the displayed (rotated) frame at full resolution."""
        w, h = self._frame.width, self._frame.height
        return (h, w) if self.rotation_deg in (90, 270) else (w, h)

    def rgb(self, max_side: int | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB, rotated for display; downscaled so the longer side is <= max_side,
        or resized to exactly ``size`` = (width, height) of the displayed picture."""
        w, h = self.size
        if size is not None:
            tw, th = size
        elif max_side is not None and max(w, h) > max_side:
            scale = max_side / max(w, h)
            tw, th = max(2, round(w * scale)), max(2, round(h * scale))
        else:
            tw, th = w, h
        if self.rotation_deg in (90, 270):
            tw, th = th, tw  # the decoder's frame is unrotated
        # swscale does the resize together with the colour conversion (area filter for downscaling)
        img = self._frame.to_ndarray(format="rgb24", width=tw, height=th, interpolation="AREA")
        if self.rotation_deg:
            img = np.ascontiguousarray(np.rot90(img, k=self.rotation_deg // 90))  # CCW
        return img


def iter_frames(path: str | Path, on_warning: WarnFn | None = None) -> Iterator[DecodedFrame]:
    """Every decodable frame of the file in presentation order, one at a time.

    Times come from the frames' timestamps; when those are not believable (a rate outside
    MIN_FPS..MAX_FPS between the first two frames) they are rebuilt as index / fps from the
    container's rate, and when no believable rate exists at all a VideoError is raised. Broken packets
    are skipped (with a warning); a file that ends early (truncated) stops with a warning after the
    last good frame. Raises VideoError when nothing at all decodes.
    """
    import av

    warn = on_warning or _default_warn
    path = _check_path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame-parallel decoding
        claimed_frames = int(stream.frames or 0)
        tb = float(stream.time_base) if stream.time_base else None
        rate = _sane_rate(stream.average_rate) or _sane_rate(stream.guessed_rate)
        use_pts = tb is not None
        origin = first_pts_time = None
        index = 0
        bad_packets = consecutive = damaged_frames = 0
        last_time = -1.0
        state = {"ended_early": False}

        def packets():
            try:
                yield from container.demux(stream)
            except av.error.FFmpegError as exc:
                state["ended_early"] = True
                warn(f"{path.name}: the file ends early after {max(last_time, 0):.2f} s ({exc}); "
                     "the rest is missing (truncated download?). Using what was read.")

        for packet in packets():
            try:
                frames = packet.decode()
                consecutive = 0
            except av.error.FFmpegError:
                bad_packets += 1
                consecutive += 1
                if consecutive > MAX_CONSECUTIVE_DECODE_ERRORS:
                    state["ended_early"] = True
                    warn(f"{path.name}: decoding stopped at {max(last_time, 0):.2f} s after "
                         f"{consecutive} broken packets in a row; using the frames before it.")
                    break
                continue
            for frame in frames:
                if use_pts and frame.pts is None:
                    use_pts = False
                if use_pts:
                    t = frame.pts * tb
                    if origin is None:
                        start = stream.start_time
                        origin = start * tb if start is not None and start <= frame.pts else t
                        first_pts_time = t
                    elif index == 1 and t > first_pts_time and _sane_rate(1.0 / (t - first_pts_time)) is None:
                        use_pts = False  # timestamps tick at an impossible rate: count frames instead
                if not use_pts:
                    if rate is None:
                        raise VideoError(
                            f"{path.name}: frame rate is not believable (container says "
                            f"{stream.average_rate}); re-encode it with a constant frame rate "
                            "(e.g. ffmpeg -i in -r 25 out.mp4)."
                        )
                    t = index / rate
                else:
                    t = t - origin
                if t <= last_time:  # repeated or out-of-order timestamps: keep time increasing
                    t = last_time + 1.0 / (rate or 25.0)
                last_time = t
                damaged_frames += bool(frame.is_corrupt)
                yield DecodedFrame(time_s=float(t), frame_index=index,
                                   rotation_deg=_normalise_rotation(frame.rotation), _frame=frame)
                index += 1
        if index == 0:
            raise VideoError(f"{path.name}: no video frame could be decoded: the file is corrupt.")
        if bad_packets:
            warn(f"{path.name}: {bad_packets} damaged packet(s) skipped; nearby frames are missing.")
        if damaged_frames:
            warn(f"{path.name}: {damaged_frames} frame(s) decoded with damage (the decoder concealed "
                 "corrupt data); evidence near them may be wrong.")
        if (not state["ended_early"] and 0 < claimed_frames <= MAX_CLAIMED_FRAMES
                and index + bad_packets < claimed_frames):
            warn(f"{path.name}: the container lists {claimed_frames} frames but only {index} decoded "
                 "(truncated?); using those.")
    finally:
        container.close()


class NearestSampler:
    """Picks, from a stream of frames in time order, the frame nearest each time k / fps.

    Streaming with a one-frame look-ahead: ``push`` returns the frames chosen so far. A frame is
    returned at most once (when fps exceeds the video's rate, targets share frames), and targets past
    the last frame's display interval are not served.
    """

    def __init__(self, fps: float):
        if not (fps > 0 and math.isfinite(fps)):
            raise ValueError(f"sample rate must be a positive number of frames per second, got {fps}")
        self.fps = float(fps)
        self._k = 0
        self._prev: DecodedFrame | None = None
        self._last_emitted = -1
        self._interval = 0.0

    def _emit(self, frame: DecodedFrame, out: list[DecodedFrame]) -> None:
        if frame.frame_index != self._last_emitted:
            out.append(frame)
            self._last_emitted = frame.frame_index

    def push(self, frame: DecodedFrame) -> list[DecodedFrame]:
        out: list[DecodedFrame] = []
        if self._prev is not None:
            self._interval = frame.time_s - self._prev.time_s
        while (target := self._k / self.fps) <= frame.time_s:
            prev = self._prev
            if prev is not None and target - prev.time_s < frame.time_s - target:
                self._emit(prev, out)
            else:
                self._emit(frame, out)
            self._k += 1
        self._prev = frame
        return out

    def finish(self) -> list[DecodedFrame]:
        """Serve the last pending target when it falls within the last frame's display interval."""
        out: list[DecodedFrame] = []
        prev = self._prev
        if prev is not None and self._k / self.fps < prev.time_s + self._interval - 1e-6:
            self._emit(prev, out)
            self._k += 1
        return out


@dataclass
class SampledFrame:
    """A frame picked at the sampling rate, with its RGB pixels."""

    time_s: float
    frame_index: int
    rgb: np.ndarray  # (H, W, 3) uint8, rotation applied


def iter_sampled_frames(
    path: str | Path,
    sample_fps: float = DEFAULT_SAMPLE_FPS,
    max_side: int | None = None,
    on_warning: WarnFn | None = None,
) -> Iterator[SampledFrame]:
    """RGB frames nearest to t = 0, 1/sample_fps, 2/sample_fps, ... streamed with bounded memory.

    ``max_side`` downscales large videos for processing (the longer side becomes at most max_side).
    """
    sampler = NearestSampler(sample_fps)
    for frame in iter_frames(path, on_warning=on_warning):
        for chosen in sampler.push(frame):
            yield SampledFrame(chosen.time_s, chosen.frame_index, chosen.rgb(max_side))
    for chosen in sampler.finish():
        yield SampledFrame(chosen.time_s, chosen.frame_index, chosen.rgb(max_side))


def cut_clips(path: str | Path, start_frames: Iterable[int], n_frames: int, out_dir: str | Path, fps: float,
              max_side: int | None = None, prefix: str = "") -> list[Path]:
    """Cut ``n_frames`` from each start frame of one video, decoding it once, into H.264 clips
    ``out_dir/<prefix><start:03d>.mp4`` (frames downscaled to ``max_side``), in the order of the starts."""
    starts = list(dict.fromkeys(int(s) for s in start_frames))
    frames: dict[int, list[np.ndarray]] = {s: [] for s in starts}
    for f in iter_frames(path):
        for s in starts:
            if s <= f.frame_index < s + n_frames:
                frames[s].append(f.rgb(max_side=max_side))
        if f.frame_index >= max(starts) + n_frames:
            break
    return [write_h264(fr, Path(out_dir) / f"{prefix}{s:03d}.mp4", fps) for s, fr in frames.items()]


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
    try:
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
            if stream is None:
                raise ValueError(f"no frames to write to {path}")
            for packet in stream.encode():
                container.mux(packet)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)  # never leave a half-written file under the final name
    return path
