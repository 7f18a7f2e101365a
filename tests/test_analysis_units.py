"""Segment extraction, evidence summaries, grounded chat facts and plots, without running a model."""
from __future__ import annotations

import numpy as np
import pytest

from uprm.analysis import (Analysis, AnalysisSettings, SegmentEvidence, ThreatSegment, category_from_evidence,
                           segments_from_scores, summarize_evidence)
from uprm.chat import ChatEngine, grounded_facts, parse_focus
from uprm.evidence import FrameEvidence, Relation, VideoEvidence, VideoInfo
from uprm.plots import comparison_figure, router_formula, timeline_figure

INFO = VideoInfo(path="/v/clip.mp4", content_hash="ab" * 32, fps=10.0, frame_count=300, duration_s=30.0,
                 width=640, height=480)


def test_segments_from_scores_runs_merge_and_min_length():
    t = np.arange(0, 10, 0.5) + 0.25  # 2 fps steps
    p = np.zeros_like(t)
    p[4:8] = 0.9  # 2.0-4.0 s
    p[9] = 0.8  # one step after a one-step gap: merged (gap 0.5 s < 1 s)
    p[16] = 0.7  # an isolated 0.5 s blip: dropped (< 1 s)
    runs = segments_from_scores(t, p, 0.5, threshold=0.5, min_segment_s=1.0, merge_gap_s=1.0)
    assert runs == [(4, 9)]
    assert segments_from_scores(t, p, 0.5, 0.5, 0.5, 0.0) == [(4, 7), (9, 9), (16, 16)]
    assert segments_from_scores(t, np.zeros_like(t), 0.5, 0.5, 1.0, 1.0) == []


def test_hysteresis_widens_the_segments_the_threshold_found_and_finds_no_new_ones():
    t = np.arange(0, 10, 0.5) + 0.25
    p = np.full_like(t, 0.1)
    p[2:5] = 0.5  # a weak onset, 1.0-2.5 s ...
    p[5:9] = 0.95  # ... a sure core, 2.5-4.5 s ...
    p[9] = 0.6  # ... and a weak end
    p[10] = 0.3  # below the keep level: the segment stops before it
    p[13] = 0.95  # a one-step spike: too short at the threshold, so no segment however wide it could grow
    p[12] = p[14] = 0.6
    p[16:] = 0.6  # a long stretch that never reaches the threshold
    plain = segments_from_scores(t, p, 0.5, threshold=0.9, min_segment_s=1.0, merge_gap_s=0.0)
    assert plain == [(5, 8)]
    assert segments_from_scores(t, p, 0.5, 0.9, 1.0, 0.0, keep_threshold=0.4) == [(2, 9)]
    # a keep level at or above the threshold is no hysteresis
    assert segments_from_scores(t, p, 0.5, 0.9, 1.0, 0.0, keep_threshold=0.9) == plain
    assert segments_from_scores(t, p, 0.5, 0.9, 1.0, 0.0, keep_threshold=0.95) == plain
    # two cores whose widened ends meet are one segment
    q = np.full_like(t, 0.1)
    q[2:5] = q[8:11] = 0.95
    q[5:8] = 0.5
    assert segments_from_scores(t, q, 0.5, 0.9, 1.0, 0.0) == [(2, 4), (8, 10)]
    assert segments_from_scores(t, q, 0.5, 0.9, 1.0, 0.0, keep_threshold=0.4) == [(2, 10)]


def _frame(t, lying=False):
    boxes = np.array([[10, 10, 50, 120], [60, 60, 90, 90]], np.float32)
    rel = [Relation(0, "holding", 1, 0.8, "right wrist inside box of handbag")]
    if lying:
        rel.append(Relation(0, "lying", 0, 0.9, "box wider than tall, hips at shoulder height"))
    return FrameEvidence(time_s=t, frame_index=int(t * 10), boxes=boxes, class_ids=np.array([1, 31]),
                         class_names=["person", "handbag"], scores=np.array([0.9, 0.7], np.float32),
                         track_ids=np.array([3, 7]), keypoints=np.zeros((2, 17, 3), np.float32),
                         relations=rel, fight_prob=0.2, scene_labels=[("street", 0.4)])


