"""The kind head: which kind of threat each step is, read off z without shaping it, fitted on a trained model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from uprm import bootstrap as bs
from uprm.analysis import category_from_kinds
from uprm.compose.events import kinds_named
from uprm.evidence import FrameEvidence, VideoEvidence, VideoInfo
from uprm.model import ConfigError, UPRMConfig, build_model
from uprm.model.inputs import random_expert_inputs
from uprm.training.kinds import NO_KIND, KindFitSettings, fit_kind_head, kind_targets

KINDS = ("fall", "struggle", "crowd_run")


def test_a_kind_head_changes_no_other_weight_and_no_threat_output():
    plain, with_kinds = build_model("tiny"), build_model("tiny", event_kinds=KINDS)
    assert plain.kind_head is None and plain.config.event_kinds == ()
    a, b = plain.uprm_state_dict(), with_kinds.uprm_state_dict()
    assert {k.split(".")[0] for k in set(b) - set(a)} == {"kind_head"}
    assert all(torch.equal(a[k], b[k]) for k in a)  # drawn last: the same start as without a head
    inputs = random_expert_inputs(plain.config, batch_size=2, num_steps=7, seed=3)
    out_a, out_b = plain.eval()(inputs), with_kinds.eval()(inputs)
    assert out_a.kind_logits is None and out_b.kind_logits.shape == (2, 7, len(KINDS))
    torch.testing.assert_close(out_a.threat_prob, out_b.threat_prob, rtol=0, atol=0)


def test_the_kind_head_reads_z_without_shaping_it():
    model = build_model("tiny", event_kinds=KINDS).train()
    out = model(random_expert_inputs(model.config, num_steps=6, seed=1))
    out.kind_logits.sum().backward()
    assert model.kind_head.out.weight.grad.abs().sum() > 0
    fusion = [p for name, p in model.named_parameters() if not name.startswith(("kind_head", "lm."))]
    assert all(p.grad is None or not p.grad.any() for p in fusion)


@pytest.mark.parametrize("kinds", [("fall",), ("fall", "fall"), ("fall", ""), "fall,struggle"])
def test_event_kinds_must_be_distinct_names(kinds):
    with pytest.raises(ConfigError, match="event_kinds"):
        UPRMConfig.tiny(event_kinds=kinds)


def test_a_kind_head_survives_saving_and_configs_without_one_still_load(tmp_path):
    model = build_model("tiny", event_kinds=KINDS).eval()
    with torch.no_grad():
        for p in model.kind_head.parameters():
            p.add_(0.1)
    folder = model.save_pretrained(tmp_path / "m")
    assert json.loads((folder / "config.json").read_text())["event_kinds"] == list(KINDS)
    again = build_model(str(folder)).eval()
    inputs = random_expert_inputs(model.config, num_steps=5, seed=2)
    torch.testing.assert_close(again(inputs).kind_logits, model(inputs).kind_logits)
    cfg = model.config.to_dict()
    del cfg["event_kinds"]  # written before the kind head existed
    assert UPRMConfig.from_dict(cfg).event_kinds == ()


def test_kind_targets_per_step():
    t = np.arange(8) * 0.5 + 0.25  # 0.25 .. 3.75
    y = kind_targets(t, [(0.5, 2.0, "struggle"), (1.5, 3.0, "fall")], KINDS)
    assert y.tolist() == [NO_KIND, 1, 1, 0, 0, 0, NO_KIND, NO_KIND]  # the later-starting event wins the overlap
    with pytest.raises(ValueError, match="loiter"):
        kind_targets(t, [(0.0, 1.0, "loiter")], KINDS)


def test_fitting_teaches_the_head_only():
    model = build_model("tiny", event_kinds=KINDS)
    before = {k: v.clone() for k, v in model.uprm_state_dict().items()}
    videos = []
    for i in range(6):  # every step of video i is kind i % 3; the head can tell them apart by z
        inputs = random_expert_inputs(model.config, num_steps=6, seed=10 + i)
        videos.append((inputs, np.full(6, i % 3)))
    videos.append((random_expert_inputs(model.config, num_steps=6, seed=99), np.full(6, NO_KIND)))
    result = fit_kind_head(model, videos, KindFitSettings(epochs=60, lr=1e-2, videos_per_step=3))
    assert result.steps_by_kind == {"fall": 12, "struggle": 12, "crowd_run": 12}
    assert result.loss_last_epoch < result.loss_first_epoch and result.step_accuracy >= 0.9
    after = model.uprm_state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("kind_head.") for k in changed)
    with pytest.raises(ValueError, match="nothing to fit"):
        fit_kind_head(model, videos[-1:])
    with pytest.raises(ValueError, match="with_kind_head"):
        fit_kind_head(build_model("tiny"), videos)
    assert build_model("tiny").with_kind_head(KINDS).config.event_kinds == KINDS


def test_a_refit_on_a_few_corrections_keeps_what_the_head_said_elsewhere():
    """The correction loop refits a working head on a few corrected segments of one kind: holding the steps
    outside them to the head's earlier answers (keep_weight) unteaches the other kinds less."""
    import copy

    model = build_model("tiny", event_kinds=KINDS)
    videos = [(random_expert_inputs(model.config, num_steps=6, seed=10 + i), np.full(6, i % 3)) for i in range(6)]
    fit_kind_head(model, videos, KindFitSettings(epochs=60, lr=1e-2, videos_per_step=3))

    def accuracy(m, data, steps=slice(None)) -> float:
        with torch.no_grad():
            return float(np.mean([(m(x).kind_logits[0].argmax(-1).numpy()[steps] == np.asarray(y)[steps]).mean()
                                  for x, y in data]))

    fixes = [(random_expert_inputs(model.config, num_steps=6, seed=50 + i), np.array([0, 0, 0] + [NO_KIND] * 3))
             for i in range(2)]  # "fall" over the first half of two new videos
    kept, forgot = copy.deepcopy(model), copy.deepcopy(model)
    fit_kind_head(kept, fixes, KindFitSettings(epochs=30, lr=1e-3, keep_weight=1.0))
    fit_kind_head(forgot, fixes, KindFitSettings(epochs=30, lr=1e-3))
    assert accuracy(kept, fixes, slice(0, 3)) == accuracy(forgot, fixes, slice(0, 3)) == 1.0  # both learnt the fix
    assert accuracy(model, videos) > accuracy(kept, videos) > accuracy(forgot, videos)
    assert accuracy(kept, videos) >= 0.7


