"""From a video to identified, located and attributed threats: perception -> UPRM -> segments -> causes.

``analyze`` returns one typed ``Analysis``; ``analyze_iter`` yields ``AnalysisUpdate``s so a UI can show
the timeline as soon as the fusion has run and each cause as soon as it is written.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from uprm.evidence import VideoEvidence, VideoInfo
from uprm.segments import Segment

EXPERTS = ("hpe", "ore", "vbe", "coarse")  # order of gate columns: R_hpe, R_ore, R_vbe, 1 - G
EXPERT_NAMES = {"hpe": "human pose", "ore": "object relations", "vbe": "visual background",
                "coarse": "coarse video"}
Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class AnalysisSettings:
    sample_fps: float = 2.0
    # the decision rule; None = the one the checkpoint was tuned with (its config's threat_* fields)
    threshold: float | None = None  # per-step threat probability that opens a segment
    min_segment_s: float | None = None  # shorter runs are dropped as flicker
    merge_gap_s: float | None = None  # runs closer than this are one segment
    keep_threshold: float | None = None  # a segment reaches out while prob stays >= this (hysteresis)
    explain: bool = True  # write a cause per segment with the language model
    max_new_tokens: int = 48
    seed: int = 0
    ablation: tuple[str, ...] = ()  # any of no_hpe, no_ore, no_vbe, no_upe, no_ptr
    sam2_checkpoint: str | None = None

    def __post_init__(self) -> None:
        for name in ("threshold", "keep_threshold"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {value}")
        for name in ("min_segment_s", "merge_gap_s"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 seconds, got {value}")

    def rule(self) -> "DecisionRule":
        """The decision rule these settings apply (as an Analysis records them: ``decision_rule`` filled in
        every field the checkpoint's config was to give)."""
        if None in (self.threshold, self.min_segment_s, self.merge_gap_s):
            raise ValueError("the decision rule is not filled in yet: pass the settings through decision_rule()")
        return DecisionRule(self.threshold, self.min_segment_s, self.merge_gap_s, self.keep_threshold)


@dataclass(frozen=True)
class DecisionRule:
    """How per-step threat probabilities become segments (``cut_segments``). A checkpoint carries the one it
    was tuned with in its config (``config_fields``); ``AnalysisSettings`` may override any field."""

    threshold: float  # per-step threat probability that opens a segment
    min_segment_s: float = 1.0  # shorter runs are dropped as flicker
    merge_gap_s: float = 1.0  # runs closer than this are one segment
    keep_threshold: float | None = None  # hysteresis: a segment reaches out while prob >= this (None: none)

    @classmethod
    def of(cls, rule: "DecisionRule | float") -> "DecisionRule":
        return rule if isinstance(rule, DecisionRule) else cls(float(rule))

    @classmethod
    def from_config(cls, config) -> "DecisionRule":
        keep = config.threat_keep_threshold
        return cls(float(config.threat_threshold), float(config.threat_min_segment_s),
                   float(config.threat_merge_gap_s), None if keep is None else float(keep))

    def config_fields(self) -> dict:
        return {"threat_threshold": self.threshold, "threat_min_segment_s": self.min_segment_s,
                "threat_merge_gap_s": self.merge_gap_s, "threat_keep_threshold": self.keep_threshold}

    def text(self) -> str:
        """The rule in a few words, for a run summary."""
        text = f"threshold {self.threshold:g}"
        if self.keep_threshold is not None:
            text += f", segments widened while >= {self.keep_threshold:g}"
        return text


@dataclass
class SegmentEvidence:
    """What lies behind one segment, for the UI's evidence panel, the chat and the store."""

    step_indices: list[int]  # time steps of the analysis inside the segment
    track_ids: list[int]  # people involved (tracked ids)
    relations: list[str]  # "person#3 holding handbag#7 (0.82): right wrist inside box", most salient first
    predicates: dict[str, int]  # predicate -> count over the segment
    pose_states: dict[str, int]  # lying/running counts
    mean_gates: dict[str, float]  # expert -> mean gate weight over the segment
    dominant_expert: str
    fight_prob_mean: float
    scene_labels: list[str]
    # from the motion layer (empty / 0 without it): changes that appeared and stayed where nobody stands,
    # each "from 5.2s: ... at (x, y) px", and how many steps showed a person-sized one lying / a small one
    scene_changes: list[str] = field(default_factory=list)
    change_kinds: dict[str, int] = field(default_factory=dict)  # "lying" / "item" -> steps seen
    fast_people: int = 0  # most people moving at >= FAST_FLOW_HPS (optical flow) at one step
    scuffle_steps: int = 0  # steps where two people touch and one sways to and fro (flow wander)


@dataclass
class ThreatSegment:
    start_s: float
    end_s: float
    score: float  # max per-step threat probability inside
    category: str
    cause: str
    evidence: SegmentEvidence

    def to_segment(self, video_id: str) -> Segment:
        return Segment(video_id, self.start_s, self.end_s, self.category, self.score, self.cause)


@dataclass
class Analysis:
    video: VideoInfo
    model_id: str
    settings: AnalysisSettings
    times_s: list[float]  # (T,) centre time of each step
    threat_prob: list[float]  # (T,)
    gates: list[list[float]]  # (T, 4) R_hpe, R_ore, R_vbe, 1-G
    segments: list[ThreatSegment]
    created_at: float = field(default_factory=time.time)
    warnings: list[str] = field(default_factory=list)

    @property
    def has_threat(self) -> bool:
        return bool(self.segments)

    @property
    def video_id(self) -> str:
        return Path(self.video.path).stem

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Analysis":
        segs = [ThreatSegment(**{**s, "evidence": SegmentEvidence(**s["evidence"])}) for s in data["segments"]]
        settings = AnalysisSettings(**{**data["settings"], "ablation": tuple(data["settings"]["ablation"])})
        return cls(**{**data, "video": VideoInfo(**data["video"]), "settings": settings, "segments": segs})

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1), encoding="utf-8")
        tmp.replace(path)
        return path


