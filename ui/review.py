"""Review-mode callbacks: thin wrappers over ``annotations.store.Store`` for the studio's Review tab.

Every action returns a status line; store errors (bad bounds, empty cause, unknown category) come back
as that line, never as a traceback. With a login configured, the logged-in name is the annotator and
nobody without a login reaches the store.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from ui.callbacks import StudioSession, friendly, status
from ui.services import Services

QUEUE_COLUMNS = ["video id", "name", "status", "segments", "pending", "accepted", "rejected", "annotators"]
SEGMENT_COLUMNS = ["id", "start (s)", "end (s)", "start frame", "end frame", "category", "cause", "status", "source"]
EXPORT_FORMATS = ("llava", "activitynet", "ucf_crime", "label_studio", "csv")


@dataclass
class ReviewState:
    """Per-session review position: which video and which segment are open."""

    video_id: int | None = None
    segment_id: int | None = None
    fps: float = 0.0


def annotator_name(services: Services, typed: str, request: gr.Request | None) -> str:
    """The login name when authentication is on (typed names are ignored), else the typed name."""
    if services.cfg.auth_enabled:
        user = getattr(request, "username", None) if request is not None else None
        if not user:
            raise PermissionError("Log in to read or write annotations.")
        return user
    name = (typed or "").strip()
    if not name:
        raise ValueError("Type your annotator name first (it is recorded with every correction).")
    return name


def _store(services: Services, request: gr.Request | None):
    if services.cfg.auth_enabled and not getattr(request, "username", None):
        raise PermissionError("Log in to read or write annotations.")
    return services.store()


def record_analysis(services: Services, session: StudioSession) -> int | None:
    """Put the session's finished analysis into the store as a new model run; returns the video id."""
    a = session.analysis
    if a is None:
        return None
    from annotations.records import VideoRecord

    store = services.store()
    vid = store.add_video(VideoRecord.from_video_info(a.video, name=Path(a.video.path).stem))
    settings = {**vars(a.settings.rule()), "sample_fps": a.settings.sample_fps,  # the rule as applied
                "ablation": list(a.settings.ablation), "seed": a.settings.seed}
    store.add_analysis(vid, a.model_id, settings, [s.to_segment(a.video_id) for s in a.segments],
                       model_version=a.model_id)
    return vid


def queue_rows(services: Services, request: gr.Request | None = None) -> tuple[list[list], str]:
    try:
        store = _store(services, request)
        q = store.review_queue()
        rows = [[p.video_id, p.name, p.status, p.segments, p.pending, p.accepted, p.rejected,
                 ", ".join(p.annotators)] for group in (q.in_progress, q.unreviewed, q.reviewed) for p in group]
        people = store.annotator_progress()
        per = " · ".join(f"{a.annotator}: {a.corrections} corrections, {a.videos_reviewed} video(s) reviewed"
                         for a in people) or "no corrections yet"
        total = len(rows)
        done = len(q.reviewed)
        return rows, f"**Queue:** {done}/{total} video(s) reviewed, {len(q.in_progress)} in progress  \n**Annotators:** {per}"
    except Exception as exc:
        return [], status(friendly(exc), ok=False)


def segment_rows(services: Services, state: ReviewState, as_of: int | None = None) -> list[list]:
    if state.video_id is None:
        return []
    segs = services.store().current_segments(state.video_id, as_of=int(as_of) if as_of else None)
    return [[s.id, s.start_s, s.end_s, s.start_frame, s.end_frame, s.label, s.cause, s.status, s.source]
            for s in segs]


def open_video(services: Services, video_id: int | None, state: ReviewState, request: gr.Request | None = None):
    """(player value, segment rows, status, state) for a video picked in the queue."""
    try:
        store = _store(services, request)
        rec = store.video(int(video_id))
        state = ReviewState(video_id=rec.id, fps=rec.fps)
        player = rec.path if rec.path and Path(rec.path).exists() else None
        note = "" if player else " (video file not on this machine: review by the numbers)"
        return player, segment_rows(services, state), status(f"reviewing {rec.name}: {rec.fps:g} fps{note}"), state
    except Exception as exc:
        return gr.skip(), [], status(friendly(exc), ok=False), state


def select_segment(services: Services, state: ReviewState, row: list) -> tuple:
    """Fill the editor from a selected row; returns (start, end, category, cause, frames, seek, state)."""
    seg_id, start_s, end_s, start_f, end_f, category, cause = row[:7]
    state = ReviewState(state.video_id, int(seg_id), state.fps)
    return start_s, end_s, category, cause, frames_label(start_s, end_s, state.fps), start_s, state


