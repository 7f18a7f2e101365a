"""Temporal segments: the unit that analysis, metrics, annotations and exports share."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Segment:
    """A labelled time interval of one video, in seconds (end exclusive is not assumed)."""

    video_id: str
    start_s: float
    end_s: float
    label: str = "threat"
    score: float | None = None  # None for ground truth
    cause: str = ""

    def __post_init__(self) -> None:
        if not (self.end_s >= self.start_s >= 0):
            raise ValueError(
                f"segment of {self.video_id!r} must have 0 <= start_s <= end_s, "
                f"got start_s={self.start_s}, end_s={self.end_s}"
            )

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def tiou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Temporal intersection over union of two (start_s, end_s) intervals; 0 when both are empty."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0
