"""The clean background plate of a static camera: the temporal median of frames sampled across the video.

Pedestrians move, so at every pixel the median over enough spread-out frames is the empty scene. The
same samples give each pixel's noise level (median absolute deviation), which sets how far a frame
must differ from the plate before a pixel counts as foreground.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from uprm.compose.cache import cache_dir, code_fingerprint
from uprm.compose.errors import ComposeError
from uprm.compose.source import iter_frames
from uprm.evidence import VideoInfo

# Median |frame - plate| (grey levels, over all pixels) above which the camera is taken to move:
# vtest (fixed camera, MPEG-4 noise) sits at 3-4, the hand-held bikes.mp4 at 18-70.
MAX_STATIC_RESIDUAL = 10.0


@dataclass(frozen=True)
class Plate:
    """Empty-scene image of a static camera and the per-pixel noise of the footage around it."""

    rgb: np.ndarray  # (H, W, 3) uint8
    noise: np.ndarray  # (H, W) float32, median absolute deviation of grey level over the samples
    residual: float  # median over samples of the median |frame - plate| grey level: camera motion
    n_samples: int

    @cached_property
    def _lab_integral(self) -> np.ndarray:
        import cv2

        lab = cv2.cvtColor(self.rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)  # (H, W, 3), L in 0..100
        return cv2.integral(lab, sdepth=cv2.CV_64F)  # (H+1, W+1, 3)

    def ground_lab(self, box: tuple[float, float, float, float], grow: float = 1.0) -> np.ndarray:
        """Mean (L, a, b) of the plate in a ring around ``box``: the ground and light at that spot.

        Summed-area tables make this O(1): it runs for every pasted sprite in every frame.
        """
        h, w = self.rgb.shape[:2]
        x1, y1, x2, y2 = box
        gx, gy = (x2 - x1) * grow + 4, (y2 - y1) * grow * 0.5 + 4

        def rect_sum(a1: float, b1: float, a2: float, b2: float) -> tuple[np.ndarray, int]:
            a1, a2 = (int(min(max(0, v), w)) for v in (a1, a2))
            b1, b2 = (int(min(max(0, v), h)) for v in (b1, b2))
            t = self._lab_integral
            return t[b2, a2] - t[b1, a2] - t[b2, a1] + t[b1, a1], max(0, a2 - a1) * max(0, b2 - b1)

        outer, n_outer = rect_sum(x1 - gx, y1 - gy, x2 + gx, y2 + gy)
        inner, n_inner = rect_sum(x1, y1, x2, y2)
        if n_outer - n_inner <= 0:
            return outer / max(1, n_outer)
        return (outer - inner) / (n_outer - n_inner)


def clean_plate(video: VideoInfo, n_samples: int = 31, start: int = 0, stop: int | None = None) -> Plate:
    """Temporal median of ``n_samples`` frames spread evenly over [start, stop) of a static camera.

    Raises ComposeError when the camera moves (the plate would be a blur and pasted people would
    slide against the scene).
    """
    stop = video.frame_count if stop is None else min(stop, video.frame_count)
    if stop - start < 3:
        raise ComposeError(f"{video.path}: need at least 3 frames for a background plate, got {stop - start}")
    step = max(1, (stop - start) // n_samples)
    samples = np.stack([rgb for _, rgb in iter_frames(video.path, start, stop, step)][:n_samples])  # (S, H, W, 3)
    plate = np.median(samples, axis=0).astype(np.uint8)
    grey = samples.astype(np.float32).mean(axis=3)  # (S, H, W)
    deviation = np.abs(grey - plate.astype(np.float32).mean(axis=2))  # (S, H, W)
    noise = np.median(deviation, axis=0).astype(np.float32)
    residual = float(np.median(np.median(deviation.reshape(len(samples), -1), axis=1)))
    if residual > MAX_STATIC_RESIDUAL:
        raise ComposeError(
            f"{video.path}: the camera is not static (frames differ from their temporal median by "
            f"{residual:.1f} grey levels, limit {MAX_STATIC_RESIDUAL:g}); the compositor needs footage "
            "from a fixed camera such as a surveillance view"
        )
    return Plate(rgb=plate, noise=noise, residual=residual, n_samples=len(samples))


def load_or_make_plate(video: VideoInfo, use_cache: bool = True) -> Plate:
    """``clean_plate`` of the whole video, cached on disk by the video's content hash and the compositor's
    code fingerprint."""
    path = cache_dir() / f"plate_{video.content_hash[:20]}_{code_fingerprint()[:12]}.npz"
    if use_cache and path.is_file():
        with np.load(path) as data:
            return Plate(data["rgb"], data["noise"], float(data["residual"]), int(data["n_samples"]))
    plate = clean_plate(video)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".partial.npz")
        np.savez(tmp, rgb=plate.rgb, noise=plate.noise, residual=plate.residual, n_samples=plate.n_samples)
        tmp.replace(path)
    return plate


def foreground(image_rgb: np.ndarray, plate: Plate, window: tuple[int, int, int, int] | None = None,
               min_diff: float = 18.0, noise_k: float = 4.0) -> np.ndarray:
    """Soft foreground evidence (h, w) float32 in [0, 1]: how far each pixel is from the plate.

    ``image_rgb`` is a whole frame, or the crop ``window`` = (x1, y1, x2, y2) of one. 0 below the
    pixel's threshold (max(min_diff, noise_k * noise)), ramping to 1 at twice it; the largest
    per-channel difference is used so colour-only changes (a red coat on grey asphalt) count.
    """
    x1, y1, x2, y2 = window or (0, 0, plate.rgb.shape[1], plate.rgb.shape[0])
    diff = np.abs(image_rgb.astype(np.int16) - plate.rgb[y1:y2, x1:x2].astype(np.int16)).max(axis=2)
    diff = diff.astype(np.float32)
    threshold = np.maximum(min_diff, noise_k * plate.noise[y1:y2, x1:x2])
    return np.clip(diff / threshold - 1.0, 0.0, 1.0)
