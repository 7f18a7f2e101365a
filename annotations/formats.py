"""Import and export of reviewed annotations.

Formats (``FORMATS``):

* ``llava``: LLaVA / Video-LLaVA conversation JSON, one entry per video
  ``{"id", "video", "conversations": [{"from": "human"|"gpt", "value"}]}`` asking the paper's three
  instructions (``uprm.instructions``); ``"<video>\\n"`` opens the first human turn, as in
  Video-LLaVA's training data. Answers give times in seconds at 0.1 s; the attribute turn is
  present when the video has a threat with a cause (several causes are joined with "; "). Each entry
  also carries the exact ``"segments"`` (seconds, frames, label, cause), ``"fps"`` and
  ``"duration_s"``, which training and import read first; files from elsewhere fall back to parsing
  the answers.
* ``activitynet``: ActivityNet ground-truth JSON (``uprm.formats``), with the optional per-segment
  ``"cause"``.
* ``ucf_crime``: UCF-Crime temporal txt (``uprm.formats``): frames at 30 fps, at most two segments
  per video, one class per video (the most common category of its segments, ``Normal`` without).
* ``label_studio``: Label Studio tasks with ``timelinelabels`` results. Frames follow Label Studio's
  video timeline: 1-based and inclusive, so our frames ``[start_frame, end_frame)`` become
  ``{"start": start_frame + 1, "end": end_frame}`` (sources: the TimelineLabels tag reference,
  "value.ranges: array of ranges, each range is an object with start and end", and HumanSignal's
  label-studio-ml-backend timeline-labels converter, which fills ``frames[start - 1:end]``).
  The cause travels as a per-region ``textarea`` result sharing the region's id. A
  ``label_config.xml`` for such a project is written beside the export.
* ``csv``: one row per segment with frames, seconds, category, cause, source and annotators; a
  video without segments gets one row with empty segment fields.

What is exported: per selected video, the view's *accepted* segments (human-confirmed predictions,
edited or added segments); by default only videos whose review is complete, since an unfinished
video would otherwise claim "no threat". Import adds each segment as an ``add_segment`` correction
by the importing annotator (identical segments already present are skipped) and marks each video
reviewed; videos the store lacks become references (no file) named after the file's ids.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from annotations.files import atomic_write, atomic_write_text, inside, safe_stem
from annotations.records import ReviewedSegment, VideoRecord
from annotations.store import Store
from annotations.timebase import to_frame
from annotations.validation import AnnotationError, check_annotator, check_fps

FORMATS = ("llava", "activitynet", "ucf_crime", "label_studio", "csv")
IMPORT_FORMATS = FORMATS
SUFFIX = {"llava": ".json", "activitynet": ".json", "ucf_crime": ".txt", "label_studio": ".json",
          "csv": ".csv"}
UCF_FPS = 30.0
DEFAULT_IMPORT_FPS = 30.0  # for seconds-only formats when the store does not know the video
VIDEO_PLACEHOLDER = "<video>\n"
LS_LABELS = "videoLabels"  # from_name of the TimelineLabels control in our label config
LS_CAUSE = "cause"  # from_name of the per-region TextArea
LS_VIDEO = "video"  # to_name: the Video object
CSV_COLUMNS = ("video_name", "video_path", "fps", "frame_count", "duration_s", "segment_id",
               "start_frame", "end_frame", "start_s", "end_s", "label", "cause", "source", "edited",
               "score", "annotators")
_VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v")


@dataclass(frozen=True)
class ExportVideo:
    video: VideoRecord
    segments: list[ReviewedSegment]  # accepted segments, by start


@dataclass(frozen=True)
class ExportResult:
    paths: list[Path]
    videos: int
    segments: int
    skipped_unreviewed: list[str]  # names of videos left out because their review is unfinished


@dataclass(frozen=True)
class ImportedSegment:
    start_s: float
    end_s: float
    label: str = "threat"
    cause: str = ""
    start_frame: int | None = None  # exact frames when the format has them (at ImportedVideo.fps)
    end_frame: int | None = None


@dataclass(frozen=True)
class ImportedVideo:
    name: str
    segments: list[ImportedSegment] = field(default_factory=list)
    path: str = ""
    fps: float | None = None
    frame_count: int | None = None
    duration_s: float | None = None


@dataclass(frozen=True)
class ImportReport:
    format: str
    source: str
    videos: int
    videos_created: int
    segments_added: int
    segments_skipped: int  # already present with the same frames, category and cause
    correction_ids: list[int]


# ------------------------------------------------------------------------------------- helpers


def _check_format(fmt: str, allowed: tuple[str, ...] = FORMATS) -> str:
    if fmt not in allowed:
        raise AnnotationError(f"unknown format {fmt!r}: use one of {', '.join(allowed)}")
    return fmt


def _file_name(video: VideoRecord, suffix: str) -> str:
    """The video's file name as datasets list it (UCF-Crime: ``Abuse028_x264.mp4``)."""
    if video.path and Path(video.path).suffix:
        return Path(video.path).name
    return video.name + suffix