def test_a_segment_takes_the_kind_with_the_highest_mean_probability():
    prob = np.array([[0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1]])
    assert category_from_kinds(prob, KINDS) == "struggle"
    assert category_from_kinds(prob[:1], KINDS) == "fall"


def test_causes_name_their_kinds_by_the_compositors_wording():
    assert kinds_named("a person who collapses onto the ground and stays down") == {"fall"}
    assert kinds_named("two people who grapple, pushing and shoving") == {"struggle"}
    assert kinds_named("a person who puts an item down on the ground, pushing and shoving") == {"left_object",
                                                                                              "struggle"}
    assert kinds_named("") == set()
    pairs = [{"kind": "fall", "generated": "someone collapses"},
             {"kind": "fall", "generated": "someone collapses, pushing and shoving"},
             {"kind": "fall", "generated": "they break into a run"}, {"kind": "fall", "generated": ""}]
    assert bs.cause_kinds(pairs) == {"n": 4, "right": 1, "mixed": 1, "wrong": 1, "unnamed": 1}


def test_category_scores_compare_the_kind_head_with_the_evidence_rules(tmp_path):
    info = VideoInfo("v.mp4", "h", 10.0, 100, 10.0, 64, 48)
    clips = [bs.ClipRecord(f"v{i}", f"v{i}.mp4", 10.0, 10.0, "x.mp4", 0.0, i, ((2.0, 5.0),), (kind,), ("c",), ())
             for i, kind in enumerate(("fall", "struggle"))]
    composed = bs.ComposedSet("unit", tmp_path, 0, clips)
    t = np.arange(20) * 0.5 + 0.25
    evidences = {c.path: VideoEvidence(info, 2.0, [FrameEvidence.empty(float(x), int(x * 10)) for x in t])
                 for c in clips}
    prob = np.where((t > 2.0) & (t < 5.0), 0.9, 0.1)
    kind_prob = np.tile([0.2, 0.7, 0.1], (20, 1))  # "struggle" everywhere
    scored = [bs.Scored(c.video_id, 10.0, 0.5, t, prob, np.full((20, 4), 0.25), kind_prob) for c in clips]
    cats = bs.category_scores(composed, evidences, scored, KINDS, bs.DecisionRule(0.5, 1.0, 0.0))
    assert cats["n_events"] == 2
    assert cats["at_gt_bounds"]["right"] == 1 and cats["shown"] == {
        "right": 1, "of": 2, "confusion": {"fall": {"struggle": 1}, "struggle": {"struggle": 1}}}
    assert cats["rules"]["of"] == 2 and cats["rules"]["right"] == 0  # no evidence: the rules say "threat"
    without = [bs.Scored(s.video_id, 10.0, 0.5, t, prob, s.gates) for s in scored]
    plain = bs.category_scores(composed, evidences, without, KINDS, bs.DecisionRule(0.5, 1.0, 0.0))
    assert plain["at_gt_bounds"]["of"] == 0 and plain["shown"] == plain["rules"]
