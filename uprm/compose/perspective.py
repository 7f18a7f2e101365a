"""Scale by position: how tall a standing person looks as a function of where their feet are.

For a camera looking down at flat ground, a person's image height is close to linear in the image y
of their feet (zero at the horizon). The line is fitted to the footage's own person detections, so
a pasted sprite is as tall as a real person standing on the same spot.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from uprm.compose.errors import ComposeError

MIN_PEOPLE = 8


@dataclass(frozen=True)
class PerspectiveFit:
    """height_px = slope * foot_y_px + intercept_px, fitted on ``n_people`` detections."""

    slope: float  # px of height per px of foot y
    intercept_px: float
    n_people: int
    residual_px: float  # median absolute residual of the inliers

    def height_px(self, foot_y_px: float | np.ndarray) -> float | np.ndarray:
        """Expected standing height at a foot position; never below 4 px (above the horizon)."""
        return np.maximum(4.0, self.slope * np.asarray(foot_y_px, np.float64) + self.intercept_px)

    def scale(self, from_foot_y_px: float, to_foot_y_px: float) -> float:
        """Factor that resizes something standing at one foot y to stand at another."""
        return float(self.height_px(to_foot_y_px) / self.height_px(from_foot_y_px))


def fit_perspective(foot_y_px: np.ndarray, height_px: np.ndarray) -> PerspectiveFit:
    """Robust least squares of person box height on foot y (two passes, 2.5 MAD outlier cut).

    Outliers are people cut by the frame border, partly occluded, or two people in one box.
    """
    y = np.asarray(foot_y_px, np.float64)
    h = np.asarray(height_px, np.float64)
    if len(y) < MIN_PEOPLE:
        raise ComposeError(
            f"only {len(y)} people were detected in the footage, need {MIN_PEOPLE} to learn how sprite "
            "size varies with position; use footage where people walk through the view"
        )
    keep = np.ones(len(y), bool)
    for _ in range(2):
        slope, intercept = np.polyfit(y[keep], h[keep], 1)
        resid = np.abs(h - (slope * y + intercept))
        mad = np.median(resid[keep]) + 1e-6
        keep = resid <= 2.5 * 1.4826 * mad
    slope, intercept = np.polyfit(y[keep], h[keep], 1)
    resid = np.abs(h[keep] - (slope * y[keep] + intercept))
    return PerspectiveFit(float(slope), float(intercept), int(keep.sum()), float(np.median(resid)))
