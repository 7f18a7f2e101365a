"""Segment interchange formats: ActivityNet JSON (ground truth and results) and UCF-Crime temporal txt.

All readers return ``Segment`` values in seconds; frame numbers exist only inside the UCF-Crime
reader and writer, converted with an explicit ``fps``. Malformed input raises ``FormatError`` naming
the file, the line or key, and what was expected.

ActivityNet ground truth::

    {"version": ..., "database": {"<video id>": {"subset": "validation", "duration": 12.5,
        "annotations": [{"segment": [start_s, end_s], "label": "Fighting"}]}}}

ActivityNet results (detections)::

    {"version": ..., "results": {"<video id>": [{"segment": [start_s, end_s], "label": "Fighting",
        "score": 0.9}]}, "external_data": {}}

An optional ``"cause"`` string per annotation or detection carries ``Segment.cause``; ActivityNet's
own evaluator ignores it.

UCF-Crime ``Temporal_Anomaly_Annotation.txt``: one line per video, whitespace separated
``Name_x264.mp4  Class  s1  e1  s2  e2`` with frame numbers at 30 fps and ``-1`` for "no segment".
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uprm.segments import Segment

UCF_CRIME_FPS = 30.0
UCF_NORMAL_CLASS = "Normal"
UCF_MAX_SEGMENTS = 2  # the txt format has exactly two (start, end) frame pairs per line


class FormatError(ValueError):
    """A file or object is not in the expected interchange format."""


# ---------------------------------------------------------------------------------------------------
# shared helpers


def _load_json(source: str | Path | dict, what: str) -> tuple[Any, str]:
    """(parsed JSON, name for messages) from a path or an already parsed object; ``what`` is the
    expected content, e.g. "ActivityNet results JSON"."""
    if isinstance(source, dict):
        return source, "<dict>"
    path = Path(source)
    if not path.is_file():
        raise FormatError(f"{path}: no such file (expected {what})")
    try:
        return json.loads(path.read_text(encoding="utf-8")), str(path)
    except UnicodeDecodeError as exc:
        raise FormatError(f"{path}: not UTF-8 text ({exc.reason}); expected {what}") from exc
    except json.JSONDecodeError as exc:
        raise FormatError(
            f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg} (expected {what})"
        ) from exc


def _number(value: Any, where: str, what: str) -> float:
    # bool is an int subclass; a true/false in a segment is a mistake, not a number
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise FormatError(f"{where}: {what} must be a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise FormatError(f"{where}: {what} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise FormatError(f"{where}: {what} must be finite, got {value!r}")
    return number


def _segment_from_entry(entry: Any, video_id: str, where: str, *, need_score: bool) -> Segment:
    if not isinstance(entry, dict):
        raise FormatError(f"{where}: expected an object with 'segment' and 'label', got {entry!r}")
    pair = entry.get("segment")
    if not isinstance(pair, (list, tuple)) or len(pair) != 2:
        raise FormatError(f"{where}: 'segment' must be [start_s, end_s], got {pair!r}")
    start_s = _number(pair[0], where, "segment start")
    end_s = _number(pair[1], where, "segment end")
    if not 0 <= start_s <= end_s:
        raise FormatError(f"{where}: segment must satisfy 0 <= start <= end seconds, got {list(pair)}")
    label = entry.get("label", "threat")
    if not isinstance(label, str) or not label:
        raise FormatError(f"{where}: 'label' must be a non-empty string, got {label!r}")
    score = None
    if need_score:
        if "score" not in entry:
            raise FormatError(f"{where}: detection has no 'score' (needed to rank detections)")
        score = _number(entry["score"], where, "score")
    cause = entry.get("cause", "")
    if not isinstance(cause, str):
        raise FormatError(f"{where}: 'cause' must be a string, got {cause!r}")
    return Segment(video_id, start_s, end_s, label=label, score=score, cause=cause)


def _entry(segment: Segment, *, with_score: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"segment": [segment.start_s, segment.end_s], "label": segment.label}
    if with_score:
        if segment.score is None:
            raise FormatError(
                f"segment {segment.video_id!r} [{segment.start_s}, {segment.end_s}] has no score; "
                "ActivityNet results need one per detection"
            )
        entry["score"] = segment.score
    if segment.cause:
        entry["cause"] = segment.cause
    return entry


def _write_json(obj: Any, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------------
# ActivityNet ground truth


def read_activitynet_gt(
    source: str | Path | dict, *, subset: str | None = None
) -> tuple[list[Segment], dict[str, float]]:
    """Ground-truth segments (score None) and durations in seconds per video id.

    Videos with an empty ``annotations`` list are kept: they appear in the durations dict (with
    ``math.nan`` when the file gives no duration) so "no threat" videos are not lost. ``subset``
    keeps only videos whose ``"subset"`` equals it (ActivityNet files mix training and validation).
    """
    data, name = _load_json(source, "ActivityNet ground-truth JSON")
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        raise FormatError(
            f"{name}: expected an object with a 'database' mapping video ids to "
            "{'duration', 'annotations'} (ActivityNet ground truth)"
        )
    segments: list[Segment] = []
    durations: dict[str, float] = {}
    for video_id, video in data["database"].items():
        where = f"{name}: database[{video_id!r}]"
        if not isinstance(video, dict):
            raise FormatError(f"{where}: expected an object with 'annotations', got {video!r}")
        if subset is not None and video.get("subset") != subset:
            continue
        annotations = video.get("annotations", [])
        if not isinstance(annotations, list):
            raise FormatError(f"{where}: 'annotations' must be a list, got {annotations!r}")
        duration_s = math.nan
        if video.get("duration") is not None:
            duration_s = _number(video["duration"], where, "'duration'")
            if duration_s < 0:
                raise FormatError(f"{where}: 'duration' must be >= 0 seconds, got {duration_s}")
        durations[str(video_id)] = duration_s
        for i, entry in enumerate(annotations):
            segments.append(
                _segment_from_entry(entry, str(video_id), f"{where}.annotations[{i}]", need_score=False)
            )
    return segments, durations


def write_activitynet_gt(
    segments: list[Segment],
    path: str | Path,
    durations: dict[str, float] | None = None,
    video_ids: list[str] | None = None,
    *,
    subset: str = "validation",
) -> None:
    """Write ActivityNet ground truth; every id in ``video_ids`` or ``durations`` gets an entry.

    Video order: ``video_ids``, then ``durations``, then first appearance in ``segments``. Unknown
    (missing or NaN) durations are left out of the entry. ``subset`` is what ActivityNet's evaluator
    filters on (it defaults to "validation").
    """
    durations = durations or {}
    order = list(dict.fromkeys([*(video_ids or []), *durations, *(s.video_id for s in segments)]))
    database: dict[str, dict[str, Any]] = {}
    for video_id in order:
        entry: dict[str, Any] = {"subset": subset}
        duration_s = durations.get(video_id)
        if duration_s is not None and not math.isnan(duration_s):
            entry["duration"] = duration_s
        entry["annotations"] = []
        database[video_id] = entry
    for seg in segments:
        database[seg.video_id]["annotations"].append(_entry(seg, with_score=False))
    _write_json({"version": "UPRM Studio ActivityNet-format ground truth", "database": database}, path)


# ---------------------------------------------------------------------------------------------------
# ActivityNet results


def read_activitynet_results(source: str | Path | dict) -> list[Segment]:
    """Detections from an ActivityNet results file; each needs a 'segment' and a 'score'.

    A detection without 'label' gets "threat" (our class-agnostic label).
    """
    data, name = _load_json(source, "ActivityNet results JSON")
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise FormatError(
            f"{name}: expected an object with a 'results' mapping video ids to lists of "
            "{'segment', 'label', 'score'} (ActivityNet results)"
        )
    segments: list[Segment] = []
    for video_id, detections in data["results"].items():
        where = f"{name}: results[{video_id!r}]"
        if not isinstance(detections, list):
            raise FormatError(f"{where}: expected a list of detections, got {detections!r}")
        for i, entry in enumerate(detections):
            segments.append(_segment_from_entry(entry, str(video_id), f"{where}[{i}]", need_score=True))
    return segments


def write_activitynet_results(segments: list[Segment], path: str | Path) -> None:
    """Write detections (each must carry a score) as an ActivityNet results file."""
    results: dict[str, list[dict[str, Any]]] = {}
    for seg in segments:
        results.setdefault(seg.video_id, []).append(_entry(seg, with_score=True))
    _write_json(
        {"version": "UPRM Studio ActivityNet-format results", "results": results, "external_data": {}},
        path,
    )


# ---------------------------------------------------------------------------------------------------
# UCF-Crime temporal annotation txt


def _frame(field: str, where: str, what: str) -> int:
    try:
        return int(field)
    except ValueError:
        raise FormatError(f"{where}: {what} must be an integer frame number or -1, got {field!r}") from None


def read_ucf_crime_txt(path: str | Path, fps: float = UCF_CRIME_FPS) -> tuple[list[Segment], dict[str, str]]:
    """Segments (seconds = frame / fps, label = the video's class) and the class of every video.

    The class dict has one entry per line, in file order, including ``Normal`` videos that have no
    segment. The video id is the first field as written (e.g. ``Abuse028_x264.mp4``).
    """
    if not fps > 0:
        raise FormatError(f"fps must be > 0 to turn frame numbers into seconds, got {fps}")
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: no such file (expected a UCF-Crime temporal annotation txt)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise FormatError(f"{path}: not UTF-8 text ({exc.reason}); expected a UCF-Crime txt") from exc
    segments: list[Segment] = []
    classes: dict[str, str] = {}
    for lineno, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{lineno}"
        if len(fields) != 2 + 2 * UCF_MAX_SEGMENTS:
            raise FormatError(
                f"{where}: expected 6 whitespace-separated fields 'Name_x264.mp4 Class s1 e1 s2 e2' "
                f"(frames, -1 = none), got {len(fields)}: {line.strip()!r}"
            )
        video_id, video_class = fields[0], fields[1]
        if video_id in classes:
            raise FormatError(f"{where}: video {video_id!r} is listed twice")
        classes[video_id] = video_class
        for k in range(UCF_MAX_SEGMENTS):
            start_f = _frame(fields[2 + 2 * k], where, f"s{k + 1}")
            end_f = _frame(fields[3 + 2 * k], where, f"e{k + 1}")
            if start_f == -1 and end_f == -1:
                continue
            if not 0 <= start_f <= end_f:
                raise FormatError(
                    f"{where}: segment {k + 1} must have 0 <= s{k + 1} <= e{k + 1} frames "
                    f"(or both -1 for none), got {start_f} {end_f}"
                )
            segments.append(Segment(video_id, start_f / fps, end_f / fps, label=video_class))
    return segments, classes


def write_ucf_crime_txt(
    segments: list[Segment], video_classes: dict[str, str], path: str | Path, fps: float = UCF_CRIME_FPS
) -> None:
    """Write the UCF-Crime txt: one line per video of ``video_classes`` (in its order).

    Frames are seconds * fps rounded to the nearest integer (halves up); a video's segments are
    written in start order, at most two (the format has no room for more). Segment labels are not
    written: the line carries the video's class.
    """
    if not fps > 0:
        raise FormatError(f"fps must be > 0 to turn seconds into frame numbers, got {fps}")
    per_video: dict[str, list[Segment]] = {}
    for seg in segments:
        if seg.video_id not in video_classes:
            raise FormatError(
                f"segment of {seg.video_id!r} has no class in video_classes; every UCF-Crime line "
                "needs 'Name Class', so add the video's class"
            )
        per_video.setdefault(seg.video_id, []).append(seg)
    lines = []
    for video_id, video_class in video_classes.items():
        if not video_id or not video_class or len(video_id.split()) != 1 or len(video_class.split()) != 1:
            raise FormatError(
                f"video id and class must be non-empty and contain no whitespace, "
                f"got {video_id!r} / {video_class!r}"
            )
        own = sorted(per_video.get(video_id, []), key=lambda s: (s.start_s, s.end_s))
        if len(own) > UCF_MAX_SEGMENTS:
            raise FormatError(
                f"video {video_id!r} has {len(own)} segments; the UCF-Crime txt holds at most "
                f"{UCF_MAX_SEGMENTS} per video: merge or drop segments, or export ActivityNet JSON"
            )
        frames: list[int] = []
        for seg in own:
            # half up, not Python's half-to-even: frame 62.5 is written as 63 whichever way it lies
            frames += [math.floor(seg.start_s * fps + 0.5), math.floor(seg.end_s * fps + 0.5)]
        frames += [-1] * (2 * UCF_MAX_SEGMENTS - len(frames))
        lines.append("  ".join([video_id, video_class, *map(str, frames)]) + "  \n")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines), encoding="utf-8")


# ---------------------------------------------------------------------------------------------------
# either ground-truth format, detected by content


@dataclass(frozen=True)
class GroundTruth:
    """Ground truth read from either format: segments plus every video it lists.

    ``durations`` has one entry per listed video (``math.nan`` when unknown: UCF-Crime's txt gives
    no lengths); ``video_classes`` is filled for UCF-Crime only.
    """

    segments: list[Segment]
    durations: dict[str, float]
    format: str  # "activitynet" or "ucf_crime"
    video_classes: dict[str, str] = field(default_factory=dict)


def read_ground_truth(
    path: str | Path, fps: float = UCF_CRIME_FPS, *, subset: str | None = None
) -> GroundTruth:
    """Read ActivityNet ground-truth JSON or a UCF-Crime txt, whichever the file holds.

    A file whose first non-blank character is ``{`` or ``[`` is read as JSON; anything else as the
    UCF-Crime txt (with frame numbers at ``fps``).
    """
    path = Path(path)
    if not path.is_file():
        raise FormatError(
            f"{path}: no such file (expected ActivityNet ground-truth JSON or a UCF-Crime txt)"
        )
    try:
        head = path.read_text(encoding="utf-8").lstrip()[:1]
    except UnicodeDecodeError as exc:
        raise FormatError(
            f"{path}: not UTF-8 text ({exc.reason}); expected ActivityNet JSON or a UCF-Crime txt"
        ) from exc
    if head in ("{", "["):
        segments, durations = read_activitynet_gt(path, subset=subset)
        return GroundTruth(segments, durations, "activitynet")
    segments, classes = read_ucf_crime_txt(path, fps)
    return GroundTruth(segments, {v: math.nan for v in classes}, "ucf_crime", classes)


# ---------------------------------------------------------------------------------------------------
# free-text references and generated explanations


def read_texts(path: str | Path, *, question_id: str | None = None) -> list[str] | dict[str, str]:
    """Texts to score from a JSON file: a list of strings, an ``{"id": text}`` map, or CUVA's format.

    CUVA's ``gt_*.json`` is a list of ``{"video_id", "question", "answer", "question_id", ...}``;
    it becomes ``{video_id: answer}`` for one ``question_id`` ("Cause", "Description", ...), which
    must be given when the file mixes several.
    """
    data, name = _load_json(path, "a JSON list of texts, an {id: text} object or CUVA's gt JSON")
    if isinstance(data, dict):
        bad = [k for k, v in data.items() if not isinstance(v, str)]
        if bad:
            raise FormatError(f"{name}: key {bad[0]!r}: expected a text string, got {data[bad[0]]!r}")
        return {str(k): v for k, v in data.items()}
    if not isinstance(data, list):
        raise FormatError(
            f"{name}: expected a JSON list of strings, an {{id: text}} object or CUVA's list of "
            "{video_id, answer, question_id}"
        )
    if all(isinstance(x, str) for x in data):
        return list(data)
    if not all(isinstance(x, dict) for x in data):
        i = next(i for i, x in enumerate(data) if not isinstance(x, dict))
        raise FormatError(
            f"{name}: item {i} is {type(data[i]).__name__}: expected all strings or all CUVA objects "
            "{video_id, answer, question_id}"
        )
    for i, item in enumerate(data):
        if not isinstance(item.get("video_id"), str) or not isinstance(item.get("answer"), str):
            raise FormatError(
                f"{name}: item {i}: a CUVA entry needs string 'video_id' and 'answer', got {item!r}"
            )
    question_ids = list(dict.fromkeys(str(x.get("question_id", "")) for x in data))
    if question_id is None:
        if len(question_ids) > 1:
            raise FormatError(
                f"{name}: entries have several question_id values {question_ids}: choose one with question_id"
            )
    elif question_id not in question_ids:
        raise FormatError(f"{name}: no entry has question_id {question_id!r}; the file has {question_ids}")
    texts: dict[str, str] = {}
    for i, item in enumerate(data):
        if question_id is not None and str(item.get("question_id", "")) != question_id:
            continue
        if item["video_id"] in texts:
            raise FormatError(
                f"{name}: item {i}: video_id {item['video_id']!r} appears twice for one question"
            )
        texts[item["video_id"]] = item["answer"]
    return texts
