"""The annotation store: videos, model analyses and the append-only correction history on SQLite.

Every write is one ``BEGIN IMMEDIATE`` transaction (or part of a ``batch()``), so concurrent
writers queue on SQLite's lock (WAL mode, busy timeout) instead of failing half-way; the previous
value recorded with a correction is read under that same lock. Reads run in one snapshot.
SQL is always parameterised.

    store = Store("annotations.db")
    vid = store.add_video(VideoRecord(name="vtest", fps=10.0, frame_count=795, duration_s=79.5))
    store.add_analysis(vid, "uprm-small", {"stride_s": 1.0}, [Segment("vtest", 12.0, 18.5)])
    seg = store.current_segments(vid)[0]
    store.edit_bounds(seg.id, 12.3, 18.0, annotator="alice")
    store.current_segments(vid, as_of=first_correction_id)   # any earlier state
"""
from __future__ import annotations

import json
import math
import operator
import sqlite3
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from annotations import schema
from annotations.agreement import agreement
from annotations.categories import DEFAULT_CATEGORIES, Categories
from annotations.corrections import corrections_in_view, replay, review_status, state_value
from annotations.records import (
    REVIEW_STATUSES,
    Agreement,
    AnalysisRecord,
    AnnotatorProgress,
    BaselineSegment,
    Correction,
    ReviewedSegment,
    ReviewQueue,
    VideoProgress,
    VideoRecord,
    VideoState,
)
from annotations.validation import (
    MAX_LABEL_CHARS,
    MAX_MODEL_ID_CHARS,
    MAX_PATH_CHARS,
    MAX_VIDEO_NAME_CHARS,
    AnnotationError,
    StoreBusyError,
    check_annotator,
    check_cause,
    check_fps,
    check_optional_int,
    check_settings,
    check_span,
    check_text,
)

AsOf = int | datetime | str | None