def _strip_video_suffix(name: str) -> str:
    return name[: -len(Path(name).suffix)] if Path(name).suffix.lower() in _VIDEO_SUFFIXES else name


def _format_error(exc: Exception, what: str) -> AnnotationError:
    return AnnotationError(f"{what}: {exc}")


def _joined_cause(segments: list[ReviewedSegment]) -> str:
    causes = dict.fromkeys(s.cause.strip().rstrip(".").strip() for s in segments)
    return "; ".join(c for c in causes if c)


def _video_class(segments: list[ReviewedSegment]) -> str:
    if not segments:
        return "Normal"
    counts = Counter(s.label for s in segments)
    best = max(counts.values())
    return next(s.label for s in segments if counts[s.label] == best)  # ties: earliest segment


# ------------------------------------------------------------------------------------- export


def collect(
    store: Store,
    video_ids: list[int] | None = None,
    *,
    annotator: str | None = None,
    reviewed_only: bool = True,
) -> tuple[list[ExportVideo], list[str]]:
    """(videos to export with their accepted segments, names of unreviewed videos left out)."""
    out, skipped = [], []
    for state in store.video_states(video_ids, annotator):
        if reviewed_only and state.status != "reviewed":
            skipped.append(state.video.name)
            continue
        out.append(ExportVideo(state.video, [s for s in state.segments if s.status == "accepted"]))
    return out, skipped


def to_llava(videos: list[ExportVideo]) -> list[dict[str, Any]]:
    from uprm.instructions import (
        ATTRIBUTE, IDENTIFY, LOCATE, attribute_answer, identify_answer, locate_answer,
    )

    entries = []
    for ev in videos:
        segs = ev.segments
        turns = [
            ("human", VIDEO_PLACEHOLDER + IDENTIFY), ("gpt", identify_answer(bool(segs))),
            ("human", LOCATE), ("gpt", locate_answer([(s.start_s, s.end_s) for s in segs])),
        ]
        cause = _joined_cause(segs)
        if segs and cause:
            turns += [("human", ATTRIBUTE), ("gpt", attribute_answer(cause))]
        entries.append({
            "id": ev.video.name, "video": ev.video.path or _file_name(ev.video, ".mp4"),
            "conversations": [{"from": who, "value": text} for who, text in turns],
            # exact bounds beside the answers (which round to 0.1 s): what training reads first
            "segments": [{"start_s": s.start_s, "end_s": s.end_s, "start_frame": s.start_frame,
                          "end_frame": s.end_frame, "label": s.label, "cause": s.cause} for s in segs],
            "fps": ev.video.fps, "duration_s": ev.video.duration_s,
        })
    return entries


def to_label_studio(videos: list[ExportVideo]) -> list[dict[str, Any]]:
    tasks = []
    for ev in videos:
        v = ev.video
        result = []
        for s in ev.segments:
            region = f"seg{s.id}"
            common = {"id": region, "from_name": LS_LABELS, "to_name": LS_VIDEO, "origin": "manual"}
            result.append({**common, "type": "timelinelabels", "value": {
                "ranges": [{"start": s.start_frame + 1, "end": s.end_frame}],
                "timelinelabels": [s.label]}})
            if s.cause:
                result.append({**common, "from_name": LS_CAUSE, "type": "textarea",
                               "value": {"text": [s.cause]}})
        tasks.append({
            "id": v.id,
            "data": {"video": v.path or _file_name(v, ".mp4"), "video_name": v.name, "fps": v.fps,
                     "frame_count": v.frame_count, "duration_s": v.duration_s},
            "annotations": [{"result": result, "was_cancelled": False, "ground_truth": False}],
            "predictions": [],
        })
    return tasks


