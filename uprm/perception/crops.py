"""Square person crops shared by pose and segmentation: one affine warp does crop, pad and resize."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CROP_SCALE = 1.25  # square side = 1.25 x the box's longer side: limbs outside the box stay in view


@dataclass(frozen=True)
class SquareCrop:
    """A square window of the frame in pixels: top-left (x0_px, y0_px) and side_px (may leave the frame)."""

    x0_px: float
    y0_px: float
    side_px: float

    @classmethod
    def around(cls, box_xyxy: np.ndarray, scale: float = CROP_SCALE) -> "SquareCrop":
        x1, y1, x2, y2 = (float(v) for v in box_xyxy)
        side = max(scale * max(x2 - x1, y2 - y1), 4.0)
        return cls((x1 + x2 - side) / 2, (y1 + y2 - side) / 2, side)

    def warp(self, frame: np.ndarray, out_px: int) -> np.ndarray:
        """(out_px, out_px, C) resampled crop; parts outside the frame are black (zero)."""
        import cv2

        s = out_px / self.side_px
        m = np.array([[s, 0, -self.x0_px * s], [0, s, -self.y0_px * s]], np.float32)
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        return cv2.warpAffine(frame, m, (out_px, out_px), flags=interp, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0)

    def to_frame(self, xy_norm: np.ndarray) -> np.ndarray:
        """Crop-normalised (x, y) in [0, 1] -> frame pixels; xy_norm is (..., 2)."""
        return np.stack([self.x0_px + xy_norm[..., 0] * self.side_px,
                         self.y0_px + xy_norm[..., 1] * self.side_px], axis=-1)