def test_summarize_evidence_and_category():
    ev = VideoEvidence(INFO, 2.0, [_frame(0.25), _frame(0.75, lying=True)])
    gates = np.array([[0.5, 0.2, 0.1, 0.5], [0.6, 0.2, 0.1, 0.4]])
    s = summarize_evidence(ev, [0, 1], gates)
    assert s.track_ids == [3]
    assert s.predicates == {"holding": 2, "lying": 1}
    assert s.dominant_expert == "hpe" and s.mean_gates["hpe"] == pytest.approx(0.55)
    assert "person#3 holding handbag#7" in s.relations[1] or "person#3 holding handbag#7" in s.relations[0]
    assert category_from_evidence(s) == "fall"


def _analysis(with_segment=True):
    t = [i * 0.5 + 0.25 for i in range(60)]
    p = [0.9 if 44 <= i <= 47 else 0.1 for i in range(60)]
    ev = SegmentEvidence([44, 45, 46, 47], [3], ["22.2s person#3 lying (0.90): box wider than tall"],
                         {"lying": 4}, {"lying": 4}, {"hpe": 0.6, "ore": 0.2, "vbe": 0.2, "coarse": 0.4},
                         "hpe", 0.1, ["street"])
    segs = [ThreatSegment(22.0, 24.0, 0.9, "fall", "The threat is attributed to a fall.", ev)] if with_segment else []
    settings = AnalysisSettings(threshold=0.5, min_segment_s=1.0, merge_gap_s=1.0)  # filled in, as analyses record
    return Analysis(INFO, "test", settings, t, p, [[0.6, 0.2, 0.2, 0.4]] * 60, segs)


def test_chat_grounding_cites_times_and_refuses_unsupported():
    a = _analysis()
    focus = parse_focus("why is 22-24 s a threat?", a)
    assert (focus.start_s, focus.end_s, focus.segments) == (22.0, 24.0, (0,))
    facts = grounded_facts("why is 22-24 s a threat?", a, focus)
    assert "[22.0s-24.0s] fall" in facts and "person#3" in facts
    out = "".join(ChatEngine(None, a).ask("what happens at 5 s?"))
    assert "does not support a threat at 5.0s" in out and "0.10" in out
    pose = "".join(ChatEngine(None, a).ask("what did the pose expert see?"))
    assert "human pose expert carried weight 0.60" in pose and "lying x4" in pose
    quiet = _analysis(False)
    quiet.threat_prob = [0.1] * 60
    none = "".join(ChatEngine(None, quiet).ask("why is this a threat?"))
    assert none.startswith("No, there exists no threat") and "0.10, below the threshold 0.50" in none
    # a score over the threshold for less than the minimum segment made no segment: the answer says so
    brief = _analysis(False)
    brief.threat_prob = [0.1] * 60
    brief.threat_prob[30] = 0.8
    for question in ("why is this a threat?", "what happens at 15 s?"):
        answer = "".join(ChatEngine(None, brief).ask(question))
        assert "0.80, above the threshold 0.50 for less than the 1 s a segment needs" in answer


def test_plots_have_expected_traces_and_formula():
    a = _analysis()
    fig = timeline_figure(a)
    names = [tr.name for tr in fig.data]
    assert names[:2] == ["threat segments", "threat score"]
    assert {"R human pose", "R object relations", "R visual background", "1-G coarse share"} <= set(names)
    assert fig.data[0].customdata[0] == 22.0  # clicking the band seeks to the segment start
    levels = lambda f: sorted(sh.y0 for sh in f.layout.shapes if sh.yref != "paper")  # noqa: E731
    assert levels(fig) == [0.5]
    widened = Analysis(**{**a.__dict__, "settings": AnalysisSettings(threshold=0.5, keep_threshold=0.3)})
    assert levels(timeline_figure(widened)) == [0.3, 0.5]  # the hysteresis level drawn under the threshold
    b = Analysis(**{**a.__dict__, "settings": AnalysisSettings(ablation=("no_ptr",))})
    assert len(comparison_figure(a, b, "w/o PTR").data) == 2 * len(fig.data)
    f = router_formula(a, 45)
    assert "G = \\max_i R(h)_i = 0.600" in f and "(1 - 0.600)" in f
    assert "plain softmax" in router_formula(b, 45)