def _as_id(value: Any, what: str) -> int:
    """An integer row id (numpy integers welcome), or AnnotationError naming what was wrong."""
    if isinstance(value, bool):
        raise AnnotationError(f"{what} must be an integer id, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise AnnotationError(f"{what} must be an integer id, got {value!r}") from None


def _utc_iso(moment: datetime) -> str:
    if moment.tzinfo is None:  # naive times are taken as UTC (documented on current_segments)
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class _Cutoff:
    """The moment a view shows: corrections up to ``correction_id`` and/or ``time``."""

    correction_id: int | None = None
    time: str | None = None


@dataclass
class _ViewInputs:
    videos: dict[int, VideoRecord]
    baseline: dict[int, list[BaselineSegment]]
    corrections: dict[int, list[Correction]]
    latest_analysis: dict[int, int]

    def view(self, video_id: int, annotator: str | None) -> list[ReviewedSegment]:
        return replay(
            self.baseline.get(video_id, []), self.corrections.get(video_id, []),
            self.videos[video_id].fps, latest_analysis_id=self.latest_analysis.get(video_id),
            annotator=annotator,
        )


class Store:
    """Annotation store on one SQLite file (or ``":memory:"``).

    ``categories``: allowed segment categories (default: ``DEFAULT_CATEGORIES``).
    ``auto_register_annotators``: a valid unknown annotator name is registered on its first
    correction; when False, unknown names are refused until ``add_annotator`` is called.
    ``durable``: synchronous=FULL, so a returned write also survives power loss (an fsync per
    commit); the default NORMAL survives crashed and killed processes (see schema.connect).
    """

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        categories: Sequence[str] | None = None,
        busy_timeout_s: float = 30.0,
        durable: bool = False,
        auto_register_annotators: bool = True,
    ) -> None:
        self.path = str(path)
        self.categories = Categories(categories if categories is not None else DEFAULT_CATEGORIES)
        self.auto_register_annotators = auto_register_annotators
        self.busy_timeout_s = float(busy_timeout_s)
        self._lock = threading.RLock()
        self.db = schema.connect(self.path, busy_timeout_s=busy_timeout_s, durable=durable)
        self.migrations_applied = schema.migrate(self.db)

    # ---------------------------------------------------------------- lifecycle, transactions

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def batch(self) -> Iterator["Store"]:
        """Group writes into one transaction (all or nothing), e.g. an import or "accept all".
        Inside it, each write is a savepoint, so a refused write leaves the others in place."""
        with self._write():
            yield self

    @contextmanager
    def _write(self) -> Iterator[None]:
        with self._lock:
            conn = self.db.conn
            if conn.in_transaction:  # inside batch(): a savepoint per write
                with self.db.atomic():
                    yield
                return
            self._begin_immediate()
            try:
                yield
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _begin_immediate(self) -> None:
        """Take the write lock now (no read-to-write upgrade deadlocks); SQLite's busy handler
        waits up to ``busy_timeout_s`` for other writers."""
        try:
            self.db.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreBusyError(
                f"the annotation database {self.path!r} stayed locked by other writers for "
                f"{self.busy_timeout_s:g} s ({exc}): retry, or raise busy_timeout_s"
            ) from exc

    @contextmanager
    def _read(self) -> Iterator[None]:
        with self._lock:
            conn = self.db.conn
            if conn.in_transaction:
                yield
                return
            conn.execute("BEGIN")  # one snapshot for all the SELECTs of a view
            try:
                yield
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self.db.execute(sql, params).fetchall()

    def _stamp(self) -> str:
        """Now, but never earlier than the newest history row: ids and times sort alike."""
        now = _utc_iso(datetime.now(timezone.utc))
        last = self._rows(
            "SELECT max(t) FROM (SELECT (SELECT created_at FROM corrections ORDER BY id DESC LIMIT 1) AS t"
            " UNION ALL SELECT (SELECT created_at FROM analyses ORDER BY id DESC LIMIT 1))"
        )[0][0]
        return max(now, last) if last else now

    # ---------------------------------------------------------------- annotators

    def add_annotator(self, name: str) -> int:
        """Register an annotator (idempotent, names match case-insensitively); returns its id."""
        name = check_annotator(name)
        with self._write():
            row = self._rows("SELECT id FROM annotators WHERE name = ?", (name,))
            if row:
                return row[0][0]
            return self.db.execute("INSERT INTO annotators (name, created_at) VALUES (?, ?)",
                                   (name, self._stamp())).lastrowid

    def annotators(self) -> list[str]:
        with self._read():
            return [r[0] for r in self._rows("SELECT name FROM annotators ORDER BY id")]

    def _annotator_id(self, name: str, *, create: bool) -> tuple[int, str]:
        row = self._rows("SELECT id, name FROM annotators WHERE name = ?", (name,))
        if row:
            return row[0][0], row[0][1]
        if not create:
            known = ", ".join(r[0] for r in self._rows("SELECT name FROM annotators ORDER BY id LIMIT 10"))
            raise AnnotationError(f"unknown annotator {name!r}: known annotators are {known or 'none yet'}")
        if not self.auto_register_annotators:
            raise AnnotationError(
                f"unknown annotator {name!r}: register them with add_annotator first"
            )
        cur = self.db.execute(
            "INSERT INTO annotators (name, created_at) VALUES (?, ?)", (name, self._stamp())
        )
        return cur.lastrowid, name

    def _canonical_annotator(self, annotator: str | None) -> str | None:
        if annotator is None:
            return None
        return self._annotator_id(check_annotator(annotator), create=False)[1]

    # ---------------------------------------------------------------- videos

    def add_video(self, video: Any = None, /, **fields: Any) -> int:
        """Register a video; returns its id. Pass a ``VideoRecord``, a ``uprm.evidence.VideoInfo``
        (named after its file stem), or ``VideoRecord`` fields as keywords.

        Idempotent: the same content hash (or, for dataset references without a file, the same
        name) returns the existing id. A file whose name is taken by another file gets the
        hash's first 8 hex digits appended; a file matching a reference by name and fps is
        linked to it (its unknown fields filled in).
        """
        rec = self._video_record(video, fields)
        with self._write():
            if rec.content_hash:
                row = self._rows("SELECT id FROM videos WHERE content_hash = ?", (rec.content_hash,))
                if row:
                    return row[0][0]
            row = self._rows("SELECT id, content_hash, fps FROM videos WHERE name = ?", (rec.name,))
            if row:
                vid, existing_hash, existing_fps = row[0]
                if existing_hash is None and rec.content_hash is None:
                    return vid
                if existing_hash is None and math.isclose(existing_fps, rec.fps, rel_tol=1e-9):
                    self.db.execute(
                        "UPDATE videos SET content_hash = ?, path = ?, frame_count = coalesce(frame_count, ?),"
                        " duration_s = coalesce(duration_s, ?), width = coalesce(width, ?),"
                        " height = coalesce(height, ?) WHERE id = ?",
                        (rec.content_hash, rec.path, rec.frame_count, rec.duration_s, rec.width,
                         rec.height, vid),
                    )
                    return vid
                suffix = rec.content_hash[:8] if rec.content_hash else "ref"
                base = rec.name[: MAX_VIDEO_NAME_CHARS - 12]
                rec = replace(rec, name=f"{base}-{suffix}")
                n = 2
                while self._rows("SELECT 1 FROM videos WHERE name = ?", (rec.name,)):
                    rec = replace(rec, name=f"{base}-{suffix}-{n}")
                    n += 1
            cur = self.db.execute(
                "INSERT INTO videos (name, content_hash, path, fps, frame_count, duration_s, width,"
                " height, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (rec.name, rec.content_hash, rec.path, rec.fps, rec.frame_count, rec.duration_s,
                 rec.width, rec.height, self._stamp()),
            )
            return cur.lastrowid

    def _video_record(self, video: Any, fields: Mapping[str, Any]) -> VideoRecord:
        if video is None:
            try:
                rec = VideoRecord(**fields)
            except TypeError as exc:
                raise AnnotationError(
                    f"bad video fields ({exc}): give name and fps, optionally path, content_hash, "
                    "frame_count, duration_s, width, height"
                ) from None
        elif isinstance(video, VideoRecord):
            rec = replace(video, **fields)
        elif all(hasattr(video, a) for a in ("path", "content_hash", "fps", "frame_count")):
            rec = VideoRecord.from_video_info(video, name=fields.get("name"))
        else:
            raise AnnotationError(
                f"add_video takes a VideoRecord, a VideoInfo or keyword fields, got {type(video).__name__}"
            )
        name = check_text(rec.name, "video name", MAX_VIDEO_NAME_CHARS, allow_empty=False)
        path = check_text(rec.path, "video path", MAX_PATH_CHARS, allow_empty=True)
        content_hash = rec.content_hash
        if content_hash is not None:
            content_hash = str(content_hash).strip().lower()
            if not (8 <= len(content_hash) <= 128) or any(ch not in "0123456789abcdef" for ch in content_hash):
                raise AnnotationError(
                    f"content_hash {rec.content_hash!r} is not a hex digest: pass the file's sha256"
                )
        duration_s = rec.duration_s
        if duration_s is not None:
            if isinstance(duration_s, bool) or not isinstance(duration_s, (int, float)) or not (
                math.isfinite(duration_s) and duration_s >= 0
            ):
                raise AnnotationError(f"duration_s must be a finite number >= 0, got {duration_s!r}")
            duration_s = float(duration_s)
        return VideoRecord(
            name=name, fps=check_fps(rec.fps), path=path, content_hash=content_hash,
            frame_count=check_optional_int(rec.frame_count, "frame_count"), duration_s=duration_s,
            width=check_optional_int(rec.width, "width"), height=check_optional_int(rec.height, "height"),
        )

    _VIDEO_COLUMNS = "id, name, fps, path, content_hash, frame_count, duration_s, width, height, created_at"

    @staticmethod
    def _video_from_row(r: Sequence[Any]) -> VideoRecord:
        return VideoRecord(id=r[0], name=r[1], fps=r[2], path=r[3], content_hash=r[4], frame_count=r[5],
                           duration_s=r[6], width=r[7], height=r[8], created_at=r[9])

    def video(self, video_id: int) -> VideoRecord:
        with self._read():
            rows = self._rows(f"SELECT {self._VIDEO_COLUMNS} FROM videos WHERE id = ?",
                              (_as_id(video_id, "video id"),))
        if not rows:
            raise AnnotationError(f"no video with id {video_id}: list them with videos()")
        return self._video_from_row(rows[0])

    def videos(self) -> list[VideoRecord]:
        with self._read():
            return [self._video_from_row(r) for r in
                    self._rows(f"SELECT {self._VIDEO_COLUMNS} FROM videos ORDER BY id")]

    def find_video(self, ref: int | str) -> int:
        """A video id from an id or a name (names win when a name looks like a number)."""
        with self._read():
            if isinstance(ref, str):
                row = self._rows("SELECT id FROM videos WHERE name = ?", (ref,))
                if row:
                    return row[0][0]
                if not ref.strip().isdigit():
                    raise AnnotationError(f"no video named {ref!r}: list them with videos()")
                ref = int(ref)
            if isinstance(ref, bool) or not isinstance(ref, int):
                raise AnnotationError(f"video reference must be an id or a name, got {ref!r}")
            if not self._rows("SELECT 1 FROM videos WHERE id = ?", (ref,)):
                raise AnnotationError(f"no video with id {ref}: list them with videos()")
            return ref

    def video_by_name(self, name: str) -> VideoRecord | None:
        with self._read():
            rows = self._rows(f"SELECT {self._VIDEO_COLUMNS} FROM videos WHERE name = ?", (str(name),))
        return self._video_from_row(rows[0]) if rows else None

    def video_by_hash(self, content_hash: str) -> VideoRecord | None:
        with self._read():
            rows = self._rows(f"SELECT {self._VIDEO_COLUMNS} FROM videos WHERE content_hash = ?",
                              (str(content_hash).lower(),))
        return self._video_from_row(rows[0]) if rows else None

    # ---------------------------------------------------------------- analyses

    def add_analysis(
        self,
        video_id: int,
        model_id: str,
        settings: Mapping[str, Any] | None,
        segments: Sequence[Any],
        *,
        model_version: str = "",
    ) -> int:
        """Record one model run over a video and its predicted segments (``uprm.segments.Segment``:
        seconds, label = category, score, cause); returns the analysis id. The store's
        ``video_id`` wins over each Segment's own ``video_id`` string."""
        model_id = check_text(model_id, "model_id", MAX_MODEL_ID_CHARS, allow_empty=False)
        model_version = check_text(model_version, "model_version", MAX_MODEL_ID_CHARS, allow_empty=True)
        settings_json = check_settings(settings)
        video = self.video(video_id)
        rows = []
        for i, seg in enumerate(segments):
            try:
                span = check_span(getattr(seg, "start_s", None), getattr(seg, "end_s", None),
                                  video.fps, video.total_frames)
                label = self._model_category(getattr(seg, "label", "threat"))
                cause = check_cause(getattr(seg, "cause", ""), allow_empty=True)
                score = getattr(seg, "score", None)
                if score is not None:
                    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
                        raise AnnotationError(f"score must be a finite number or None, got {score!r}")
                    score = float(score)
            except AnnotationError as exc:
                raise AnnotationError(f"predicted segment #{i}: {exc}") from None
            rows.append((span, label, cause, score))
        with self._write():
            now = self._stamp()
            analysis_id = self.db.execute(
                "INSERT INTO analyses (video_id, model_id, model_version, settings_json, created_at)"
                " VALUES (?, ?, ?, ?, ?)", (video.id, model_id, model_version, settings_json, now),
            ).lastrowid
            for span, label, cause, score in rows:
                seg_id = self.db.execute(
                    "INSERT INTO segments (video_id, source, created_at) VALUES (?, 'model', ?)",
                    (video.id, now),
                ).lastrowid
                self.db.execute(
                    "INSERT INTO predicted_segments (segment_id, analysis_id, start_frame, end_frame,"
                    " start_s, end_s, score, category, cause) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (seg_id, analysis_id, span.start_frame, span.end_frame, span.start_s, span.end_s,
                     score, label, cause),
                )
            return analysis_id

    def _model_category(self, label: object) -> str:
        """A model's category is recorded as the model said it (spelled canonically when it is in
        the list): the list constrains what humans choose, not what a model may output."""
        label = check_text(label, "predicted category", MAX_LABEL_CHARS, allow_empty=False)
        return self.categories.canonical(label) if label in self.categories else label

    def analyses(self, video_id: int) -> list[AnalysisRecord]:
        with self._read():
            rows = self._rows(
                "SELECT a.id, a.video_id, a.model_id, a.model_version, a.settings_json, a.created_at,"
                " (SELECT count(*) FROM predicted_segments p WHERE p.analysis_id = a.id)"
                " FROM analyses a WHERE a.video_id = ? ORDER BY a.id", (_as_id(video_id, "video id"),))
        return [AnalysisRecord(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6]) for r in rows]

    # ---------------------------------------------------------------- corrections (writes)

    def accept(self, segment_id: int, annotator: str) -> int:
        """The segment is a real threat as it stands. Returns the correction id."""
        return self._correct("accept", segment_id, annotator, lambda seg, video: {"status": "accepted"})

    def reject(self, segment_id: int, annotator: str) -> int:
        """The segment is a false positive (for an added segment: withdraw it)."""
        return self._correct("reject", segment_id, annotator, lambda seg, video: {"status": "rejected"})

    def edit_bounds(self, segment_id: int, start_s: float, end_s: float, annotator: str) -> int:
        """New bounds in seconds, snapped to frames (see annotations.timebase)."""

        def value(seg: ReviewedSegment, video: VideoRecord) -> dict:
            span = check_span(start_s, end_s, video.fps, video.total_frames)
            return {"start_frame": span.start_frame, "end_frame": span.end_frame,
                    "start_s": span.start_s, "end_s": span.end_s}

        return self._correct("edit_bounds", segment_id, annotator, value)

    def edit_cause(self, segment_id: int, cause: str, annotator: str) -> int:
        cause = check_cause(cause, allow_empty=False)
        return self._correct("edit_cause", segment_id, annotator, lambda seg, video: {"cause": cause})

    def edit_category(self, segment_id: int, category: str, annotator: str) -> int:
        category = self.categories.canonical(category)
        return self._correct("edit_category", segment_id, annotator,
                             lambda seg, video: {"category": category})

    def add_segment(
        self,
        video_id: int,
        start_s: float,
        end_s: float,
        annotator: str,
        *,
        label: str = "threat",
        cause: str = "",
    ) -> int:
        """A segment the model missed. Returns the correction id (its ``segment_id`` names the new
        segment: ``store.correction(cid).segment_id``)."""
        name = check_annotator(annotator)
        label = self.categories.canonical(label)
        cause = check_cause(cause, allow_empty=True)
        video = self.video(video_id)
        span = check_span(start_s, end_s, video.fps, video.total_frames)
        with self._write():
            annotator_id, _ = self._annotator_id(name, create=True)
            now = self._stamp()
            seg_id = self.db.execute(
                "INSERT INTO segments (video_id, source, created_at) VALUES (?, 'human', ?)",
                (video.id, now),
            ).lastrowid
            value = {"start_frame": span.start_frame, "end_frame": span.end_frame,
                     "start_s": span.start_s, "end_s": span.end_s, "category": label, "cause": cause}
            return self._insert_correction(video.id, seg_id, annotator_id, "add_segment", value, None, now)

    def mark_reviewed(self, video_id: int, annotator: str) -> int:
        """Declare the video's review complete (needed for videos without predictions)."""
        name = check_annotator(annotator)
        video = self.video(video_id)
        with self._write():
            annotator_id, _ = self._annotator_id(name, create=True)
            pending = [s for s in self.current_segments(video.id) if s.status == "pending"]
            if pending:
                raise AnnotationError(
                    f"video {video.name!r} still has {len(pending)} undecided predicted segment(s) "
                    f"(ids {', '.join(str(s.id) for s in pending[:5])}): accept or reject them first"
                )
            return self._insert_correction(video.id, None, annotator_id, "mark_reviewed",
                                           {"review": "complete"}, None, self._stamp())

    def _correct(self, kind: str, segment_id: int, annotator: str, make_value) -> int:
        name = check_annotator(annotator)
        with self._write():
            annotator_id, _ = self._annotator_id(name, create=True)
            seg = self._segment_state(segment_id)
            video = self.video(seg.video_id)
            value = make_value(seg, video)
            return self._insert_correction(video.id, seg.id, annotator_id, kind, value,
                                           state_value(seg, kind), self._stamp())

    def _insert_correction(self, video_id: int, segment_id: int | None, annotator_id: int, kind: str,
                           new_value: dict, previous_value: dict | None, created_at: str) -> int:
        return self.db.execute(
            "INSERT INTO corrections (video_id, segment_id, annotator_id, kind, created_at, new_value,"
            " previous_value) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (video_id, segment_id, annotator_id, kind, created_at, json.dumps(new_value),
             None if previous_value is None else json.dumps(previous_value)),
        ).lastrowid

    def _segment_state(self, segment_id: int) -> ReviewedSegment:
        """The merged state of one segment (whatever view it appears in), read in the caller's
        transaction."""
        segment_id = _as_id(segment_id, "segment id")
        row = self._rows("SELECT s.video_id, s.source, v.fps FROM segments s JOIN videos v"
                         " ON v.id = s.video_id WHERE s.id = ?", (segment_id,))
        if not row:
            raise AnnotationError(
                f"no segment with id {segment_id}: take ids from current_segments(video_id)"
            )
        video_id, source, fps = row[0]
        baseline = []
        analysis_id = None
        if source == "model":
            p = self._rows("SELECT start_frame, end_frame, category, cause, score, analysis_id"
                           " FROM predicted_segments WHERE segment_id = ?", (segment_id,))[0]
            analysis_id = p[5]
            baseline = [BaselineSegment(segment_id, video_id, p[0], p[1], p[2], p[3], p[4], p[5])]
        corrections = self._corrections("c.segment_id = ?", (segment_id,), for_view=True)
        (seg,) = replay(baseline, corrections, fps, latest_analysis_id=analysis_id)
        return seg

    # ---------------------------------------------------------------- reads: history and views

    _CORRECTION_SQL = (
        "SELECT c.id, c.video_id, c.segment_id, n.name, c.kind, c.created_at, c.new_value,"
        " c.previous_value FROM corrections c JOIN annotators n ON n.id = c.annotator_id WHERE "
    )

    def _corrections(self, where: str, params: Sequence[Any], *, for_view: bool = False) -> list[Correction]:
        """Corrections in id order. ``for_view``: for internal replays only, which need no
        previous values and never mutate values, so identical value texts share one parsed dict
        (accept/reject values repeat thousands of times in an export)."""
        rows = self._rows(self._CORRECTION_SQL + where + " ORDER BY c.id", params)
        if not for_view:
            return [Correction(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]),
                               None if r[7] is None else json.loads(r[7])) for r in rows]
        parsed: dict[str, dict] = {}
        out = []
        for r in rows:
            value = parsed.get(r[6])
            if value is None:
                value = parsed[r[6]] = json.loads(r[6])
            out.append(Correction(r[0], r[1], r[2], r[3], r[4], r[5], value, None))
        return out

    def correction(self, correction_id: int) -> Correction:
        with self._read():
            found = self._corrections("c.id = ?", (_as_id(correction_id, "correction id"),))
        if not found:
            raise AnnotationError(f"no correction with id {correction_id}")
        return found[0]

    def history(self, video_id: int, annotator: str | None = None) -> list[Correction]:
        """Every correction of a video (optionally one annotator's), oldest first."""
        with self._read():
            video = self.video(video_id)
            name = self._canonical_annotator(annotator)
            corrections = self._corrections("c.video_id = ?", (video.id,))
        return corrections_in_view(corrections, name)

    def _cutoff(self, as_of: AsOf) -> _Cutoff:
        if as_of is None:
            return _Cutoff()
        if isinstance(as_of, bool):
            raise AnnotationError("as_of must be a correction id, a datetime or an ISO-8601 time")
        if isinstance(as_of, int):
            row = self._rows("SELECT created_at FROM corrections WHERE id = ?", (as_of,))
            if not row:
                raise AnnotationError(f"as_of: no correction with id {as_of}; take ids from history()")
            return _Cutoff(as_of, row[0][0])
        if isinstance(as_of, str):
            try:
                as_of = datetime.fromisoformat(as_of.strip())
            except ValueError:
                raise AnnotationError(
                    f"as_of {as_of!r} is not an ISO-8601 time such as 2025-01-31T14:05:00Z"
                ) from None
        if isinstance(as_of, datetime):
            return _Cutoff(None, _utc_iso(as_of))
        raise AnnotationError(f"as_of must be a correction id, a datetime or an ISO-8601 time, got {as_of!r}")

    def _view_inputs(self, video_ids: Sequence[int] | None, cutoff: _Cutoff) -> _ViewInputs:
        if video_ids is None:
            where, params = "1 = 1", []
        else:
            # one JSON-array parameter: no SQL built from ids, no limit on the number of ids
            ids = [_as_id(v, "video id") for v in video_ids]
            where, params = "{col} IN (SELECT value FROM json_each(?))", [json.dumps(ids)]
        videos = {
            r[0]: self._video_from_row(r) for r in self._rows(
                f"SELECT {self._VIDEO_COLUMNS} FROM videos WHERE {where.format(col='id')}", params)
        }
        t = cutoff.time
        latest = dict(self._rows(
            f"SELECT video_id, max(id) FROM analyses WHERE {where.format(col='video_id')}"
            " AND (? IS NULL OR created_at <= ?) GROUP BY video_id", [*params, t, t]))
        baseline: dict[int, list[BaselineSegment]] = defaultdict(list)
        for r in self._rows(
            "SELECT p.segment_id, a.video_id, p.start_frame, p.end_frame, p.category, p.cause, p.score,"
            " p.analysis_id FROM predicted_segments p JOIN analyses a ON a.id = p.analysis_id"
            f" WHERE {where.format(col='a.video_id')} AND (? IS NULL OR a.created_at <= ?)"
            " ORDER BY p.segment_id", [*params, t, t],
        ):
            baseline[r[1]].append(BaselineSegment(*r))
        corrections: dict[int, list[Correction]] = defaultdict(list)
        cid = cutoff.correction_id
        for c in self._corrections(
            f"{where.format(col='c.video_id')} AND (? IS NULL OR c.id <= ?)"
            " AND (? IS NULL OR c.created_at <= ?)", [*params, cid, cid, t, t], for_view=True,
        ):
            corrections[c.video_id].append(c)
        return _ViewInputs(videos, baseline, corrections, latest)

    def segments_by_video(
        self, video_ids: Sequence[int] | None = None, annotator: str | None = None, as_of: AsOf = None
    ) -> dict[int, list[ReviewedSegment]]:
        """``current_segments`` for many videos at once (all when ``video_ids`` is None)."""
        return {st.video.id: st.segments for st in self.video_states(video_ids, annotator, as_of)}

    def video_states(
        self, video_ids: Sequence[int] | None = None, annotator: str | None = None, as_of: AsOf = None
    ) -> list[VideoState]:
        """Record, derived review status and segments of many videos (all when ``video_ids`` is
        None) in one snapshot, by video id: what exports and overviews need."""
        with self._read():
            name = self._canonical_annotator(annotator)
            inputs = self._view_inputs(video_ids, self._cutoff(as_of))
        _require_known(video_ids, inputs)
        states = []
        for vid, video in sorted(inputs.videos.items()):
            segments = inputs.view(vid, name)
            seen = corrections_in_view(inputs.corrections.get(vid, []), name)
            states.append(VideoState(video, review_status(segments, seen), segments))
        return states

    def current_segments(
        self, video_id: int, annotator: str | None = None, as_of: AsOf = None
    ) -> list[ReviewedSegment]:
        """The video's segments as derived from its history, sorted by start.

        ``annotator``: that annotator's own view (None: everyone's corrections merged, the last
        writer winning per field). ``as_of``: show the state right after correction id ``as_of``
        (an int), or at a time (datetime or ISO-8601 text; naive times are UTC). Rejected segments
        are included with status "rejected"; filter on ``status`` for what to draw.
        """
        video_id = _as_id(video_id, "video id")
        return self.segments_by_video([video_id], annotator, as_of)[video_id]

    def segment(self, segment_id: int) -> ReviewedSegment:
        """One segment's merged current state."""
        with self._read():
            return self._segment_state(segment_id)

    def review_status(self, video_id: int, annotator: str | None = None) -> str:
        """"unreviewed", "in_progress" or "reviewed" (see annotations.corrections.review_status)."""
        return next(p.status for p in self.progress(annotator, video_ids=[video_id]))

    def progress(self, annotator: str | None = None, *, video_ids: Sequence[int] | None = None
                 ) -> list[VideoProgress]:
        """Per-video review progress (merged, or in one annotator's view), by video id."""
        with self._read():
            name = self._canonical_annotator(annotator)
            inputs = self._view_inputs(video_ids, _Cutoff())
        _require_known(video_ids, inputs)
        out = []
        for vid, video in sorted(inputs.videos.items()):
            segments = inputs.view(vid, name)
            seen = corrections_in_view(inputs.corrections.get(vid, []), name)
            counts = Counter(s.status for s in segments)
            out.append(VideoProgress(
                video_id=vid, name=video.name, status=review_status(segments, seen),
                segments=len(segments), pending=counts["pending"], accepted=counts["accepted"],
                rejected=counts["rejected"],
                added=sum(s.source == "human" and s.status == "accepted" for s in segments),
                corrections=len(seen), annotators=tuple(dict.fromkeys(c.annotator for c in seen)),
                last_activity=seen[-1].created_at if seen else None,
            ))
        return out

    def review_queue(self, annotator: str | None = None) -> ReviewQueue:
        """Videos by derived review status; each group sorted by last activity, oldest first
        (never-touched videos by id)."""
        groups: dict[str, list[VideoProgress]] = {s: [] for s in REVIEW_STATUSES}
        for p in self.progress(annotator):
            groups[p.status].append(p)
        for items in groups.values():
            items.sort(key=lambda p: (p.last_activity or "", p.video_id))
        return ReviewQueue(**groups)

    def annotator_progress(self) -> list[AnnotatorProgress]:
        """Per annotator: corrections by kind, videos touched, videos reviewed in their own view."""
        with self._read():
            names = [r[0] for r in self._rows("SELECT name FROM annotators ORDER BY id")]
            inputs = self._view_inputs(None, _Cutoff())
        out = []
        for name in names:
            mine = {vid: [c for c in cs if c.annotator == name] for vid, cs in inputs.corrections.items()}
            mine = {vid: cs for vid, cs in mine.items() if cs}
            every = [c for cs in mine.values() for c in cs]
            reviewed = sum(
                review_status(inputs.view(vid, name), cs) == "reviewed" for vid, cs in mine.items()
            )
            times = sorted(c.created_at for c in every)
            out.append(AnnotatorProgress(
                annotator=name, corrections=len(every), by_kind=dict(Counter(c.kind for c in every)),
                videos_touched=len(mine), videos_reviewed=reviewed,
                first_activity=times[0] if times else None, last_activity=times[-1] if times else None,
            ))
        return out

    def disagreement(
        self, video_id: int, annotator_a: str, annotator_b: str, tiou_threshold: float = 0.5
    ) -> Agreement:
        """tIoU-based agreement between two annotators' own views of a video."""
        if not (isinstance(tiou_threshold, (int, float)) and 0 < tiou_threshold <= 1):
            raise AnnotationError(f"tiou_threshold must be in (0, 1], got {tiou_threshold!r}")
        with self._read():
            a = self._canonical_annotator(annotator_a)
            b = self._canonical_annotator(annotator_b)
            inputs = self._view_inputs([video_id], _Cutoff())
        video_id = _as_id(video_id, "video id")
        if video_id not in inputs.videos:
            raise AnnotationError(f"no video with id {video_id}: list them with videos()")
        return agreement(video_id, a, inputs.view(video_id, a), b, inputs.view(video_id, b),
                         float(tiou_threshold))


def _require_known(video_ids: Sequence[int] | None, inputs: _ViewInputs) -> None:
    """Asked-for videos that the snapshot does not hold are an error, not an empty answer."""
    if video_ids is not None:
        missing = sorted({_as_id(v, "video id") for v in video_ids} - inputs.videos.keys())
        if missing:
            raise AnnotationError(f"no video with id {missing[0]}: list them with videos()")
