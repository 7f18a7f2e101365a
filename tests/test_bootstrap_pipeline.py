"""The bootstrap functions end to end on real composed clips with a tiny model: compose, perceive, write
instructions, train (threat-only warm-up + the `python -m uprm train` command), ship in float16, load,
score, tune the threshold, evaluate. Plus the pure pieces on their own."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from uprm import bootstrap as bs
from uprm.training.data import load_conversations

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "assets" / "sample_vtest_30s.mp4"


def _set(tmp_path: Path, segments: list[tuple[tuple[float, float], ...]]) -> bs.ComposedSet:
    clips = [bs.ClipRecord(f"v{i}", str(tmp_path / f"v{i}.mp4"), 10.0, 10.0, "x.mp4", 0.0, i, segs,
                           tuple("fall" for _ in segs), tuple(f"The threat is attributed to event {j}." for j in range(len(segs))),
                           ()) for i, segs in enumerate(segments)]
    return bs.ComposedSet("unit", tmp_path, 0, clips)


def _scored(video_id: str, prob: list[float]) -> bs.Scored:
    t = np.arange(len(prob)) * 0.5 + 0.25
    return bs.Scored(video_id, len(prob) * 0.5, 0.5, t, np.asarray(prob, float), np.full((len(prob), 4), 0.25))


def test_instructions_hold_the_three_turns_and_the_ground_truth_segments(tmp_path):
    composed = _set(tmp_path, [((2.0, 4.5), (6.0, 8.0)), ()])
    path = bs.write_instructions(composed, tmp_path / "instr.json")
    examples = load_conversations(path)  # the trainer's own reader
    kinds = [(e.video_id, e.kind) for e in examples]
    assert kinds == [("v0", "identify"), ("v0", "locate"), ("v0", "attribute"), ("v1", "identify"), ("v1", "locate")]
    assert examples[0].threat_intervals_s == ((2.0, 4.5), (6.0, 8.0))
    assert examples[1].answer == "The threat occurs between 2.0s and 4.5s, and between 6.0s and 8.0s"
    assert examples[2].answer == "The threat is attributed to event 0; event 1."
    assert examples[3].threat_intervals_s == () and examples[3].answer.startswith("No")


def test_detection_scores_threshold_tuning_and_false_alarms(tmp_path):
    composed = _set(tmp_path, [((2.0, 4.0),), ()])
    # v0: a threat at 2-4 s scored 0.7; v1: a harmless bump scored 0.45
    p0 = [0.1] * 4 + [0.7] * 4 + [0.1] * 12
    p1 = [0.1] * 8 + [0.45] * 4 + [0.1] * 8
    scored = [_scored("v0", p0), _scored("v1", p1)]
    perfect = bs.detection_scores(composed, scored, 0.5)
    assert perfect["fnr"] == 0 and perfect["map"]["0.5"] == pytest.approx(1.0) and perfect["n_pred"] == 1
    low = bs.detection_scores(composed, scored, 0.4)
    assert low["n_pred"] == 2 and low["precision"] < 1
    best, table = bs.tune_threshold(composed, scored, candidates=(0.4, 0.5, 0.6, 0.8))
    assert best == 0.6 and len(table) == 4  # ties go to the higher threshold; 0.8 misses the threat
    fa = bs.false_alarms([scored[1]], 0.4)
    assert fa["n_false_alarms"] == 1 and fa["per_hour"] == pytest.approx(3600 / 10)
    assert fa["flagged_s"] == pytest.approx(2.0) and fa["flagged_fraction"] == pytest.approx(0.2)
    assert bs.false_alarms([scored[1]], 0.5)["n_false_alarms"] == 0
    assert bs.gate_balance(scored) == {"R_hpe": 0.25, "R_ore": 0.25, "R_vbe": 0.25, "coarse_share": 0.25}
    assert perfect["hits_at_0.5_by_kind"] == {"fall": [1, 1]}


def test_objective_charges_alarms_on_threat_free_clips(tmp_path):
    composed = _set(tmp_path, [((2.0, 6.0),), (), ()])
    # v0: a threat at 2-6 s, sure for 3 s and weak (0.5) for its last second; v1: a harmless bump at 0.55
    p0 = [0.1] * 4 + [0.9] * 6 + [0.5] * 2 + [0.1] * 8
    p1 = [0.1] * 8 + [0.55] * 4 + [0.1] * 8
    scored = [_scored("v0", p0), _scored("v1", p1), _scored("v2", [0.1] * 20)]
    low, high = (bs.detection_scores(composed, scored, t) for t in (0.45, 0.6))
    assert (low["threat_free_clips"], low["threat_free_flagged"], low["silent_share"]) == (2, 1, 0.5)
    assert (high["threat_free_flagged"], high["silent_share"]) == (0, 1.0)
    # F2 and mAP alone prefer the low threshold (the harmless alarm ranks below the true one) ...
    assert (low["f2"] + low["map_avg"]) / 2 > (high["f2"] + high["map_avg"]) / 2
    # ... the silent share makes the quiet clip's alarm cost what the last second of the threat does
    assert bs.objective(high) == pytest.approx((high["f2"] + high["map_avg"] + 1.0) / 3)
    assert bs.tune_threshold(composed, scored, candidates=(0.45, 0.6))[0] == 0.6
    only_threats = bs.detection_scores(_set(tmp_path, [((2.0, 6.0),)]), scored[:1], 0.45)
    assert only_threats["threat_free_clips"] == 0 and np.isnan(only_threats["silent_share"])
    assert bs.objective(only_threats) == pytest.approx((only_threats["f2"] + only_threats["map_avg"]) / 3)


def test_tune_rule_picks_merge_gap_and_minimum_segment(tmp_path):
    composed = _set(tmp_path, [((2.0, 6.0),), ()])
    # v0: one 4 s threat whose score dips for 1 s in the middle; v1: a 1 s harmless blip
    p0 = [0.1] * 4 + [0.8] * 3 + [0.2] * 2 + [0.8] * 3 + [0.1] * 8
    p1 = [0.1] * 8 + [0.8] * 2 + [0.1] * 10
    scored = [_scored("v0", p0), _scored("v1", p1)]
    split = bs.detection_scores(composed, scored, bs.DecisionRule(0.5, 1.0, 1.0))
    assert split["n_pred"] == 3 and split["map"]["0.5"] < 1
    rule, table = bs.tune_rule(composed, scored, thresholds=(0.5,), min_segments_s=(1.0, 2.0),
                               merge_gaps_s=(1.0, 1.5))
    assert len(table) == 4 and rule == bs.DecisionRule(0.5, 2.0, 1.5)
    best = bs.detection_scores(composed, scored, rule)
    assert best["n_pred"] == 1 and best["map"]["0.5"] == pytest.approx(1.0) and best["fnr"] == 0
    from uprm.model import UPRMConfig

    assert bs.DecisionRule.from_config(UPRMConfig.tiny(**rule.config_fields())) == rule  # shipped in the config


def test_tune_rule_tries_hysteresis_below_each_threshold(tmp_path):
    composed = _set(tmp_path, [((2.0, 6.0),), ()])
    # v0: a 4 s threat, sure only in its middle 2 s; v1: a threat-free clip with a long 0.6 stretch
    p0 = [0.1] * 4 + [0.6] * 2 + [0.95] * 4 + [0.6] * 2 + [0.1] * 8
    p1 = [0.1] * 4 + [0.6] * 8 + [0.1] * 8
    scored = [_scored("v0", p0), _scored("v1", p1)]
    rule, table = bs.tune_rule(composed, scored, thresholds=(0.5, 0.9), keep_thresholds=(None, 0.5, 0.7))
    # keep levels are tried only below each threshold: (0.5, None), (0.9, None / 0.5 / 0.7)
    assert [(r["rule"]["threshold"], r["rule"]["keep_threshold"]) for r in table] == [
        (0.5, None), (0.9, None), (0.9, 0.5), (0.9, 0.7)]
    # 0.5 alone flags v1; 0.9 alone misses the threat's weak ends; 0.9 widened down to 0.5 gets both right
    assert rule == bs.DecisionRule(0.9, 1.0, 1.0, 0.5)
    best = bs.detection_scores(composed, scored, rule)
    assert best["fnr"] == 0 and best["threat_free_flagged"] == 0
    from uprm.model import UPRMConfig

    assert bs.DecisionRule.from_config(UPRMConfig.tiny(**rule.config_fields())) == rule
    # the rule is picked after training: a run begun from a preset does not depend on its rule fields
    assert bs.preset_config("tiny", **rule.config_fields()) == bs.preset_config("tiny") != bs.preset_config("tiny", seed=1)
    assert not set(rule.config_fields()) & set(bs.preset_config("tiny"))


def test_localisation_pairs_each_event_with_its_longest_overlap_and_counts_joined_events(tmp_path):
    composed = _set(tmp_path, [((1.0, 3.0), (5.0, 7.0)), ((2.0, 4.0),), ((6.0, 8.0),), ()])
    # v0: one alarm 1.0-8.0 s over both events; v1: 2.5-6.0 s (late start, late end); v2: nothing
    p0 = [0.1] * 2 + [0.9] * 14 + [0.1] * 4
    p1 = [0.1] * 5 + [0.9] * 7 + [0.1] * 8
    scored = [_scored("v0", p0), _scored("v1", p1), _scored("v2", [0.1] * 20), _scored("v3", [0.1] * 20)]
    loc = bs.localisation(composed, scored, 0.5)
    assert loc["n_gt"] == 4 and loc["n_found"] == 3 and loc["n_joined"] == 2
    # start errors: 0, -4 (the joined alarm began before the second event), +0.5; ends: +5, +1, +2
    assert loc["start_error_s"] == pytest.approx(0.0) and loc["end_error_s"] == pytest.approx(2.0)
    assert loc["abs_start_error_s"] == pytest.approx(0.5) and loc["abs_end_error_s"] == pytest.approx(2.0)
    assert bs.localisation(composed, scored[2:], 0.5)["n_found"] == 0  # unscored clips are not counted


def test_frame_auc_matches_counting_pairs_and_splits_by_kind(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.3
    p = np.round(rng.random(300) * (1 + y), 1)  # coarse values: many ties
    pairs = [(a > b) + 0.5 * (a == b) for a in p[y] for b in p[~y]]
    assert bs.frame_auc(y, p) == pytest.approx(np.mean(pairs))
    assert bs.frame_auc(y, -p) == pytest.approx(1 - np.mean(pairs))
    assert np.isnan(bs.frame_auc(np.zeros(4), np.arange(4.0)))
    composed = _set(tmp_path, [((2.0, 4.0),), ()])
    scored = [_scored("v0", [0.1] * 4 + [0.7] * 4 + [0.1] * 12), _scored("v1", [0.1] * 8 + [0.9] * 2 + [0.1] * 10)]
    labels, prob, kinds = bs.step_labels(composed, scored)
    assert labels.sum() == 4 and set(kinds[labels > 0]) == {"fall"} and len(prob) == 40
    r = bs.ranking_scores(composed, scored)  # the 0.9 blip outranks the threat: 2 of 36 negatives above it
    assert r["auc"] == pytest.approx(1 - 2 / 36) and r["by_kind"] == {"fall": r["auc"]}


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(bs.BootstrapError, match="does not exist"):
        bs.compose_set("x", [bs.SourceWindow(str(tmp_path / "missing.mp4"))], 1, 0, tmp_path)
    with pytest.raises(bs.BootstrapError, match="clip_s_range"):
        bs.compose_set("x", [bs.SourceWindow(str(SAMPLE))], 1, 0, tmp_path, clip_s_range=(3.0, 4.0))
    with pytest.raises(bs.BootstrapError, match="manifest"):
        bs.load_set(tmp_path)
    with pytest.raises(bs.BootstrapError, match="train_log"):
        bs.loss_summary(tmp_path)


@pytest.mark.slow
def test_bootstrap_end_to_end_on_short_composed_clips_with_a_tiny_model(tmp_path, monkeypatch):
    if not SAMPLE.is_file():
        pytest.skip(f"{SAMPLE} is absent (python assets/make_sample.py)")
    from uprm.compose.cache import code_fingerprint
    from uprm.model import build_model
    from uprm.perception import BACKGROUND_DIM, COARSE_DIM
    from uprm.video import file_sha256

    composed = bs.compose_set("e2e", [bs.SourceWindow(str(SAMPLE), 0.0, 30.0)], 2, 7, tmp_path / "set", (6.0, 6.5))
    assert [c.video_id for c in composed.clips] == ["e2e_s7_000", "e2e_s7_001"]
    # a clip whose plan names other compositor code (or another plan) is composed again, here into the same
    # pixels (composing is deterministic); a clip whose plan matches is reused from disk
    first, second = Path(composed.clips[0].path), Path(composed.clips[1].path)
    old_gt = json.loads(first.with_suffix(".json").read_text())
    assert old_gt["plan"]["code"] == code_fingerprint()
    old_gt["plan"]["code"] = "older compositor code"
    first.with_suffix(".json").write_text(json.dumps(old_gt))
    before = {p: (p.stat().st_mtime_ns, file_sha256(p)) for p in (first, second)}
    again = bs.compose_set("e2e", [bs.SourceWindow(str(SAMPLE), 0.0, 30.0)], 2, 7, tmp_path / "set", (6.0, 6.5))
    assert again.clips == composed.clips  # deterministic by seed
    assert first.stat().st_mtime_ns != before[first][0] and file_sha256(first) == before[first][1]  # recomposed
    assert second.stat().st_mtime_ns == before[second][0]  # reused
    assert json.loads(first.with_suffix(".json").read_text())["plan"]["code"] == code_fingerprint()
    assert bs.load_set(tmp_path / "set").clips == composed.clips
    # the same plans compose the same pixels wherever they are written: one fingerprint (the evaluation
    # records it, so two builds can tell whether they trained on the same clips)
    twin = bs.compose_set("e2e", [bs.SourceWindow(str(SAMPLE), 0.0, 30.0)], 2, 7, tmp_path / "set2", (6.0, 6.5))
    assert twin.fingerprint() == bs.load_set(tmp_path / "set").fingerprint()
    assert len(twin.fingerprint()) == 64 and twin.fingerprint() != bs.ComposedSet("x", tmp_path, 7, twin.clips[:1]).fingerprint()
    gt = json.loads(composed.gt_path.read_text())["database"]
    assert set(gt) == {"e2e_s7_000", "e2e_s7_001"}
    # a set of named events (e.g. hard negatives): exactly those in every clip, recorded in the plan
    (chat,) = bs.compose_set("hn", [bs.SourceWindow(str(SAMPLE), 0.0, 30.0)], 1, 8, tmp_path / "hn", (6.0, 6.5),
                             events=("chat",)).clips
    assert chat.harmless == ("chat",) and chat.segments_s == ()
    assert json.loads(Path(chat.path).with_suffix(".json").read_text())["plan"]["events"] == ["chat"]

    # default settings and cache, as the trainer reads them (the clips are deterministic: cached next time)
    ev, seconds = bs.perceive_set(composed)
    assert len(ev) == 2 and seconds > 0
    data = bs.write_instructions(composed, tmp_path / "set" / "instructions.json")

    # a tiny model sized for the real perception vectors (its random LM needs no download)
    init = tmp_path / "init"
    build_model("tiny", d_bg=BACKGROUND_DIM, d_coarse=COARSE_DIM).save_pretrained(init)
    warm = bs.run_training(bs.TrainRecipe(lr=1e-3, epochs=3, batch_size=2, threat_only=True), [data],
                           tmp_path / "warm", init=init)
    assert warm.log["steps"] == 3 and warm.log["last"]["loss_ce"] is None  # 2 clips, batch 2: a step an epoch
    assert "--threat-only" in warm.argv
    # the language model did not run: its adapter is exactly the initial one (alpha variants share it)
    from safetensors.torch import load_file

    a, b = (load_file(str(d / "lora_adapter" / "adapter_model.safetensors")) for d in (init, warm.out_dir))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    run = bs.run_training(bs.TrainRecipe(lr=1e-3, max_steps=2, batch_size=2), [data], tmp_path / "run",
                          init=warm.out_dir)
    assert run.log["steps"] == 2 and run.log["first"]["loss_ce"] is not None
    assert run.argv[:5] == ["python", "-m", "uprm", "train", "--stage"]
    # reuse: the same command, data and initial weights return the finished run without training again
    import uprm.__main__ as cli

    trained = []
    monkeypatch.setattr(cli, "main", lambda argv, _main=cli.main: trained.append(argv) or _main(argv))
    again = bs.run_training(bs.TrainRecipe(lr=1e-3, max_steps=2, batch_size=2), [data], tmp_path / "run",
                            init=warm.out_dir, reuse=True)
    assert trained == [] and again.elapsed_s == run.elapsed_s and again.log == run.log
    # other data (or other initial weights) is a different run: reuse does not pick up the stale one
    data.write_text(data.read_text() + "\n")
    bs.run_training(bs.TrainRecipe(lr=1e-3, max_steps=2, batch_size=2), [data], tmp_path / "run",
                    init=warm.out_dir, reuse=True)
    assert len(trained) == 1

    files = bs.ship_checkpoint(run.out_dir, tmp_path / "ship", "tiny-bootstrap-test")
    assert set(files) == {"config.json", "uprm.safetensors", "lora_adapter/adapter_config.json",
                          "lora_adapter/adapter_model.safetensors"}
    model = build_model(str(tmp_path / "ship"))
    assert model.model_id == "tiny-bootstrap-test"
    scored = [bs.score_video(model, ev[c.path], c.video_id) for c in composed.clips]
    assert all(s.prob.shape == s.times_s.shape and s.gates.shape == (len(s.prob), 4) for s in scored)
    g = scored[0].gates  # R_hpe, R_ore, R_vbe, 1 - G with G = max R
    np.testing.assert_allclose(g[:, 3], 1 - g[:, :3].max(-1), atol=1e-5)
    threshold, table = bs.tune_threshold(composed, scored)
    row = bs.detection_scores(composed, scored, threshold)
    assert set(row) >= {"fnr", "f2", "map", "map_avg"} and set(row["map"]) == {"0.1", "0.3", "0.5"}
    pairs = bs.cause_pairs(model, composed, ev, {s.video_id: s for s in scored}, 0.0, max_new_tokens=4)
    assert len(pairs) == sum(len(c.segments_s) for c in composed.clips)
    assert all(p["reference"].startswith("The threat is attributed to") for p in pairs)


def test_a_run_begun_from_a_preset_is_stale_once_the_preset_changes(tmp_path, monkeypatch):
    from uprm.model import UPRMConfig

    data = tmp_path / "data.json"
    data.write_text("[]")
    what = ["train", "--data", str(data)]
    key = bs.run_key(what, [data], "small-untrained")
    assert bs.run_key(what, [data], "small-untrained") == key
    assert bs.run_key(what, [data], "tiny") != key
    small = UPRMConfig.small
    monkeypatch.setattr(UPRMConfig, "small", classmethod(lambda cls, **o: small(**{"threat_context_steps": 5, **o})))
    assert bs.run_key(what, [data], "small-untrained") != key
