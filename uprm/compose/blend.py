"""Pasting a sprite into a frame so that the seam does not give it away.

One affine warp places the sprite: its ground-contact point goes to the target foot position, it is
scaled for perspective, optionally mirrored, and rotated about the feet (a fall is a rotation about
the feet). The alpha is already feathered (see sprites.feather) and is warped with bilinear
interpolation, so edges stay soft. Brightness and tint are matched to the destination, a soft
contact shadow grounds the figure, and real people standing nearer the camera stay in front of it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from uprm.compose.sprites import Sprite

LIGHT_GAIN_RANGE = (0.75, 1.33)
TINT_STRENGTH = 0.25
SHADOW_STRENGTH = 0.3


@dataclass(frozen=True)
class Placement:
    """One sprite in one frame: where its feet are and how it is turned."""

    sprite: Sprite
    foot_xy: tuple[float, float]  # target ground-contact point, frame px
    scale: float
    angle_deg: float = 0.0  # rotation about the feet; positive tips the top towards +x
    mirror: bool = False
    opacity: float = 1.0
    shadow: bool = True
    dst_ground_lab: np.ndarray | None = None  # mean (L, a, b) of the plate around the target; None: no matching


def affine(p: Placement) -> np.ndarray:
    """2x3 matrix from sprite px to frame px: T(foot) R(angle) S(scale) M(mirror) T(-sprite foot)."""
    fx, fy = p.sprite.foot_xy
    theta = np.deg2rad(p.angle_deg)
    c, s = np.cos(theta) * p.scale, np.sin(theta) * p.scale
    m = -1.0 if p.mirror else 1.0
    linear = np.array([[c * m, -s], [s * m, c]])  # R(theta) @ S(scale) @ diag(m, 1)
    offset = np.array(p.foot_xy) - linear @ np.array([fx, fy])
    return np.hstack([linear, offset[:, None]])


def match_light(rgb: np.ndarray, src_ground_lab: np.ndarray, dst_ground_lab: np.ndarray) -> np.ndarray:
    """Relight a sprite from its source spot to its target spot, judged by the ground around each.

    Light is multiplicative, so L gets the ratio of the two grounds' mean lightness (bounded: the
    grounds may differ in material, not only in light); a and b shift by a quarter of the grounds'
    tint difference. Matching the sprite's own statistics to the ground's (plain Reinhard transfer)
    would repaint a dark coat the colour of asphalt.
    """
    import cv2

    lab = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)  # (h, w, 3), L in 0..100
    gain = np.clip(dst_ground_lab[0] / max(src_ground_lab[0], 1.0), *LIGHT_GAIN_RANGE)
    lab[..., 0] = np.clip(lab[..., 0] * gain, 0, 100)
    lab[..., 1:] += TINT_STRENGTH * (np.asarray(dst_ground_lab[1:3]) - np.asarray(src_ground_lab[1:3]))
    out = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    return (out * 255.0).clip(0, 255)


def _shadow(frame: np.ndarray, p: Placement) -> None:
    """Darken a blurred ellipse on the ground under the figure (along the body when it lies)."""
    import cv2

    h = p.sprite.height_px * p.scale
    lying = abs(np.sin(np.deg2rad(p.angle_deg)))
    cx = p.foot_xy[0] + np.sin(np.deg2rad(p.angle_deg)) * 0.45 * h
    half_w = max(0.16 * h, lying * 0.5 * h)
    half_h = 0.045 * h * (1 + lying)
    pad = int(half_w + 3 * half_h + 4)
    x1, y1 = int(cx) - pad, int(p.foot_xy[1]) - pad
    x2, y2 = int(cx) + pad, int(p.foot_xy[1]) + pad
    H, W = frame.shape[:2]
    X1, Y1, X2, Y2 = max(0, x1), max(0, y1), min(W, x2), min(H, y2)
    if X2 <= X1 or Y2 <= Y1:
        return
    mask = np.zeros((y2 - y1, x2 - x1), np.float32)
    cv2.ellipse(mask, (int(cx) - x1, int(p.foot_xy[1]) - y1), (max(1, int(half_w)), max(1, int(half_h))),
                0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=max(1.0, half_h))[Y1 - y1:Y2 - y1, X1 - x1:X2 - x1]
    roi = frame[Y1:Y2, X1:X2].astype(np.float32)
    frame[Y1:Y2, X1:X2] = (roi * (1 - SHADOW_STRENGTH * p.opacity * mask[..., None])).round().astype(np.uint8)


Box = tuple[int, int, int, int]  # x1, y1, x2, y2 px


def paste(frame: np.ndarray, p: Placement, in_front: Callable[[Box], np.ndarray] | None = None) -> Box | None:
    """Composite one placement into ``frame`` (H, W, 3 uint8) in place; returns the box it touched.

    ``in_front(box)`` may return a (h, w) float mask in [0, 1] of the box's pixels that stay on top
    (real people nearer the camera than the sprite).
    """
    import cv2

    m = affine(p)
    h, w = p.sprite.alpha.shape
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ m.T  # (4, 2)
    H, W = frame.shape[:2]
    x1, y1 = np.floor(corners.min(0)).astype(int)
    x2, y2 = np.ceil(corners.max(0)).astype(int) + 1
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(W, x2), min(H, y2)
    if x2 <= x1 or y2 <= y1 or p.opacity <= 0:
        return None
    if p.shadow:
        _shadow(frame, p)
    local = m.copy()
    local[:, 2] -= (x1, y1)  # into the coordinates of the touched region
    size = (x2 - x1, y2 - y1)
    rgb = p.sprite.rgb
    if p.dst_ground_lab is not None:
        rgb = match_light(rgb, np.asarray(p.sprite.ground_lab), p.dst_ground_lab)
    rgb = cv2.warpAffine(rgb.astype(np.float32), local, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(p.sprite.alpha, local, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    if in_front is not None:
        alpha = alpha * (1.0 - in_front((x1, y1, x2, y2)))
    a = (alpha * p.opacity)[..., None]  # (h, w, 1)
    roi = frame[y1:y2, x1:x2].astype(np.float32)
    frame[y1:y2, x1:x2] = (roi * (1 - a) + rgb * a).round().clip(0, 255).astype(np.uint8)
    return x1, y1, x2, y2