def test_analysis_json_round_trip(tmp_path):
    a = _analysis()
    path = a.save(tmp_path / "a.json")
    import json

    b = Analysis.from_json(json.loads(path.read_text()))
    assert b == a


@pytest.mark.parametrize("predicates,tracks,fight,duration,expected", [
    ({"lying": 1, "running": 3}, [1, 2], 0.1, 5.0, "fall"),
    ({"touching": 4}, [1, 2], 0.2, 5.0, "struggle"),
    ({"running": 3}, [1, 2, 3], 0.1, 5.0, "crowd_run"),
    ({"near": 2}, [4], 0.1, 12.0, "loiter"),
    ({"near": 2}, [4], 0.1, 4.0, "threat"),
])
def test_categories_follow_the_evidence(predicates, tracks, fight, duration, expected):
    ev = SegmentEvidence([0], tracks, ["x"], predicates, {}, {"hpe": 1.0, "ore": 0, "vbe": 0, "coarse": 0},
                         "hpe", fight, [])
    assert category_from_evidence(ev, duration) == expected


def _with_motion(t: float, people: list[tuple], changes: list[tuple], touching=()) -> FrameEvidence:
    """people: (box, flow_speed, flow_wander); changes: (box, person_overlap, added, age_s[, seconds since a
    person stood there, default 0])."""
    from uprm.evidence import ENTITY_MOTION, SCENE_CHANGE_CLASS_ID

    col = {n: i for i, n in enumerate(ENTITY_MOTION)}
    n = len(people) + len(changes)
    motion = np.zeros((n, len(ENTITY_MOTION)), np.float32)
    for i, (_, speed, wander) in enumerate(people):
        motion[i, col["flow_speed_hps"]], motion[i, col["flow_wander_2s_h"]] = speed, wander
    for j, (_, overlap, added, age, *since) in enumerate(changes, start=len(people)):
        motion[j, col["change_log_since_person_s"]] = np.log1p(since[0] if since else 0.0)
        motion[j, col["change_grey"]] = 0.3
        motion[j, col["change_contrast"]], motion[j, col["change_contrast_before"]] = (0.3, 0.05) if added else (0.05, 0.3)
        motion[j, col["change_log_age_s"]], motion[j, col["change_person_overlap"]] = np.log1p(age), overlap
    return FrameEvidence(
        time_s=t, frame_index=int(t * 10), boxes=np.array([b for b, *_ in people + changes], np.float32).reshape(n, 4),
        class_ids=np.array([1] * len(people) + [SCENE_CHANGE_CLASS_ID] * len(changes)),
        class_names=["person"] * len(people) + ["scene change"] * len(changes), scores=np.full(n, 0.8, np.float32),
        track_ids=np.array(list(range(len(people))) + [-1] * len(changes)), keypoints=np.zeros((n, 17, 3), np.float32),
        relations=[Relation(a, "touching", b, 0.8, "boxes overlap") for a, b in touching], motion=motion)


STANDING = ((300, 200, 340, 300), 0.0, 0.0)  # a person 100 px tall whose feet are at y = 300