def frames_label(start_s: float | None, end_s: float | None, fps: float) -> str:
    if start_s is None or end_s is None or not fps:
        return ""
    from annotations.timebase import to_frame

    return (f"{float(start_s):.3f} s = frame {to_frame(float(start_s), fps)} → "
            f"{float(end_s):.3f} s = frame {to_frame(float(end_s), fps)} at {fps:g} fps")


def act(services: Services, action: str, state: ReviewState, typed_name: str, start_s, end_s, category: str,
        cause: str, request: gr.Request | None = None) -> tuple[list[list], str]:
    """Apply one correction; (segment rows, status)."""
    try:
        store = _store(services, request)
        who = annotator_name(services, typed_name, request)
        if state.video_id is None:
            raise ValueError("Open a video from the queue first.")
        needs_segment = action not in ("add", "reviewed")
        if needs_segment and state.segment_id is None:
            raise ValueError("Select a segment in the table first.")
        sid = state.segment_id
        if action == "accept":
            cid = store.accept(sid, who)
        elif action == "reject":
            cid = store.reject(sid, who)
        elif action == "bounds":
            cid = store.edit_bounds(sid, _seconds(start_s, "start"), _seconds(end_s, "end"), who)
        elif action == "cause":
            cid = store.edit_cause(sid, cause or "", who)
        elif action == "category":
            cid = store.edit_category(sid, category or "", who)
        elif action == "add":
            cid = store.add_segment(state.video_id, _seconds(start_s, "start"), _seconds(end_s, "end"), who,
                                    label=category or "threat", cause=cause or "")
        elif action == "reviewed":
            cid = store.mark_reviewed(state.video_id, who)
        else:
            raise ValueError(f"unknown review action {action!r}")
        return segment_rows(services, state), status(f"{action} saved as correction #{cid} by {who}")
    except Exception as exc:
        return _rows_after_failure(services, state, exc), status(friendly(exc), ok=False)


def _rows_after_failure(services: Services, state: ReviewState, exc: Exception) -> list[list] | object:
    """Keep the table as it is after a refused action; show nothing to someone not logged in."""
    if isinstance(exc, PermissionError):
        return []
    return gr.skip()


def _seconds(value, what: str) -> float:
    if value is None or value == "":
        raise ValueError(f"Type the {what} time in seconds (or press [ / ] at the player's current time).")
    return float(value)


def step_segment(services: Services, state: ReviewState, direction: int) -> tuple:
    """Open the next/previous segment: (start, end, category, cause, frames, seek, state)."""
    rows = segment_rows(services, state)
    if not rows:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), "", gr.skip(), state
    ids = [r[0] for r in rows]
    i = ids.index(state.segment_id) + direction if state.segment_id in ids else 0
    return select_segment(services, state, rows[max(0, min(i, len(rows) - 1))])


def history_rows(services: Services, state: ReviewState) -> list[list]:
    if state.video_id is None:
        return []
    return [[c.id, c.created_at, c.annotator, c.kind, c.segment_id, str(c.new_value), str(c.previous_value or "")]
            for c in services.store().history(state.video_id)]


def agreement(services: Services, state: ReviewState, a: str, b: str, request: gr.Request | None = None) -> str:
    try:
        store = _store(services, request)
        if state.video_id is None:
            raise ValueError("Open a video from the queue first.")
        ag = store.disagreement(state.video_id, a.strip(), b.strip())
        mean = "n/a (nothing matched)" if ag.mean_tiou is None else f"{ag.mean_tiou:.2f}"
        labels = "n/a" if ag.label_agreement is None else f"{ag.label_agreement:.2f}"
        return (f"**{ag.annotator_a}** {ag.segments_a} segment(s) vs **{ag.annotator_b}** {ag.segments_b}: "
                f"{ag.matched} matched at tIoU ≥ {ag.tiou_threshold:g}, agreement F1 {ag.f1:.2f}, "
                f"mean tIoU of matches {mean}, same category on matches {labels}")
    except Exception as exc:
        return status(friendly(exc), ok=False)


def export(services: Services, fmt: str, only_reviewed: bool, request: gr.Request | None = None):
    """(file path for download, status)."""
    try:
        from annotations.formats import export as do_export

        store = _store(services, request)
        out = Path(services.cfg.work_dir) / "exports"
        res = do_export(store, fmt, out, reviewed_only=only_reviewed)
        skipped = f"; left out unfinished: {', '.join(res.skipped_unreviewed[:5])}" if res.skipped_unreviewed else ""
        return [str(p) for p in res.paths], status(f"exported {res.segments} segment(s) of {res.videos} video(s) "
                                                    f"as {fmt}{skipped}")
    except Exception as exc:
        return None, status(friendly(exc), ok=False)
