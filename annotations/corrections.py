"""The history model: the current (or any earlier) state of a video is derived by replaying its
append-only corrections over the model's predictions. Pure functions: no SQL, no I/O.

Rules of the replay (corrections in id order, the last writer wins per field):

* ``accept`` -> status accepted; ``reject`` -> status rejected (a false positive, or for an added
  segment: withdrawn);
* ``edit_bounds`` / ``edit_cause`` / ``edit_category`` change that field, set ``edited`` and
  status accepted (editing a segment asserts that it is real, also after a reject);
* ``add_segment`` creates a human segment, status accepted;
* ``mark_reviewed`` is video-level: it changes no segment, it only feeds the review status.

A view shows the segments of the video's latest analysis, every human segment, and segments of
earlier analyses only when the view accepted them (confirmed segments survive a model re-run; stale
undecided predictions do not). The per-annotator view replays only that annotator's corrections;
segments added by someone else appear in it only once the annotator has reviewed them.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from annotations.records import BaselineSegment, Correction, ReviewedSegment
from annotations.timebase import to_seconds

EDIT_KINDS = ("edit_bounds", "edit_cause", "edit_category")


@dataclass
class _Draft:
    """Mutable working state of one segment during a replay."""

    segment_id: int
    video_id: int
    start_frame: int
    end_frame: int
    label: str
    cause: str
    score: float | None
    analysis_id: int | None
    source: str
    status: str = "pending"
    edited: bool = False
    annotators: list[str] = field(default_factory=list)
    last_correction_id: int | None = None

    def touch(self, c: Correction) -> None:
        if c.annotator not in self.annotators:
            self.annotators.append(c.annotator)
        self.last_correction_id = c.id

    def freeze(self, fps: float) -> ReviewedSegment:
        return ReviewedSegment(
            id=self.segment_id, video_id=self.video_id,
            start_s=to_seconds(self.start_frame, fps), end_s=to_seconds(self.end_frame, fps),
            start_frame=self.start_frame, end_frame=self.end_frame, label=self.label,
            cause=self.cause, status=self.status, source=self.source, score=self.score,
            edited=self.edited, annotators=tuple(self.annotators), analysis_id=self.analysis_id,
            last_correction_id=self.last_correction_id,
        )


def _draft_from_baseline(b: BaselineSegment) -> _Draft:
    return _Draft(b.segment_id, b.video_id, b.start_frame, b.end_frame, b.label, b.cause, b.score,
                  b.analysis_id, b.source)


def baseline_from_addition(c: Correction) -> BaselineSegment:
    """An added segment as a starting point for annotators other than the one who added it."""
    v = c.new_value
    return BaselineSegment(c.segment_id, c.video_id, v["start_frame"], v["end_frame"],
                           v["category"], v["cause"], None, None, source="human")


def apply_correction(drafts: dict[int, _Draft], c: Correction) -> None:
    """Apply one correction to the drafts of a replay (ignores segments outside the view)."""
    if c.kind == "mark_reviewed":
        return
    v = c.new_value
    if c.kind == "add_segment":
        d = _Draft(c.segment_id, c.video_id, v["start_frame"], v["end_frame"], v["category"],
                   v["cause"], None, None, "human", status="accepted")
        d.touch(c)
        drafts[c.segment_id] = d
        return
    d = drafts.get(c.segment_id)
    if d is None:  # the segment is not part of this view (another annotator's addition)
        return
    if c.kind == "accept":
        d.status = "accepted"
    elif c.kind == "reject":
        d.status = "rejected"
    elif c.kind in EDIT_KINDS:
        if c.kind == "edit_bounds":
            d.start_frame, d.end_frame = v["start_frame"], v["end_frame"]
        elif c.kind == "edit_cause":
            d.cause = v["cause"]
        else:
            d.label = v["category"]
        d.edited = True
        d.status = "accepted"
    else:
        raise ValueError(f"unknown correction kind {c.kind!r} in history row {c.id}")
    d.touch(c)


def corrections_in_view(corrections: Sequence[Correction], annotator: str | None) -> list[Correction]:
    if annotator is None:
        return list(corrections)
    return [c for c in corrections if c.annotator == annotator]


def replay(
    baseline: Iterable[BaselineSegment],
    corrections: Sequence[Correction],
    fps: float,
    *,
    latest_analysis_id: int | None,
    annotator: str | None = None,
) -> list[ReviewedSegment]:
    """Derive one video's segments as the view (merged when ``annotator`` is None) shows them.

    ``corrections`` are all of the video's corrections up to the moment being shown, in id order;
    ``baseline`` its predicted segments of every analysis up to that moment.
    """
    own = corrections_in_view(corrections, annotator)
    drafts = {b.segment_id: _draft_from_baseline(b) for b in baseline}
    if annotator is not None:
        touched = {c.segment_id for c in own if c.segment_id is not None}
        for c in corrections:
            if c.kind == "add_segment" and c.segment_id in touched and c.annotator != annotator:
                drafts[c.segment_id] = _draft_from_baseline(baseline_from_addition(c))
    for c in sorted(own, key=lambda c: c.id):
        apply_correction(drafts, c)
    kept = [
        d for d in drafts.values()
        if d.source == "human" or d.analysis_id == latest_analysis_id or d.status == "accepted"
    ]
    kept.sort(key=lambda d: (d.start_frame, d.end_frame, d.segment_id))
    return [d.freeze(fps) for d in kept]


def review_status(segments: Sequence[ReviewedSegment], corrections: Sequence[Correction]) -> str:
    """unreviewed: nobody (in this view) corrected anything yet; reviewed: no prediction is left
    undecided and either there were predictions to decide or someone marked the video reviewed
    (a video without predictions is only reviewed once marked); in_progress: otherwise."""
    if not corrections:
        return "unreviewed"
    if any(s.status == "pending" for s in segments):
        return "in_progress"
    if any(s.source == "model" for s in segments) or any(c.kind == "mark_reviewed" for c in corrections):
        return "reviewed"
    return "in_progress"


def state_value(segment: ReviewedSegment, kind: str) -> dict:
    """The fields of ``segment`` that a correction of ``kind`` changes (for previous_value)."""
    if kind in ("accept", "reject"):
        return {"status": segment.status}
    if kind == "edit_bounds":
        return {"start_frame": segment.start_frame, "end_frame": segment.end_frame,
                "start_s": segment.start_s, "end_s": segment.end_s}
    if kind == "edit_cause":
        return {"cause": segment.cause}
    if kind == "edit_category":
        return {"category": segment.label}
    raise ValueError(f"correction kind {kind!r} has no previous segment value")