def label_studio_config(categories: list[str]) -> str:
    """A Label Studio labeling config matching ``to_label_studio`` (frame rate from the task)."""
    labels = "\n".join(f"    <Label value={quoteattr(c)}/>" for c in categories)
    return (
        "<View>\n"
        f'  <Video name="{LS_VIDEO}" value="$video" frameRate="$fps" timelineHeight="120"/>\n'
        f'  <TimelineLabels name="{LS_LABELS}" toName="{LS_VIDEO}">\n{labels}\n  </TimelineLabels>\n'
        f'  <TextArea name="{LS_CAUSE}" toName="{LS_VIDEO}" perRegion="true" editable="true"'
        ' placeholder="Root cause of the threat"/>\n'
        "</View>\n"
    )


def to_csv(videos: list[ExportVideo]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for ev in videos:
        v = ev.video
        base = (v.name, v.path, repr(v.fps), "" if v.frame_count is None else v.frame_count,
                "" if v.duration_s is None else repr(v.duration_s))
        if not ev.segments:
            writer.writerow(base + ("",) * (len(CSV_COLUMNS) - len(base)))
        for s in ev.segments:  # same order as CSV_COLUMNS
            writer.writerow(base + (
                s.id, s.start_frame, s.end_frame, repr(s.start_s), repr(s.end_s), s.label, s.cause,
                s.source, int(s.edited), "" if s.score is None else repr(s.score), ";".join(s.annotators)))
    return buf.getvalue()


def _json_lines(entries: list[dict[str, Any]]) -> str:
    """A JSON list with one entry per line: json's C encoder (``indent`` would use the pure-Python
    one, 3x slower on 10,000 segments) and still diffable."""
    return "[\n" + ",\n".join(json.dumps(e, ensure_ascii=False) for e in entries) + "\n]\n"


def _write_format(fmt: str, videos: list[ExportVideo], path: Path, categories: list[str]) -> list[Path]:
    from uprm import formats as uf

    if fmt == "llava":
        return [atomic_write_text(path, _json_lines(to_llava(videos)))]
    if fmt == "label_studio":
        text = _json_lines(to_label_studio(videos))
        config = path.with_name(path.stem + ".label_config.xml")
        return [atomic_write_text(path, text), atomic_write_text(config, label_studio_config(categories))]
    if fmt == "csv":
        return [atomic_write_text(path, to_csv(videos))]
    if fmt == "activitynet":
        segments = [s.to_segment(ev.video.name) for ev in videos for s in ev.segments]
        durations = {ev.video.name: math.nan if ev.video.duration_s is None else ev.video.duration_s
                     for ev in videos}
        try:
            return [atomic_write(path, lambda tmp: uf.write_activitynet_gt(
                segments, tmp, durations=durations, video_ids=[ev.video.name for ev in videos]))]
        except uf.FormatError as exc:
            raise _format_error(exc, "cannot write ActivityNet JSON") from None
    if fmt == "ucf_crime":
        classes: dict[str, str] = {}
        segments = []
        for ev in videos:
            key = _file_name(ev.video, ".mp4")
            if key in classes:
                raise AnnotationError(
                    f"two videos would both be listed as {key!r} in the UCF-Crime txt: export them separately"
                )
            classes[key] = _video_class(ev.segments)
            segments += [s.to_segment(key) for s in ev.segments]
        try:
            return [atomic_write(path, lambda tmp: uf.write_ucf_crime_txt(segments, classes, tmp, fps=UCF_FPS))]
        except uf.FormatError as exc:
            raise _format_error(exc, "cannot write the UCF-Crime txt") from None
    raise AssertionError(fmt)


def export(
    store: Store,
    fmt: str,
    out_dir: str | Path,
    video_ids: list[int] | None = None,
    *,
    name: str | None = None,
    annotator: str | None = None,
    reviewed_only: bool = True,
    per_video: bool = False,
) -> ExportResult:
    """Write ``fmt`` into ``out_dir`` (created if needed); returns the files written.

    ``name``: file stem (default ``annotations_<fmt>``); with ``per_video`` one file per video,
    named after the video. Names are sanitised and checked to stay inside ``out_dir``.
    ``annotator``: export that annotator's view instead of the merged one.
    """
    _check_format(fmt)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise AnnotationError(f"export folder {str(out)!r} is a file: give a folder")
    out.mkdir(parents=True, exist_ok=True)
    videos, skipped = collect(store, video_ids, annotator=annotator, reviewed_only=reviewed_only)
    categories = list(store.categories.names)
    paths: list[Path] = []
    if per_video:
        used: set[str] = set()
        for ev in videos:
            stem = safe_stem(ev.video.name, default=f"video_{ev.video.id}")
            if stem in used:
                stem = f"{stem}-{ev.video.id}"
            used.add(stem)
            paths += _write_format(fmt, [ev], inside(out, stem + SUFFIX[fmt]), categories)
    else:
        stem = safe_stem(name or f"annotations_{fmt}", default=f"annotations_{fmt}")
        paths += _write_format(fmt, videos, inside(out, stem + SUFFIX[fmt]), categories)
    return ExportResult(paths, len(videos), sum(len(ev.segments) for ev in videos), skipped)


# ------------------------------------------------------------------------------------- import


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"{path}: not UTF-8 text ({exc.reason}); expected {what}") from None
    except json.JSONDecodeError as exc:
        raise AnnotationError(
            f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg} (expected {what})"
        ) from None


