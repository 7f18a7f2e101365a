"""Chat about the causes of an analysis, grounded in its segments and evidence.

Every answer starts with what the analysis itself supports (segments, times, people, relations, expert
weights), cited with times; the language model then explains from those facts and the fused tokens of
the time range concerned. When the analysis has nothing for the question, the answer says so plainly
instead of letting the model invent a cause.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from uprm.analysis import EXPERT_NAMES, EXPERTS, Analysis, ThreatSegment, evidence_context
from uprm.instructions import ATTRIBUTE, IDENTIFY, LOCATE, identify_answer, locate_answer

_RANGE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:s|sec|seconds)?\s*(?:-|–|to|and)\s*(\d+(?:\.\d+)?)\s*(?:s|sec|seconds)?\b", re.I)
_POINT = re.compile(r"\b(?:at|around|near)?\s*(\d+(?:\.\d+)?)\s*(?:s|sec|seconds)\b", re.I)
_EXPERT_WORDS = {"pose": "hpe", "skeleton": "hpe", "relation": "ore", "object": "ore", "background": "vbe",
                 "segmentation": "vbe", "mask": "vbe", "coarse": "coarse", "global": "coarse"}


@dataclass(frozen=True)
class Focus:
    """What a question is about: a time range (seconds) and the segments overlapping it."""

    start_s: float | None
    end_s: float | None
    segments: tuple[int, ...]  # indices into analysis.segments
    expert: str | None


def parse_focus(question: str, analysis: Analysis) -> Focus:
    start = end = None
    if m := _RANGE.search(question):
        start, end = sorted((float(m.group(1)), float(m.group(2))))
    elif m := _POINT.search(question):
        start = end = float(m.group(1))
    expert = next((k for w, k in _EXPERT_WORDS.items() if w in question.lower()), None)
    if start is None:
        segs = tuple(range(len(analysis.segments)))
    else:
        segs = tuple(i for i, s in enumerate(analysis.segments) if s.start_s <= end and s.end_s >= start)
    return Focus(start, end, segs, expert)


def _max_score(analysis: Analysis, start_s: float, end_s: float) -> float:
    t = np.asarray(analysis.times_s)
    p = np.asarray(analysis.threat_prob)
    half = 0.5 / analysis.settings.sample_fps
    inside = (t + half >= start_s) & (t - half <= end_s)
    return float(p[inside].max()) if inside.any() else 0.0


def _short_of_rule(score: float, analysis: Analysis) -> str:
    """Why a score made no segment: below the threshold, or above it too briefly (min_segment_s)."""
    s = analysis.settings
    if score < s.threshold:
        return f"below the threshold {s.threshold:.2f}"
    return f"above the threshold {s.threshold:.2f} for less than the {s.min_segment_s:g} s a segment needs"


def grounded_facts(question: str, analysis: Analysis, focus: Focus) -> str:
    """The part of the answer that comes straight from the analysis, with times cited."""
    q = question.lower()
    segs = [analysis.segments[i] for i in focus.segments]
    if focus.start_s is not None and not segs:
        where = (f"at {focus.start_s:.1f}s" if focus.start_s == focus.end_s
                 else f"between {focus.start_s:.1f}s and {focus.end_s:.1f}s")
        score = _max_score(analysis, focus.start_s, focus.end_s)
        return (f"The analysis does not support a threat {where}: the highest threat score there is "
                f"{score:.2f}, {_short_of_rule(score, analysis)}, so I have no cause to give.")
    if not analysis.segments:
        score = max(analysis.threat_prob, default=0.0)
        return (f"{identify_answer(False)}: the highest threat score in this {analysis.video.duration_s:.1f}s "
                f"video is {score:.2f}, {_short_of_rule(score, analysis)}. The evidence does not support a "
                "threat cause.")
    if IDENTIFY.lower()[:20] in q or q.startswith(("is there", "are there", "does")):
        return f"{identify_answer(True)}. " + locate_answer([(s.start_s, s.end_s) for s in analysis.segments]) + "."
    if LOCATE.lower()[:20] in q or "when" in q or "timestamp" in q:
        return locate_answer([(s.start_s, s.end_s) for s in segs]) + "."
    parts = []
    for s in segs:
        parts.append(_segment_facts(s, focus.expert))
    return "\n".join(parts)


def _segment_facts(s: ThreatSegment, expert: str | None) -> str:
    ev = s.evidence
    head = f"[{s.start_s:.1f}s-{s.end_s:.1f}s] {s.category}, score {s.score:.2f}."
    who = ", ".join(f"person#{t}" for t in ev.track_ids) or "no tracked person"
    lines = [head, f"Involved: {who}."]
    if expert:
        w = ev.mean_gates.get(expert, 0.0)
        lines.append(f"The {EXPERT_NAMES[expert]} expert carried weight {w:.2f} here "
                     f"(dominant: {EXPERT_NAMES[ev.dominant_expert]}).")
        if expert == "hpe":
            states = ", ".join(f"{k} x{v}" for k, v in ev.pose_states.items()) or "no lying or running pose"
            lines.append(f"Pose evidence: {states}.")
        elif expert == "ore":
            lines.extend(f"- {r}" for r in ev.relations[:4] or ["no relation edges in this segment"])
        elif expert == "vbe":
            lines.append(f"Scene: {', '.join(ev.scene_labels) or 'no confident scene label'}.")
        else:
            lines.append(f"Fight-clip probability {ev.fight_prob_mean:.2f}.")
    else:
        lines.extend(f"- {r}" for r in ev.relations[:3])
        gates = ", ".join(f"{EXPERT_NAMES[k]} {ev.mean_gates[k]:.2f}" for k in EXPERTS)
        lines.append(f"Expert weights: {gates}.")
    if s.cause:
        lines.append(f"Cause: {s.cause}")
    return "\n".join(lines)


class ChatEngine:
    """Answers questions about one analysis; keeps the fused inputs so each answer costs one decode."""

    def __init__(self, model, analysis: Analysis, inputs=None):
        self.model = model
        self.analysis = analysis
        self.inputs = inputs  # ExpertInputs of the analysed video, or None for facts-only answers

    def ask(self, question: str, max_new_tokens: int = 64) -> Iterator[str]:
        """Yield the answer piece by piece: grounded facts first, then the model's explanation."""
        question = question.strip()
        if not question:
            yield "Ask a question about the video, e.g. \"why is 22-24 s a threat?\""
            return
        focus = parse_focus(question, self.analysis)
        facts = grounded_facts(question, self.analysis, focus)
        yield facts
        segs = [self.analysis.segments[i] for i in focus.segments]
        if not segs or self.inputs is None or self.model is None:
            return
        first = min(s.evidence.step_indices[0] for s in segs)
        last = max(s.evidence.step_indices[-1] for s in segs)
        context = "\n".join(evidence_context(s.evidence, s.start_s, s.end_s, s.score) for s in segs)
        yield "\n\nModel explanation: "
        yield from self.model.answer(self.inputs.slice_steps(first, last + 1), question or ATTRIBUTE,
                                     context=context, max_new_tokens=max_new_tokens, stream=True)