@dataclass
class AnalysisUpdate:
    stage: str  # "perception", "fusion", "causes", "done"
    fraction: float  # overall progress in [0, 1]
    analysis: Analysis | None = None  # partial (no causes yet) from the fusion stage on
    evidence: VideoEvidence | None = None
    inputs: object | None = None  # the ExpertInputs the fusion ran on (chat reuses them), from fusion on


# ----------------------------------------------------------------------------------- segments


def decision_rule(settings: AnalysisSettings, config) -> AnalysisSettings:
    """``settings`` with every decision-rule field left None filled from the checkpoint's config. The
    hysteresis level applies only below the threshold: a threshold chosen under the checkpoint's keep
    level leaves none (keep_threshold stays None)."""
    own = DecisionRule.from_config(config)

    def pick(name: str):
        value = getattr(settings, name)
        return getattr(own, name) if value is None else value

    threshold, keep = float(pick("threshold")), pick("keep_threshold")
    return replace(settings, threshold=threshold, min_segment_s=float(pick("min_segment_s")),
                   merge_gap_s=float(pick("merge_gap_s")),
                   keep_threshold=float(keep) if keep is not None and keep < threshold else None)


def segments_from_scores(times_s: np.ndarray, probs: np.ndarray, step_s: float, threshold: float,
                         min_segment_s: float, merge_gap_s: float,
                         keep_threshold: float | None = None) -> list[tuple[int, int]]:
    """Runs of steps with prob >= threshold as inclusive (first, last) step indices.

    A step at time t stands for [t - step/2, t + step/2); runs separated by less than merge_gap_s are
    joined and runs shorter than min_segment_s are dropped. ``keep_threshold`` (<= threshold; None = the
    same) is hysteresis: each run left then reaches out, both ways, over the adjacent steps that stay
    >= keep_threshold, so a sharp peak keeps the weaker ends of its event. Which runs exist is decided
    at ``threshold`` alone: hysteresis moves bounds, it never turns a short spike into an alarm.
    """
    probs = np.asarray(probs)

    def gap_s(i: int, j: int) -> float:  # empty time between step i and a later step j (0: adjacent)
        return float(times_s[j] - times_s[i]) - step_s

    runs: list[list[int]] = []
    for i in np.flatnonzero(probs >= threshold):
        gap = gap_s(runs[-1][1], i) if runs else np.inf
        if gap <= 1e-9 or gap < merge_gap_s - 1e-9:  # adjacent, or closer than the merge gap
            runs[-1][1] = int(i)
        else:
            runs.append([int(i), int(i)])
    core = [(a, b) for a, b in runs if (times_s[b] - times_s[a]) + step_s >= min_segment_s - 1e-9]
    if keep_threshold is None or keep_threshold >= threshold or not core:
        return core
    out: list[tuple[int, int]] = []
    for a, b in core:  # widen to the stretch of adjacent steps >= keep around each end
        while a > 0 and probs[a - 1] >= keep_threshold and gap_s(a - 1, a) <= 1e-9:
            a -= 1
        while b + 1 < len(probs) and probs[b + 1] >= keep_threshold and gap_s(b, b + 1) <= 1e-9:
            b += 1
        if out and a <= out[-1][1] + 1:  # two widened runs that touch are one segment
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def cut_segments(times_s: np.ndarray, probs: np.ndarray, step_s: float, duration_s: float,
                 rule: DecisionRule) -> list[tuple[int, int, float, float]]:
    """(first step, last step, start_s, end_s) of each segment ``rule`` cuts from per-step probabilities.
    The one place the analysis, the training scorer and the build's rule search turn scores into segments."""
    runs = segments_from_scores(times_s, probs, step_s, rule.threshold, rule.min_segment_s, rule.merge_gap_s,
                                rule.keep_threshold)
    return [(a, b, *_segment_bounds(times_s, a, b, step_s, duration_s)) for a, b in runs]


