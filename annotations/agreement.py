"""Inter-annotator agreement on one video, from two per-annotator views (pure functions)."""
from __future__ import annotations

from collections.abc import Sequence

from annotations.records import Agreement, ReviewedSegment
from uprm.segments import tiou


def _frames(segments: Sequence[ReviewedSegment]) -> set[int]:
    marked: set[int] = set()
    for s in segments:
        marked.update(range(s.start_frame, s.end_frame))
    return marked


def match_segments(
    a: Sequence[ReviewedSegment], b: Sequence[ReviewedSegment], threshold: float
) -> list[tuple[ReviewedSegment, ReviewedSegment, float]]:
    """One-to-one pairs, greedy by descending tIoU (the usual temporal-detection matching)."""
    pairs = sorted(
        ((tiou((x.start_s, x.end_s), (y.start_s, y.end_s)), i, j)
         for i, x in enumerate(a) for j, y in enumerate(b)),
        reverse=True,
    )
    used_a: set[int] = set()
    used_b: set[int] = set()
    out = []
    for t, i, j in pairs:
        if t < threshold or t <= 0:
            break
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        out.append((a[i], b[j], t))
    return out


def agreement(
    video_id: int,
    annotator_a: str,
    view_a: Sequence[ReviewedSegment],
    annotator_b: str,
    view_b: Sequence[ReviewedSegment],
    tiou_threshold: float = 0.5,
) -> Agreement:
    pos_a = [s for s in view_a if s.status == "accepted"]
    pos_b = [s for s in view_b if s.status == "accepted"]
    pairs = match_segments(pos_a, pos_b, tiou_threshold)
    n = len(pos_a) + len(pos_b)
    frames_a, frames_b = _frames(pos_a), _frames(pos_b)
    union = frames_a | frames_b
    decided_a = {s.id: s.status for s in view_a if s.source == "model" and s.status != "pending"}
    decided_b = {s.id: s.status for s in view_b if s.source == "model" and s.status != "pending"}
    both = decided_a.keys() & decided_b.keys()
    return Agreement(
        video_id=video_id, annotator_a=annotator_a, annotator_b=annotator_b,
        tiou_threshold=tiou_threshold, segments_a=len(pos_a), segments_b=len(pos_b),
        matched=len(pairs), f1=2 * len(pairs) / n if n else 1.0,
        mean_tiou=sum(t for *_, t in pairs) / len(pairs) if pairs else None,
        label_agreement=(sum(x.label == y.label for x, y, _ in pairs) / len(pairs)) if pairs else None,
        frame_iou=len(frames_a & frames_b) / len(union) if union else 1.0,
        decisions_compared=len(both),
        decisions_agreeing=sum(decided_a[k] == decided_b[k] for k in both),
    )