def read_label_studio(path: Path) -> list[ImportedVideo]:
    data = _load_json(path, "a Label Studio JSON export (a list of tasks)")
    tasks = [data] if isinstance(data, dict) else data
    if not isinstance(tasks, list):
        raise AnnotationError(f"{path}: expected a list of Label Studio tasks")
    out = []
    for t, task in enumerate(tasks):
        where = f"{path}: task #{t}"
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise AnnotationError(f"{where}: a task needs a 'data' object with the video")
        d = task["data"]
        video = str(d.get("video") or "")
        name = d.get("video_name") or _strip_video_suffix(Path(video.split("?")[0]).name)
        if not name:
            raise AnnotationError(f"{where}: no video in data.video or data.video_name")
        fps = d.get("fps")
        segments = []
        for a, ann in enumerate(task.get("annotations") or []):
            if not isinstance(ann, dict) or ann.get("was_cancelled"):
                continue
            result = ann.get("result") or []
            causes: dict[str, str] = {}
            for item in result:
                if isinstance(item, dict) and item.get("type") == "textarea":
                    text = (item.get("value") or {}).get("text") or []
                    causes[str(item.get("id"))] = "\n".join(str(x) for x in text).strip()
            for r, item in enumerate(result):
                if not isinstance(item, dict) or item.get("type") != "timelinelabels":
                    continue
                value = item.get("value") or {}
                labels = value.get("timelinelabels") or []
                ranges = value.get("ranges") or []
                if not labels or not ranges:
                    raise AnnotationError(f"{where}, annotation {a}, result {r}: a timelinelabels "
                                          "result needs value.ranges and value.timelinelabels")
                for rng in ranges:
                    try:
                        start, end = int(rng["start"]), int(rng["end"])
                    except (KeyError, TypeError, ValueError):
                        raise AnnotationError(
                            f"{where}, annotation {a}, result {r}: range {rng!r} needs integer "
                            "'start' and 'end' frames"
                        ) from None
                    if not 1 <= start <= end:
                        raise AnnotationError(
                            f"{where}, annotation {a}, result {r}: frames must satisfy "
                            f"1 <= start <= end (Label Studio frames are 1-based), got {start}..{end}"
                        )
                    for label in labels:
                        segments.append(ImportedSegment(
                            math.nan, math.nan, str(label), causes.get(str(item.get("id")), ""),
                            start_frame=start - 1, end_frame=end))
        out.append(ImportedVideo(
            name=str(name), segments=segments, path=video,
            fps=None if fps is None else check_fps(fps),
            frame_count=d.get("frame_count"), duration_s=d.get("duration_s")))
    return out


