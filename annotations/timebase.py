"""Frames and seconds: one snapping rule, so the store and every export agree to the frame.

Convention (documented once, used everywhere):

* frame index ``f`` (0-based) covers the half-open time interval ``[f / fps, (f + 1) / fps)``;
* a segment is stored as frames ``[start_frame, end_frame)``: it covers frames
  ``start_frame .. end_frame - 1``, and its seconds are *derived* from them:
  ``start_s = start_frame / fps``, ``end_s = end_frame / fps``;
* seconds coming in are snapped to the nearest frame boundary:
  ``start_frame = round(start_s * fps)``, ``end_frame = round(end_s * fps)`` (halves round up).

Because stored seconds are always ``frame / fps``, writing them out and reading them back yields the
same frames: exports never drift between frames and seconds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


def to_frame(t_s: float, fps: float) -> int:
    """The frame boundary nearest to ``t_s`` seconds (halves round up, float noise ignored)."""
    # 1e-9 absorbs float noise such as 2.3 * 30 = 68.99999999999999
    return int(math.floor(t_s * fps + 0.5 + 1e-9))


def to_seconds(frame: int, fps: float) -> float:
    """Start time in seconds of frame ``frame`` (equivalently: the boundary before it)."""
    return frame / fps


@dataclass(frozen=True)
class FrameSpan:
    """A snapped interval: frames ``[start_frame, end_frame)`` of a video at ``fps``."""

    start_frame: int
    end_frame: int
    fps: float

    @property
    def start_s(self) -> float:
        return to_seconds(self.start_frame, self.fps)

    @property
    def end_s(self) -> float:
        return to_seconds(self.end_frame, self.fps)

    @property
    def frame_count(self) -> int:
        return self.end_frame - self.start_frame


def snap(start_s: float, end_s: float, fps: float) -> FrameSpan:
    """Snap an interval in seconds to frame boundaries (no validation: see validation.check_span)."""
    return FrameSpan(to_frame(start_s, fps), to_frame(end_s, fps), fps)