def test_motion_facts_name_falls_left_items_runs_and_scuffles():
    def category(frames):
        ev = VideoEvidence(INFO, 2.0, frames)
        return category_from_evidence(summarize_evidence(ev, list(range(len(frames))), np.full((len(frames), 4), 0.25)))

    lying = ((100, 280, 200, 310), 0.0, True, 3.0)  # 100 x 30 px on the ground where a standing person is 40 x 100
    summary = summarize_evidence(VideoEvidence(INFO, 2.0, [_with_motion(5.0, [STANDING], [lying])]), [0], np.zeros((1, 4)))
    assert summary.change_kinds == {"lying": 1}
    assert summary.scene_changes == ["from 2.0s: something person-sized lying on the ground at (150, 310) px, "
                                     "100x30 px, nobody standing on it"]
    assert category([_with_motion(5.0, [STANDING], [lying])]) == "fall"
    item = ((100, 295, 112, 301), 0.0, True, 2.0)
    assert category([_with_motion(5.0, [STANDING], [item])]) == "left_object"
    # someone standing on the change, the ghost of something gone, or a change nobody was near when it
    # appeared (a tape flapping in the wind) is no left item
    assert category([_with_motion(5.0, [STANDING], [(item[0], 0.9, True, 2.0), (item[0], 0.0, False, 2.0),
                                                    (item[0], 0.0, True, 2.0, 8.0)])]) == "threat"
    runners = [((x, 200, x + 40, 300), 1.2, 0.1) for x in (100, 200, 300)]
    assert category([_with_motion(5.0, runners, [])]) == "crowd_run"
    pair = [((300, 200, 340, 300), 0.4, 1.6), ((320, 200, 360, 300), 0.5, 1.4)]
    assert category([_with_motion(5.0, pair, [], touching=[(0, 1)])]) == "struggle"
    ctx_ev = summarize_evidence(VideoEvidence(INFO, 2.0, [_with_motion(5.0, runners, [lying])]), [0], np.zeros((1, 4)))
    context = __import__("uprm.analysis", fromlist=["evidence_context"]).evidence_context(ctx_ev, 4.0, 6.0, 0.8)
    assert "up to 3 people at once" in context and "Scene change from 2.0s: something person-sized lying" in context


def test_alpha_figure_groups_mean_gates_by_alpha():
    from uprm.plots import alpha_figure

    fig = alpha_figure({0.0: [[0.8, 0.1, 0.1, 0.2]] * 3, 0.8: [[0.4, 0.3, 0.3, 0.6], [0.2, 0.5, 0.3, 0.5]]})
    hpe = next(t for t in fig.data if t.name == "R human pose")
    assert list(hpe.x) == ["alpha = 0", "alpha = 0.8"] and list(hpe.y) == pytest.approx([0.8, 0.3])
    assert len(fig.data) == 4


def test_decision_rule_comes_from_the_checkpoint_unless_given():
    from uprm.analysis import AnalysisSettings, DecisionRule, decision_rule
    from uprm.model import UPRMConfig

    cfg = UPRMConfig.tiny(threat_threshold=0.7, threat_min_segment_s=2.0, threat_merge_gap_s=3.0)
    own = decision_rule(AnalysisSettings(), cfg)
    assert (own.threshold, own.min_segment_s, own.merge_gap_s) == (0.7, 2.0, 3.0)
    mixed = decision_rule(AnalysisSettings(threshold=0.3, merge_gap_s=0.5), cfg)
    assert (mixed.threshold, mixed.min_segment_s, mixed.merge_gap_s) == (0.3, 2.0, 0.5)
    assert own.keep_threshold is None and own.rule().text() == "threshold 0.7"
    assert own.rule() == DecisionRule(0.7, 2.0, 3.0) == DecisionRule.from_config(cfg)  # one typed rule
    with pytest.raises(ValueError, match="decision_rule"):  # unfilled settings are no rule yet
        AnalysisSettings(min_segment_s=1.0).rule()
    # hysteresis from the checkpoint applies below the threshold; a threshold picked under it leaves none
    cfg = UPRMConfig.tiny(threat_threshold=0.9, threat_keep_threshold=0.4)
    assert decision_rule(AnalysisSettings(), cfg).keep_threshold == 0.4
    assert decision_rule(AnalysisSettings(), cfg).rule().text() == "threshold 0.9, segments widened while >= 0.4"
    assert decision_rule(AnalysisSettings(threshold=0.6), cfg).keep_threshold == 0.4
    assert decision_rule(AnalysisSettings(threshold=0.3), cfg).keep_threshold is None
    assert decision_rule(AnalysisSettings(keep_threshold=0.7), cfg).keep_threshold == 0.7
    with pytest.raises(ValueError, match="keep_threshold must be in"):
        AnalysisSettings(keep_threshold=1.0)
    from uprm.model.config import ConfigError

    with pytest.raises(ConfigError, match="threat_keep_threshold must be in"):
        UPRMConfig.tiny(threat_threshold=0.5, threat_keep_threshold=0.6)