def read_csv_export(path: Path) -> list[ImportedVideo]:
    try:
        rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"{path}: not UTF-8 text ({exc.reason}); expected our CSV export") from None
    if rows and not {"video_name", "fps", "start_frame", "end_frame"} <= rows[0].keys():
        raise AnnotationError(
            f"{path}: missing columns; expected at least video_name, fps, start_frame, end_frame"
        )
    videos: dict[str, ImportedVideo] = {}
    for i, row in enumerate(rows, start=2):
        try:
            fps = float(row["fps"])
            name = row["video_name"]
            if name not in videos:
                videos[name] = ImportedVideo(
                    name=name, path=row.get("video_path") or "", fps=fps,
                    frame_count=int(row["frame_count"]) if row.get("frame_count") else None,
                    duration_s=float(row["duration_s"]) if row.get("duration_s") else None)
            if row["start_frame"]:
                sf, ef = int(row["start_frame"]), int(row["end_frame"])
                videos[name].segments.append(ImportedSegment(
                    sf / fps, ef / fps, row.get("label") or "threat", row.get("cause") or "", sf, ef))
        except (TypeError, ValueError) as exc:
            raise AnnotationError(f"{path}:{i}: bad value ({exc}); fps and frames must be numbers") from None
    return list(videos.values())


_LOCATE_RE = re.compile(r"between\s+(\d+(?:\.\d+)?)s\s+and\s+(\d+(?:\.\d+)?)s")
_ATTRIBUTED = "the threat is attributed to "


def read_llava(path: Path) -> list[ImportedVideo]:
    from uprm.instructions import ATTRIBUTE, LOCATE

    data = _load_json(path, "a LLaVA conversation JSON list")
    if not isinstance(data, list):
        raise AnnotationError(f"{path}: expected a list of {{id, video, conversations}} entries")
    out = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or not isinstance(entry.get("conversations"), list):
            raise AnnotationError(f"{path}: entry #{i} needs 'id', 'video' and a 'conversations' list")
        turns = entry["conversations"]
        intervals: list[tuple[float, float]] = []
        cause = ""
        for k in range(len(turns) - 1):
            human, answer = turns[k], turns[k + 1]
            if not (isinstance(human, dict) and isinstance(answer, dict)
                    and human.get("from") == "human" and answer.get("from") == "gpt"):
                continue
            question, reply = str(human.get("value", "")), str(answer.get("value", ""))
            if LOCATE in question:
                intervals = [(float(a), float(b)) for a, b in _LOCATE_RE.findall(reply)]
            elif ATTRIBUTE in question:
                cause = reply.strip()
                if cause.lower().startswith(_ATTRIBUTED):
                    cause = cause[len(_ATTRIBUTED):]
                cause = cause.rstrip(".").strip()
        name = entry.get("id") or _strip_video_suffix(Path(str(entry.get("video", ""))).name)
        if not name:
            raise AnnotationError(f"{path}: entry #{i} has neither 'id' nor 'video'")
        if isinstance(entry.get("segments"), list):  # our own export: exact frames, labels and causes
            try:
                segments = [ImportedSegment(float(g["start_s"]), float(g["end_s"]), str(g.get("label") or "threat"),
                                            str(g.get("cause") or ""), g.get("start_frame"), g.get("end_frame"))
                            for g in entry["segments"]]
            except (TypeError, KeyError, ValueError):
                raise AnnotationError(f"{path}: entry #{i} 'segments' must be a list of "
                                      "{start_s, end_s, start_frame, end_frame, label, cause}") from None
            fps = entry.get("fps")
            out.append(ImportedVideo(name=str(name), path=str(entry.get("video") or ""), segments=segments,
                                     fps=float(fps) if fps else None, duration_s=entry.get("duration_s")))
            continue
        out.append(ImportedVideo(
            name=str(name), path=str(entry.get("video") or ""),
            segments=[ImportedSegment(s, e, "threat", cause) for s, e in intervals]))
    return out


