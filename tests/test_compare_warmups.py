"""assets/compare_warmups.py: how candidates are written on its command line, and the over-fit measure it
prints (the share of sure steps on pasted harmless walkers and on the rest of the threat-free time)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from uprm import bootstrap as bs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "assets"))
compare = pytest.importorskip("compare_warmups")


def test_candidates_are_a_name_and_recipe_overrides_in_json():
    assert compare.parse_candidate("plain") == ("plain", {})
    assert compare.parse_candidate("aug:augment=1.5,expert_dropout=0.1") == ("aug", {"augment": 1.5,
                                                                                     "expert_dropout": 0.1})
    assert compare.parse_candidate('abl:ablation=["no_vbe","no_ptr"],epochs=32') == (
        "abl", {"ablation": ["no_vbe", "no_ptr"], "epochs": 32})


@pytest.mark.parametrize("text, says", [("aug:augmnet=1", "keys from"), ("aug:seed=3", "keys from"),
                                        ("aug:augment", "keys from"), ("aug:augment=high", "not a JSON value"),
                                        (":augment=1", "a name")])
def test_a_malformed_candidate_is_a_one_line_error_naming_it(text, says):
    with pytest.raises(SystemExit) as e:
        compare.parse_candidate(text)
    assert says in str(e.value) and repr(text) in str(e.value)


def test_the_bench_uses_the_build_scripts_own_sets_recipe_and_grid():
    b = compare.b
    assert b is sys.modules["build_default_model"]
    assert b.THREAT_RECIPE.threat_only and b.WARMUP_EPOCHS and "thresholds" in b.RULE_GRID


def _clip(tmp_path, vid: str, segments) -> bs.ClipRecord:
    return bs.ClipRecord(vid, str(tmp_path / f"{vid}.mp4"), 10.0, 10.0, "x.mp4", 0.0, 0, tuple(segments),
                         ("fall",) * len(segments), ("c",) * len(segments), ("normal_walk",))


def test_sure_shares_split_threat_free_steps_into_walkers_and_the_rest_and_skip_threat_steps(tmp_path):
    composed = bs.ComposedSet("val", tmp_path, 0, [_clip(tmp_path, "a", [(6.0, 8.0)]), _clip(tmp_path, "b", [])])
    database = {"a": {"composition": {"harmless": [{"kind": "normal_walk", "start_s": 0.0, "end_s": 4.0}]}},
                "b": {"composition": {"harmless": [{"kind": "pass_by", "start_s": 5.0, "end_s": 7.0}]}}}
    composed.gt_path.write_text(json.dumps({"database": database}))
    spans = compare.harmless_spans(composed)
    assert spans == {"a": [(0.0, 4.0)], "b": [(5.0, 7.0)]}
    times = np.arange(0.25, 10.0, 0.5)  # 20 steps at 2 fps
    prob_a = np.where(times < 4.0, 0.95, 0.1)  # sure on its walker (8 steps) ...
    prob_a[(times >= 6.0) & (times < 8.0)] = 0.99  # ... and on its threat, which neither share counts
    prob_b = np.where(times >= 9.0, 0.92, 0.2)  # sure on 2 steps away from its walker
    scored = [bs.Scored(v, 10.0, 0.5, times, p, np.zeros((20, 4))) for v, p in (("a", prob_a), ("b", prob_b))]
    shares = compare.sure_shares(composed, scored, spans)
    assert shares["harmless_steps"] == 8 + 4 and shares["harmless_sure"] == pytest.approx(8 / 12)
    assert shares["other_free_steps"] == (20 - 8 - 4) + (20 - 4)
    assert shares["other_free_sure"] == pytest.approx(2 / 24)


def test_the_mean_of_the_starts_averages_each_clips_probabilities_and_keeps_the_rest():
    times = np.array([0.25, 0.75])
    runs = [[bs.Scored("a", 1.0, 0.5, times, np.array([p, 0.0]), np.zeros((2, 4)))] for p in (0.2, 0.4, 0.9)]
    (mean,) = compare.mean_of(runs)
    assert mean.video_id == "a" and np.allclose(mean.prob, [0.5, 0.0]) and mean.times_s is times
    assert np.allclose(runs[0][0].prob, [0.2, 0.0])  # the runs' own scores are left as they were


def test_the_paired_line_sets_each_start_beside_the_same_start_of_the_first_candidate():
    def row(name, seed, objective, fnr, auc):
        return {"candidate": name, "seed": seed, "objective": objective, "fnr": fnr, "auc": auc}

    base = [row("plain", 0, 0.60, 0.30, 0.78), row("plain", 1, 0.57, 0.45, 0.75)]
    text = compare.paired_line(base, [row("drop", 1, 0.66, 0.25, 0.80), row("drop", 2, 0.9, 0.1, 0.9)])
    assert text == ("drop minus plain, start by start (seeds 1): objective +0.090  fnr -0.200  auc +0.050")