def _segment_bounds(times_s: np.ndarray, first: int, last: int, step_s: float, duration_s: float):
    start = max(0.0, float(times_s[first]) - step_s / 2)
    end = min(duration_s, float(times_s[last]) + step_s / 2)
    return round(start, 3), round(end, 3)


# ----------------------------------------------------------------------------------- evidence


def _entity_name(frame, i: int) -> str:
    tid = int(frame.track_ids[i])
    return f"{frame.class_names[i]}#{tid}" if tid >= 0 else frame.class_names[i]


FAST_FLOW_HPS = 0.75  # flow speed (body heights / s) counted as running: walkers measure ~0.35
SCUFFLE_WANDER_H = 1.0  # body heights of to-and-fro in 2 s (flow_wander_2s_h) of someone touching another
PERSON_SIZED = 0.3  # a scene change at least this share of a person box's area is person-sized
LEFT_BEHIND_S = 3.0  # a change counts as left behind when a person stood there at most this long before


def _motion_facts(evidence: VideoEvidence, frames: list) -> tuple[list[str], dict[str, int], int, int]:
    """What the motion layer adds to a segment: scene changes nobody stands on, fast movers, scuffles."""
    from uprm.evidence import ENTITY_MOTION, SCENE_CHANGE_CLASS_ID

    col = {name: i for i, name in enumerate(ENTITY_MOTION)}
    standing = np.array([(b[3], (b[3] - b[1]) * (b[2] - b[0])) for f in evidence.frames
                         for b, p in zip(np.asarray(f.boxes, np.float64), f.is_person) if p]).reshape(-1, 2)

    def person_area(foot_y: float) -> float:
        """Median area of the video's person boxes standing about as far from the camera (foot y)."""
        near = standing[np.abs(standing[:, 0] - foot_y) <= 0.1 * evidence.video.height, 1]
        pool = near if len(near) >= 3 else standing[:, 1]
        return float(np.median(pool)) if len(pool) else float("inf")

    changes: dict[tuple[int, int], tuple[float, str]] = {}  # a coarse position -> (first seen, text)
    kinds: Counter[str] = Counter()
    fast = scuffles = 0
    for f in frames:
        if f.motion is None:
            continue
        m, boxes = np.asarray(f.motion), np.asarray(f.boxes)
        people = np.flatnonzero(f.is_person)
        fast = max(fast, int((m[people, col["flow_speed_hps"]] >= FAST_FLOW_HPS).sum()))
        pairs = {(r.subject, r.object) for r in f.relations if r.predicate == "touching"}
        if any(m[i, col["flow_wander_2s_h"]] >= SCUFFLE_WANDER_H for pair in pairs for i in pair):
            scuffles += 1
        seen_kinds = set()
        for i in np.flatnonzero(f.class_ids == SCENE_CHANGE_CLASS_ID):
            if (m[i, col["change_person_overlap"]] >= 0.5 or m[i, col["change_contrast"]] <= m[i, col["change_contrast_before"]]
                    or np.expm1(m[i, col["change_log_since_person_s"]]) > LEFT_BEHIND_S):
                continue  # someone stands there, something went away, or nobody was there when it appeared
            x1, y1, x2, y2 = boxes[i]
            w, h = x2 - x1, y2 - y1
            kind = "lying" if w * h >= PERSON_SIZED * person_area(float(y2)) and w > h else "item"
            seen_kinds.add(kind)
            since = f.time_s - float(np.expm1(m[i, col["change_log_age_s"]]))
            what = "something person-sized lying" if kind == "lying" else "a new small thing"
            key = (int((x1 + x2) / 2) // 32, int(y2) // 32)
            if key not in changes:
                changes[key] = (since, f"from {max(0.0, since):.1f}s: {what} on the ground at "
                                       f"({(x1 + x2) / 2:.0f}, {y2:.0f}) px, {w:.0f}x{h:.0f} px, nobody standing on it")
        kinds.update(seen_kinds)
    return [t for _, t in sorted(changes.values())][:4], dict(kinds), fast, scuffles


def summarize_evidence(evidence: VideoEvidence, steps: list[int], gates: np.ndarray) -> SegmentEvidence:
    frames = [evidence.frames[i] for i in steps]
    tracks: set[int] = set()
    predicates: Counter[str] = Counter()
    relations: list[tuple[float, str]] = []
    labels: Counter[str] = Counter()
    for f in frames:
        tracks.update(int(t) for t, p in zip(f.track_ids, f.is_person) if p and t >= 0)
        for r in f.relations:
            predicates[r.predicate] += 1
            obj = "" if r.object == r.subject else f" {_entity_name(f, r.object)}"
            relations.append((r.score, f"{f.time_s:.1f}s {_entity_name(f, r.subject)} {r.predicate}{obj} "
                                       f"({r.score:.2f}): {r.evidence}"))
        for name, _ in f.scene_labels[:2]:
            labels[name] += 1
    # the most confident relation of each kind first, so a short list still covers every predicate
    seen, salient = set(), []
    for score, text in sorted(relations, key=lambda x: -x[0]):
        kind = text.split(" ")[2] if len(text.split(" ")) > 2 else text
        salient.append((kind in seen, -score, text))
        seen.add(kind)
    mean = gates.mean(axis=0) if len(gates) else np.zeros(len(EXPERTS))
    mean_gates = {k: round(float(v), 4) for k, v in zip(EXPERTS, mean)}
    changes, kinds, fast, scuffles = _motion_facts(evidence, frames)
    return SegmentEvidence(
        step_indices=list(steps), track_ids=sorted(tracks),
        relations=[t for _, _, t in sorted(salient)][:12],
        predicates=dict(predicates),
        pose_states={k: predicates[k] for k in ("lying", "running") if predicates[k]},
        mean_gates=mean_gates, dominant_expert=max(mean_gates, key=mean_gates.get),
        fight_prob_mean=round(float(np.mean([f.fight_prob for f in frames])) if frames else 0.0, 4),
        scene_labels=[n for n, _ in labels.most_common(3)],
        scene_changes=changes, change_kinds=kinds, fast_people=fast, scuffle_steps=scuffles,
    )


# Every category category_from_evidence can return; the names match the event kinds the compositor
# (uprm.compose) labels its ground truth with, so labelled evaluation compares like with like.
ANALYSIS_CATEGORIES = ("fall", "struggle", "crowd_run", "loiter", "left_object", "threat")
LOITER_MIN_S = 10.0  # a person staying this long through a segment without running


def category_from_evidence(ev: SegmentEvidence, duration_s: float = 0.0) -> str:
    """A coarse category read off the evidence behind a segment (the model's threat head is binary).

    Order matters: a person lying is reported as a fall even if others run to help.
    """
    p, changes = ev.predicates, ev.change_kinds
    if p.get("lying") or changes.get("lying"):
        return "fall"
    if ev.scuffle_steps or (p.get("touching") and (ev.fight_prob_mean >= 0.5 or len(ev.track_ids) >= 2)):
        return "struggle"
    if p.get("running", 0) >= 2 or ev.fast_people >= 2:
        return "crowd_run"
    if changes.get("item"):
        return "left_object"
    if duration_s >= LOITER_MIN_S and ev.track_ids and not p.get("running"):
        return "loiter"
    if p.get("moving_away") and not p.get("holding") and ev.relations:
        return "left_object"
    return "threat"


def evidence_context(ev: SegmentEvidence, start_s: float, end_s: float, score: float) -> str:
    """The segment's evidence in plain text: grounding for the chat's answers (causes are written without
    it: ``explain_steps``)."""
    gates = ", ".join(f"{EXPERT_NAMES[k]} {v:.2f}" for k, v in ev.mean_gates.items())
    people = ", ".join(f"person#{t}" for t in ev.track_ids) or "no tracked person"
    lines = [
        f"Segment {start_s:.1f}s to {end_s:.1f}s, threat score {score:.2f}.",
        f"People involved: {people}.",
        f"Relations seen: {', '.join(f'{k} x{v}' for k, v in sorted(ev.predicates.items())) or 'none'}.",
        *[f"- {r}" for r in ev.relations[:5]],
        f"Expert weights: {gates} (dominant: {EXPERT_NAMES[ev.dominant_expert]}).",
        f"Fight-clip probability (coarse feature): {ev.fight_prob_mean:.2f}.",
    ]
    if ev.fast_people:
        lines.append(f"Moving fast (optical flow, >= {FAST_FLOW_HPS:g} body heights/s): up to {ev.fast_people} "
                     "people at once.")
    if ev.scuffle_steps:
        lines.append(f"Touching and swaying to and fro: {ev.scuffle_steps} steps.")
    lines += [f"- Scene change {c}" for c in ev.scene_changes]
    if ev.scene_labels:
        lines.append(f"Scene: {', '.join(ev.scene_labels)}.")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- pipeline


@contextmanager
def ablated(model, ablation: tuple[str, ...]):
    """Run with these ablation switches on besides the model's own (a checkpoint trained without an
    expert keeps it off: switching it on would read weights that never learnt), then restore them."""
    previous = model.ablation
    model.set_ablation(previous, **{name: True for name in ablation})
    try:
        yield model
    finally:
        model.set_ablation(previous)


@dataclass
class FusionRun:
    """One fusion forward over a whole video, per step."""

    inputs: object  # the ExpertInputs it ran on
    prob: np.ndarray  # (T,) threat probability
    gates: np.ndarray  # (T, 4): R_hpe, R_ore, R_vbe, 1 - G
    kind_prob: np.ndarray | None  # (T, K) over model.config.event_kinds; None without a kind head


def run_model(model, evidence: VideoEvidence) -> FusionRun:
    """One fusion forward over the whole video (no text)."""
    import torch

    from uprm.featurize import featurize

    inputs = featurize(evidence, model.config)
    with torch.no_grad():
        out = model(inputs)
    prob = out.threat_prob[0].float().cpu().numpy()
    gates = torch.cat([out.router_weights[0], out.coarse_share[0][:, None]], dim=-1).float().cpu().numpy()
    kinds = None if out.kind_logits is None else out.kind_logits[0].softmax(-1).float().cpu().numpy()
    return FusionRun(inputs, prob, gates, kinds)


def category_from_kinds(kind_prob: np.ndarray, kinds: tuple[str, ...]) -> str:
    """The kind head's category for a segment: the kind with the highest mean probability over its steps."""
    return kinds[int(np.asarray(kind_prob).mean(axis=0).argmax())]


def segment_category(ev: SegmentEvidence, duration_s: float, kind_prob: np.ndarray | None,
                     kinds: tuple[str, ...]) -> str:
    """What a segment is called: the kind head's category over its steps (``kind_prob``) when the model has
    one, else the rules' over its evidence (every checkpoint without a kind head)."""
    return category_from_evidence(ev, duration_s) if kind_prob is None else category_from_kinds(kind_prob, kinds)


def analyze_iter(video: str | Path, model, settings: AnalysisSettings | None = None,
                 evidence: VideoEvidence | None = None, model_id: str | None = None,
                 cache_dir: str | Path | None = None) -> Iterator[AnalysisUpdate]:
    """Yield progress and partial results; the last update has stage "done" and the full Analysis."""
    import queue
    import threading

    import torch

    settings = settings or AnalysisSettings()
    torch.manual_seed(settings.seed)
    if evidence is None:
        from uprm.perception import PerceptionSettings, perceive

        # perception reports through a callback: run it in a thread and relay its progress here
        updates: queue.Queue = queue.Queue()
        box: dict = {}

        def work():
            try:
                box["ev"] = perceive(video, PerceptionSettings(sample_fps=settings.sample_fps,
                                                               sam2_checkpoint=settings.sam2_checkpoint),
                                     progress=lambda stage, frac: updates.put((stage, frac)),
                                     cache_dir=cache_dir)
            except BaseException as exc:  # re-raised in the caller's thread below
                box["err"] = exc
            finally:
                updates.put(None)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        while (item := updates.get()) is not None:
            stage, frac = item
            yield AnalysisUpdate(f"perception: {stage}", 0.8 * float(frac))
        thread.join()
        if "err" in box:
            raise box["err"]
        evidence = box["ev"]
    yield AnalysisUpdate("perception: done", 0.8, evidence=evidence)

    with ablated(model, settings.ablation):
        yield from _fuse_and_explain(model, evidence, settings, model_id)


def _fuse_and_explain(model, evidence: VideoEvidence, settings: AnalysisSettings,
                      model_id: str | None) -> Iterator[AnalysisUpdate]:
    settings = decision_rule(settings, model.config)  # recorded in the Analysis as applied
    fusion = run_model(model, evidence)
    inputs, prob, gates = fusion.inputs, fusion.prob, fusion.gates
    times = evidence.times_s
    step_s = 1.0 / evidence.sample_fps
    segments = []
    for first, last, start_s, end_s in cut_segments(times, prob, step_s, evidence.video.duration_s,
                                                    settings.rule()):
        steps = list(range(first, last + 1))
        ev = summarize_evidence(evidence, steps, gates[first:last + 1])
        kinds = None if fusion.kind_prob is None else fusion.kind_prob[first:last + 1]
        category = segment_category(ev, end_s - start_s, kinds, model.config.event_kinds)
        segments.append(ThreatSegment(start_s, end_s, round(float(prob[first:last + 1].max()), 4), category,
                                      "", ev))
    analysis = Analysis(
        video=evidence.video, model_id=model_id or getattr(model, "model_id", "uprm"), settings=settings,
        times_s=[round(float(t), 3) for t in times], threat_prob=[round(float(p), 5) for p in prob],
        gates=[[round(float(g), 5) for g in row] for row in gates], segments=segments,
        warnings=list(evidence.warnings),
    )
    yield AnalysisUpdate("fusion: done", 0.85, analysis=analysis, evidence=evidence, inputs=inputs)

    if settings.explain:
        for i, seg in enumerate(segments):
            cause = explain_steps(model, inputs, seg.evidence.step_indices[0], seg.evidence.step_indices[-1],
                                  settings.max_new_tokens)
            analysis.segments[i] = replace(seg, cause=cause)
            yield AnalysisUpdate(f"causes: {i + 1}/{len(segments)}", 0.85 + 0.15 * (i + 1) / len(segments),
                                 analysis=analysis, evidence=evidence, inputs=inputs)
    yield AnalysisUpdate("done", 1.0, analysis=analysis, evidence=evidence, inputs=inputs)


def explain_steps(model, inputs, first: int, last: int, max_new_tokens: int | None = None) -> str:
    """The model's cause for a threat at steps ``first``..``last``: the attribute question over those
    steps' video tokens, asked as the language model was trained, without evidence text. The training
    data's attribute turns carry none; given ``evidence_context`` anyway, the shipped v8 model's causes
    named the right kind of event for 3 of 31 held-out events, without it for 13 (see the model card)."""
    from uprm.instructions import ATTRIBUTE, attribute_answer

    text = model.answer(inputs.slice_steps(first, last + 1), ATTRIBUTE, max_new_tokens=max_new_tokens)
    return attribute_answer(text) or text


def analyze(video: str | Path, model, settings: AnalysisSettings | None = None,
            progress: Progress | None = None, **kwargs) -> Analysis:
    """Analyse a whole video; deterministic for a given settings.seed."""
    last = None
    for update in analyze_iter(video, model, settings, **kwargs):
        if progress:
            progress(update.stage, update.fraction)
        last = update
    assert last is not None and last.analysis is not None
    return last.analysis
