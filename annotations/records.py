"""Typed values crossing the store's boundary: what the UI, CLI and exporters receive.

Times are seconds (``_s``) with the frame numbers they were derived from beside them; see
``annotations.timebase`` for the frame convention.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from uprm.segments import Segment

CorrectionKind = Literal[
    "accept", "reject", "edit_bounds", "edit_cause", "edit_category", "add_segment", "mark_reviewed"
]
CORRECTION_KINDS: tuple[str, ...] = (
    "accept", "reject", "edit_bounds", "edit_cause", "edit_category", "add_segment", "mark_reviewed"
)
SegmentStatus = Literal["pending", "accepted", "rejected"]
SegmentSource = Literal["model", "human"]
ReviewStatus = Literal["unreviewed", "in_progress", "reviewed"]
REVIEW_STATUSES: tuple[str, ...] = ("unreviewed", "in_progress", "reviewed")


@dataclass(frozen=True)
class VideoRecord:
    """A video the store knows. ``content_hash`` is None for references imported from a dataset
    file without the video itself; ``frame_count``/``duration_s`` are None when unknown."""

    name: str
    fps: float
    path: str = ""
    content_hash: str | None = None
    frame_count: int | None = None
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None
    id: int | None = None  # set on records read back from the store
    created_at: str | None = None

    @classmethod
    def from_video_info(cls, info: Any, name: str | None = None) -> "VideoRecord":
        """From ``uprm.evidence.VideoInfo`` (or anything with the same fields)."""
        from pathlib import Path

        return cls(
            name=name or Path(info.path).stem,
            fps=float(info.fps),
            path=str(info.path),
            content_hash=info.content_hash,
            frame_count=int(info.frame_count),
            duration_s=float(info.duration_s),
            width=int(info.width),
            height=int(info.height),
        )

    @property
    def total_frames(self) -> int | None:
        """Frames in the video, from frame_count, else from duration; None when neither is known."""
        if self.frame_count is not None:
            return self.frame_count
        if self.duration_s is not None:
            from annotations.timebase import to_frame

            return to_frame(self.duration_s, self.fps)
        return None


@dataclass(frozen=True)
class AnalysisRecord:
    id: int
    video_id: int
    model_id: str
    model_version: str
    settings: dict[str, Any]
    created_at: str
    segment_count: int


@dataclass(frozen=True)
class BaselineSegment:
    """A segment as it stood before any correction in a view: a model prediction, or (in a
    per-annotator view) a segment someone else added that this annotator then reviewed."""

    segment_id: int
    video_id: int
    start_frame: int
    end_frame: int
    label: str
    cause: str
    score: float | None
    analysis_id: int | None
    source: SegmentSource = "model"


@dataclass(frozen=True)
class Correction:
    """One row of the append-only history. ``new_value``/``previous_value`` hold only the fields
    the correction touched (``previous_value`` is the merged state it replaced, None for additions)."""

    id: int
    video_id: int
    segment_id: int | None  # None for video-level corrections (mark_reviewed)
    annotator: str
    kind: str
    created_at: str  # ISO-8601 UTC, microseconds; non-decreasing with id
    new_value: dict[str, Any]
    previous_value: dict[str, Any] | None


@dataclass(frozen=True)
class ReviewedSegment:
    """A segment as a view of the history shows it (merged, or one annotator's)."""

    id: int  # segment id: what accept/reject/edit_* take
    video_id: int
    start_s: float
    end_s: float
    start_frame: int
    end_frame: int
    label: str  # the category
    cause: str
    status: SegmentStatus  # pending = a prediction nobody decided on yet
    source: SegmentSource  # model = predicted by an analysis, human = added by an annotator
    score: float | None = None
    edited: bool = False  # bounds, cause or category changed by a human
    annotators: tuple[str, ...] = ()  # who touched it, in order of first touch
    analysis_id: int | None = None
    last_correction_id: int | None = None

    def to_segment(self, video_name: str) -> Segment:
        return Segment(
            video_id=video_name, start_s=self.start_s, end_s=self.end_s, label=self.label,
            score=self.score if self.source == "model" and not self.edited else None,
            cause=self.cause,
        )


@dataclass(frozen=True)
class VideoState:
    """One video in one view: its record, derived review status and segments."""

    video: VideoRecord
    status: ReviewStatus
    segments: list[ReviewedSegment]


@dataclass(frozen=True)
class VideoProgress:
    video_id: int
    name: str
    status: ReviewStatus
    segments: int  # segments in the view (rejected ones included)
    pending: int
    accepted: int
    rejected: int
    added: int  # accepted segments that a human added
    corrections: int
    annotators: tuple[str, ...]
    last_activity: str | None


@dataclass(frozen=True)
class ReviewQueue:
    """Videos grouped by derived review status; within a group, oldest activity first."""

    unreviewed: list[VideoProgress] = field(default_factory=list)
    in_progress: list[VideoProgress] = field(default_factory=list)
    reviewed: list[VideoProgress] = field(default_factory=list)

    def next_video(self) -> VideoProgress | None:
        """What to review next: finish started videos first, then start new ones."""
        return (self.in_progress or self.unreviewed or [None])[0]


@dataclass(frozen=True)
class AnnotatorProgress:
    annotator: str
    corrections: int
    by_kind: dict[str, int]
    videos_touched: int
    videos_reviewed: int  # videos whose status is "reviewed" in this annotator's own view
    first_activity: str | None
    last_activity: str | None


@dataclass(frozen=True)
class Agreement:
    """How far two annotators' views of one video agree.

    Segments are each view's accepted segments. ``matched`` pairs them one-to-one, greedily by
    descending tIoU, keeping pairs with tIoU >= ``tiou_threshold``.
    """

    video_id: int
    annotator_a: str
    annotator_b: str
    tiou_threshold: float
    segments_a: int
    segments_b: int
    matched: int
    f1: float  # 2 * matched / (segments_a + segments_b); 1.0 when both mark nothing
    mean_tiou: float | None  # over matched pairs; None when nothing matched
    label_agreement: float | None  # share of matched pairs with the same category
    frame_iou: float  # |frames both marked| / |frames either marked|; 1.0 when both mark nothing
    decisions_compared: int  # predicted segments both annotators decided on
    decisions_agreeing: int  # ... with the same decision (accepted vs rejected)