def read_activitynet(path: Path) -> list[ImportedVideo]:
    from uprm import formats as uf

    try:
        segments, durations = uf.read_activitynet_gt(path)
    except uf.FormatError as exc:
        raise _format_error(exc, "cannot read ActivityNet JSON") from None
    videos = {vid: ImportedVideo(vid, duration_s=None if math.isnan(d) else d)
              for vid, d in durations.items()}
    for s in segments:
        videos[s.video_id].segments.append(ImportedSegment(s.start_s, s.end_s, s.label, s.cause))
    return list(videos.values())


def read_ucf_crime(path: Path) -> list[ImportedVideo]:
    from uprm import formats as uf

    try:
        segments, classes = uf.read_ucf_crime_txt(path, fps=UCF_FPS)
    except uf.FormatError as exc:
        raise _format_error(exc, "cannot read the UCF-Crime txt") from None
    videos = {vid: ImportedVideo(_strip_video_suffix(vid), path=vid, fps=UCF_FPS) for vid in classes}
    for s in segments:
        videos[s.video_id].segments.append(ImportedSegment(
            s.start_s, s.end_s, s.label, "", to_frame(s.start_s, UCF_FPS), to_frame(s.end_s, UCF_FPS)))
    return list(videos.values())


READERS = {"llava": read_llava, "activitynet": read_activitynet, "ucf_crime": read_ucf_crime,
           "label_studio": read_label_studio, "csv": read_csv_export}


def import_file(
    store: Store,
    fmt: str,
    path: str | Path,
    *,
    annotator: str = "import",
    fps: float | None = None,
    mark_reviewed: bool = True,
) -> ImportReport:
    """Import a file as corrections by ``annotator``, all in one transaction (all or nothing).

    ``fps``: frame rate for videos the store does not know yet when the file does not say
    (ActivityNet, LLaVA: default 30; Label Studio: required). UCF-Crime files are at 30 fps.
    """
    _check_format(fmt, IMPORT_FORMATS)
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: no such file to import")
    if fps is not None:
        fps = check_fps(fps)
    check_annotator(annotator)
    imported = READERS[fmt](path)
    created = added = skipped = 0
    ids: list[int] = []
    with store.batch():
        for iv in imported:
            video = store.video_by_name(iv.name)
            if video is None:
                video_fps = iv.fps or fps or (None if fmt == "label_studio" else DEFAULT_IMPORT_FPS)
                if video_fps is None:
                    raise AnnotationError(
                        f"{path}: video {iv.name!r} is not in the store and the file gives no fps "
                        "(data.fps): pass fps= (--fps) so Label Studio frames can become seconds"
                    )
                video = store.video(store.add_video(VideoRecord(
                    name=iv.name, fps=video_fps, path=iv.path, frame_count=iv.frame_count,
                    duration_s=iv.duration_s)))
                created += 1
            vid = video.id
            present = {(s.start_frame, s.end_frame, s.label, s.cause)
                       for s in store.current_segments(vid) if s.status != "rejected"}
            for n, seg in enumerate(iv.segments):
                frames_fps = iv.fps or video.fps  # Label Studio frames without data.fps: the store's
                if seg.start_frame is not None and frames_fps == video.fps:
                    sf, ef = seg.start_frame, seg.end_frame  # exact: no round trip through seconds
                elif seg.start_frame is not None:
                    sf = to_frame(seg.start_frame / frames_fps, video.fps)
                    ef = to_frame(seg.end_frame / frames_fps, video.fps)
                else:
                    sf, ef = to_frame(seg.start_s, video.fps), to_frame(seg.end_s, video.fps)
                try:
                    label = store.categories.canonical(seg.label)
                    key = (sf, ef, label, seg.cause.strip())
                    if key in present:
                        skipped += 1
                        continue
                    cid = store.add_segment(vid, sf / video.fps, ef / video.fps, annotator,
                                            label=label, cause=seg.cause)
                except AnnotationError as exc:
                    raise AnnotationError(f"{path}: video {iv.name!r}, segment #{n}: {exc}") from None
                present.add(key)
                ids.append(cid)
                added += 1
            if mark_reviewed and store.review_status(vid, None) != "reviewed" and not any(
                s.status == "pending" for s in store.current_segments(vid)
            ):
                ids.append(store.mark_reviewed(vid, annotator))
    return ImportReport(fmt, str(path), len(imported), created, added, skipped, ids)
