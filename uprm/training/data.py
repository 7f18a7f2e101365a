"""Instruction data -> training examples with per-step threat targets.

Accepted conversation JSON (LLaVA / Video-LLaVA, what ``annotations.formats.export(store, "llava", ...)``
writes): a list of entries

    {"id": "clip_03", "video": "videos/clip_03.mp4",
     "conversations": [{"from": "human", "value": "<video>\\nPlease determine whether ..."},
                       {"from": "gpt", "value": "Yes, there exists a threat"},
                       {"from": "human", "value": "Please locate the exact timestamps ..."},
                       {"from": "gpt", "value": "The threat occurs between 1.0s and 2.5s"}, ...]}

Each (human, gpt) pair becomes one ``TrainingExample``; ``<video>`` / ``<image>`` markers are dropped
(the model puts its own video tokens in the prompt). A relative "video" is resolved against the JSON
file's folder, or ``video_root`` when given. Optional extra keys per entry: "segments" (threat
intervals in seconds, ``[[start_s, end_s], ...]`` or ``[{"start_s", "end_s"}]``), which win over the
answers' text.

Threat intervals of a video (in seconds) come from "segments", else from the locate answer ("between
1.0s and 2.5s", the shape ``uprm.instructions.locate_answer`` writes), else "no threat" when the
identify answer says no; otherwise they are unknown and the video gets no per-step threat loss.
Per-step targets: a step at time t stands for [t - step/2, t + step/2) (as ``uprm.analysis`` reads
its scores back into segments) and its target is the fraction of that interval inside a threat.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from uprm.instructions import ATTRIBUTE, IDENTIFY, LOCATE
from uprm.training.errors import TrainingDataError

KINDS = ("identify", "locate", "attribute", "region", "motion", "background", "other")
_LOCATE_RE = re.compile(r"between\s+(\d+(?:\.\d+)?)\s*s\s+and\s+(\d+(?:\.\d+)?)\s*s")
_MARKERS = re.compile(r"<(?:video|image)>\s*")


@dataclass(frozen=True)
class TrainingExample:
    """One question -> answer turn about one video (or a threat-only example: question None).

    threat_intervals_s: None = unknown (no threat loss for this video); () = no threat anywhere.
    span_s: only the steps whose time lies in [start, end] are shown to the model (an attribute turn
    sees its threat segments, as ``uprm.analysis`` explains a segment from its own steps).
    """

    video_id: str
    video_path: str
    question: str | None
    answer: str | None
    context: str = ""
    kind: str = "other"
    threat_intervals_s: tuple[tuple[float, float], ...] | None = None
    span_s: tuple[float, float] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if (self.question is None) != (self.answer is None):
            raise TrainingDataError(f"example of {self.video_id!r}: give both a question and an answer, or neither "
                                    "(a threat-only example)")
        if self.question is not None and not (self.question.strip() and self.answer.strip()):
            raise TrainingDataError(f"example of {self.video_id!r} from {self.source or 'memory'}: empty question "
                                    "or answer")
        if self.kind not in KINDS:
            raise TrainingDataError(f"example kind must be one of {KINDS}, got {self.kind!r}")
        if self.threat_intervals_s is not None:
            for s, e in self.threat_intervals_s:
                if not (math.isfinite(s) and math.isfinite(e) and 0 <= s <= e):
                    raise TrainingDataError(f"threat interval ({s}, {e}) of {self.video_id!r} must satisfy "
                                            "0 <= start_s <= end_s")

    @property
    def key(self) -> str:
        """What features are looked up by: the video path when known, else the id."""
        return self.video_path or self.video_id


def kind_of(question: str) -> str:
    for kind, text in (("identify", IDENTIFY), ("locate", LOCATE), ("attribute", ATTRIBUTE)):
        if text.lower() in question.lower():
            return kind
    return "other"


def _intervals_from_entry(entry: dict, turns: list[tuple[str, str]], where: str
                          ) -> tuple[tuple[float, float], ...] | None:
    if "segments" in entry:
        raw = entry["segments"]
        out = []
        try:
            for seg in raw:
                s, e = (seg["start_s"], seg["end_s"]) if isinstance(seg, dict) else seg
                out.append((float(s), float(e)))
        except (TypeError, ValueError, KeyError):
            raise TrainingDataError(f"{where}: 'segments' must be [[start_s, end_s], ...] or "
                                    f"[{{'start_s', 'end_s'}}] in seconds, got {raw!r:.120}") from None
        return tuple(sorted(out))
    for question, answer in turns:
        if kind_of(question) == "locate":
            found = [(float(a), float(b)) for a, b in _LOCATE_RE.findall(answer)]
            if found or "no threat" in answer.lower():
                return tuple(sorted(found))
    for question, answer in turns:
        if kind_of(question) == "identify":
            low = answer.strip().lower()
            if low.startswith("no") or "no threat" in low:
                return ()
    return None


def _resolve_video(value: str, json_dir: Path, video_root: Path | None) -> str:
    if not value:
        return ""
    p = Path(value).expanduser()
    if p.is_absolute():
        return str(p)
    base = video_root if video_root is not None else json_dir
    return str((base / p).resolve())


def examples_from_conversations(entries: Any, source: str = "", json_dir: str | Path = ".",
                                video_root: str | Path | None = None) -> list[TrainingExample]:
    """LLaVA conversation entries (already parsed JSON) -> examples; see the module docstring."""
    if not isinstance(entries, list):
        raise TrainingDataError(f"{source or 'data'}: expected a JSON list of {{id, video, conversations}} "
                                f"entries, got {type(entries).__name__}")
    json_dir = Path(json_dir)
    root = Path(video_root) if video_root is not None else None
    out: list[TrainingExample] = []
    for i, entry in enumerate(entries):
        where = f"{source or 'data'}: entry #{i}"
        if not isinstance(entry, dict) or not isinstance(entry.get("conversations"), list):
            raise TrainingDataError(f"{where} needs 'id', 'video' and a 'conversations' list of "
                                    "{'from': 'human'|'gpt', 'value': text}")
        video = str(entry.get("video") or "")
        video_id = _video_id(entry)
        if not video_id:
            raise TrainingDataError(f"{where} has neither 'id' nor 'video'")
        turns: list[tuple[str, str]] = []
        conv = entry["conversations"]
        for k in range(len(conv) - 1):
            human, gpt = conv[k], conv[k + 1]
            if not (isinstance(human, dict) and isinstance(gpt, dict)):
                raise TrainingDataError(f"{where}: turn #{k} is not an object with 'from' and 'value'")
            if human.get("from") == "human" and gpt.get("from") == "gpt":
                q = _MARKERS.sub("", str(human.get("value", ""))).strip()
                a = str(gpt.get("value", "")).strip()
                if q and a:
                    turns.append((q, a))
        if not turns:
            raise TrainingDataError(f"{where} ({video_id!r}) holds no (human, gpt) turn pair with text")
        intervals = _intervals_from_entry(entry, turns, where)
        path = _resolve_video(video, json_dir, root)
        for question, answer in turns:
            kind = kind_of(question)
            span = None
            if kind == "attribute" and intervals:
                span = (min(s for s, _ in intervals), max(e for _, e in intervals))
            out.append(TrainingExample(video_id, path, question, answer, kind=kind,
                                       threat_intervals_s=intervals, span_s=span, source=source))
    return out


def _video_id(entry: dict) -> str:
    return str(entry.get("id") or Path(str(entry.get("video") or "")).stem)


def _read_conversations(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise TrainingDataError(f"{path}: no such file (expected a LLaVA conversation JSON, e.g. from "
                                "`python -m annotations export --format llava`)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise TrainingDataError(f"{path}: not UTF-8 text; expected a LLaVA conversation JSON") from None
    except json.JSONDecodeError as exc:
        raise TrainingDataError(f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None


def load_conversations(path: str | Path, video_root: str | Path | None = None) -> list[TrainingExample]:
    """Read one LLaVA / Video-LLaVA conversation JSON file into examples."""
    return examples_from_conversations(_read_conversations(path), str(path), Path(path).parent, video_root)


def labelled_events(path: str | Path) -> dict[str, tuple[tuple[float, float, str], ...]]:
    """video_id -> its segments that carry a category, (start_s, end_s, label), from the "segments" objects'
    "label" (as the studio's export writes them; what the kind head learns categories from). Call after
    ``load_conversations`` (which checks the file's shape)."""
    out = {}
    for entry in _read_conversations(path):
        segments = entry.get("segments") if isinstance(entry, dict) else None
        events = tuple(sorted((float(seg["start_s"]), float(seg["end_s"]), " ".join(str(seg["label"]).split()))
                              for seg in segments or () if isinstance(seg, dict) and str(seg.get("label") or "").strip()))
        if events:
            out[_video_id(entry)] = events
    return out


def threat_only_examples(examples: Iterable[TrainingExample]) -> list[TrainingExample]:
    """One question-less example per video with known intervals: per-step supervision only."""
    seen: dict[str, TrainingExample] = {}
    for ex in examples:
        if ex.threat_intervals_s is not None and ex.key not in seen:
            seen[ex.key] = replace(ex, question=None, answer=None, context="", kind="other", span_s=None)
    return list(seen.values())


def video_intervals(examples: Iterable[TrainingExample]) -> dict[str, tuple[tuple[float, float], ...] | None]:
    """video_id -> its threat intervals in seconds (the ground truth the loop evaluates against)."""
    out: dict[str, tuple[tuple[float, float], ...] | None] = {}
    for ex in examples:
        if out.get(ex.video_id) is None:
            out[ex.video_id] = ex.threat_intervals_s
    return out


# ---------------------------------------------------------------------------------- per-step targets


def step_targets(times_s: Sequence[float], step_s: float, intervals_s: Sequence[tuple[float, float]]) -> list[float]:
    """Fraction of each step's interval [t - step/2, t + step/2) that lies inside a threat interval.

    Overlapping intervals are merged first, so a fraction never exceeds 1.
    """
    if not step_s > 0:
        raise TrainingDataError(f"step length must be > 0 s, got {step_s}")
    merged: list[list[float]] = []
    for s, e in sorted((float(a), float(b)) for a, b in intervals_s):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    half = step_s / 2
    out = []
    for t in times_s:
        lo, hi = float(t) - half, float(t) + half
        covered = sum(max(0.0, min(hi, e) - max(lo, s)) for s, e in merged)
        out.append(min(1.0, covered / step_s))
    return out


def split_by_video(video_ids: Iterable[str], heldout_fraction: float, seed: int,
                   positive: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """(train ids, held-out ids): a deterministic split of whole videos, stratified by threat / no threat.

    Both sides get at least one video; the held-out side gets a video with a threat whenever the train
    side can keep one too (otherwise mAP cannot be computed on it).
    """
    import random

    ids = sorted(dict.fromkeys(video_ids))
    if len(ids) < 2:
        raise TrainingDataError(f"need at least 2 reviewed videos to split train / held-out, got {len(ids)}: "
                                "review more videos first")
    if not 0 < heldout_fraction < 1:
        raise TrainingDataError(f"heldout_fraction must lie in (0, 1), got {heldout_fraction}")
    pos = set(positive)
    rng = random.Random(seed)
    groups = [[v for v in ids if v in pos], [v for v in ids if v not in pos]]
    heldout: list[str] = []
    for group in groups:
        rng.shuffle(group)
        n = round(heldout_fraction * len(group))
        if group is groups[0] and len(group) >= 2:
            n = max(1, min(n, len(group) - 1))
        heldout += group[:n]
    if not heldout:  # a tiny set: hold out one video, a threat-free one when there is one
        heldout = [(groups[1] or groups[0])[0]]
    if len(heldout) == len(ids):
        heldout = heldout[:-1]
    train = [v for v in ids if v not in set(heldout)]
    return train, sorted(heldout)


# ---------------------------------------------------------------------------------- any input file

DATA_FORMATS = ("auto", "llava", "refcoco", "humanml3d", "rsicb", "video")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")


def detect_format(path: str | Path) -> str:
    """The data format of a file or folder, by its layout and content."""
    path = Path(path)
    if path.is_dir():
        return "humanml3d" if (path / "new_joints").is_dir() and (path / "texts").is_dir() else "rsicb"
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return "video"
    if path.suffix.lower() == ".json" and path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TrainingDataError(f"{path}: not valid JSON ({exc})") from None
        if isinstance(data, dict) and "refs" in data:
            return "refcoco"
        if isinstance(data, list) and data and isinstance(data[0], dict):
            if "conversations" in data[0]:
                return "llava"
            if "bbox" in data[0]:
                return "refcoco"
        if isinstance(data, list) and not data:
            raise TrainingDataError(f"{path}: the JSON list is empty: no training data in it")
    if not path.exists():
        raise TrainingDataError(f"{path}: no such file or folder")
    raise TrainingDataError(f"{path}: cannot tell its format; expected a LLaVA conversation JSON, a RefCOCO-style "
                            "JSON, a HumanML3D or RSI-CB folder, or a video file (or pass --data-format)")


def load_training_files(paths: Sequence[str | Path], data_format: str = "auto",
                        video_root: str | Path | None = None, evidence_of=None) -> list[TrainingExample]:
    """Examples from every file or folder in ``paths`` (formats: DATA_FORMATS; see uprm.training.stage1).

    evidence_of(path) -> VideoEvidence: needed for plain videos, whose instructions are built from
    the front-ends' evidence (``stage1.evidence_instructions``).
    """
    from uprm.training import stage1

    if data_format not in DATA_FORMATS:
        raise TrainingDataError(f"data format must be one of {DATA_FORMATS}, got {data_format!r}")
    out: list[TrainingExample] = []
    for raw in paths:
        path = Path(raw)
        fmt = detect_format(path) if data_format == "auto" else data_format
        if fmt == "llava":
            out += load_conversations(path, video_root)
        elif fmt == "refcoco":
            out += stage1.load_refcoco(path, video_root)
        elif fmt == "humanml3d":
            out += stage1.load_humanml3d(path)
        elif fmt == "rsicb":
            out += stage1.load_rsicb(path)
        else:
            if evidence_of is None:
                raise TrainingDataError(f"{path}: instructions from a plain video need its evidence (perception)")
            if not path.is_file():
                raise TrainingDataError(f"{path}: no such video file")
            out += stage1.evidence_instructions(evidence_of(str(path.resolve())), path.stem, str(path.resolve()))
    return out
