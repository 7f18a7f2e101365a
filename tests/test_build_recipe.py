"""The default model's build recipe (assets/build_default_model.py): which footage each model and each
set may come from. The fold twins pick the warm-up length and every decision rule on the validation set,
so that footage must be new to them; the held-out footage must be new to every model and rule."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from uprm import bootstrap as bs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "assets"))
recipe = pytest.importorskip("build_default_model")


def _span(windows: list[bs.SourceWindow]) -> list[tuple[str, float, float]]:
    return sorted((Path(w.path).name, w.start_s, w.end_s) for w in windows)


def test_fold_and_validation_windows_split_the_training_footage_without_overlap():
    (name, lo, hi), = _span(recipe.TRAIN_WINDOWS)
    fold, val = _span(recipe.FOLD_WINDOWS), _span(recipe.VAL_WINDOWS)
    assert {w[0] for w in fold + val} == {name}
    # together they cover the training window; apart, the fold twins never see a validation second
    assert sorted(fold + val, key=lambda w: w[1])[0][1] == lo and max(w[2] for w in fold + val) == hi
    for _, f_lo, f_hi in fold:
        for _, v_lo, v_hi in val:
            assert f_hi <= v_lo or v_hi <= f_lo, f"fold {f_lo}-{f_hi} s overlaps validation {v_lo}-{v_hi} s"
    assert sum(h - lo_ for _, lo_, h in fold + val) == pytest.approx(hi - lo)


def test_held_out_footage_is_the_first_30_s_which_no_model_trains_on():
    (held,) = recipe.TEST_WINDOWS
    assert Path(held.path).name == "sample_vtest_30s.mp4"  # vtest.avi 0-30 s (assets/make_sample.py)
    assert all(w.start_s >= 30.0 for w in recipe.TRAIN_WINDOWS + recipe.FOLD_WINDOWS + recipe.VAL_WINDOWS)


def test_validation_and_held_out_draws_have_their_own_seeds_and_folders_and_pool_in_order(tmp_path):
    seeds = recipe.S_TESTS
    every = [recipe.S_TRAIN, recipe.S_CHAT_VAL, *recipe.S_VALS, *recipe.S_TESTS]
    assert len(seeds) >= 3 and len(recipe.S_VALS) >= 3 and len(set(every)) == len(every)
    for name, draws in (("heldout", seeds), ("val", recipe.S_VALS)):
        folders = [recipe.draw_dir(tmp_path, name, draws, s) for s in draws]
        assert folders[0] == tmp_path / name and len(set(folders)) == len(folders)

    def draw(seed: int) -> bs.ComposedSet:
        clip = bs.ClipRecord(f"heldout_s{seed}_000", str(tmp_path / f"{seed}.mp4"), 10.0, 10.0, "x.mp4", 0.0, seed,
                             (), (), (), ())
        return bs.ComposedSet("heldout", tmp_path / str(seed), seed, [clip])

    sets = recipe.Sets(train=draw(1), fold=draw(2), val=draw(3), heldout_draws=[draw(s) for s in seeds])
    assert [c.seed for c in sets.heldout.clips] == list(seeds)


def test_each_run_has_its_fold_twin_beside_it(tmp_path):
    assert recipe.fold_dir(tmp_path / "runs" / "default") == tmp_path / "runs" / "fold" / "default"
    assert recipe.fold_dir(tmp_path / "runs" / "alpha_0.2") == tmp_path / "runs" / "fold" / "alpha_0.2"


def test_a_joined_set_scores_as_one_and_keeps_each_clips_files(tmp_path):
    def clip(i: int, folder: str) -> bs.ClipRecord:
        return bs.ClipRecord(f"v{i}", str(tmp_path / folder / f"v{i}.mp4"), 10.0, 10.0, "x.mp4", 0.0, i,
                             ((1.0, 3.0),) if i % 2 else (), ("fall",) if i % 2 else (), ("c",) if i % 2 else (), ())

    a = bs.ComposedSet("val", tmp_path / "val", 3000, [clip(0, "val"), clip(1, "val")], 2.0)
    b = bs.ComposedSet("val_chat", tmp_path / "val_chat", 3100, [clip(2, "val_chat")], 1.5)
    both = a.joined(b)
    assert [c.video_id for c in both.clips] == ["v0", "v1", "v2"] and both.compose_s == 3.5
    assert (both.name, both.out_dir, both.seed) == ("val", tmp_path / "val", 3000)
    assert both.clips[2].path == str(tmp_path / "val_chat" / "v2.mp4")
    assert both.summary()["clips"] == 3 and a.clips == [clip(0, "val"), clip(1, "val")]  # a is unchanged


def test_a_recipe_passes_expert_dropout_to_the_training_command_only_when_set(tmp_path):
    data = [tmp_path / "d.json"]
    assert "--expert-dropout" not in bs.TrainRecipe().cli_args(data, tmp_path / "o")
    argv = bs.TrainRecipe(expert_dropout=0.3).cli_args(data, tmp_path / "o")
    assert argv[argv.index("--expert-dropout") + 1] == "0.3"


def test_a_recipe_passes_augmentation_only_when_on(tmp_path):
    data = [tmp_path / "d.json"]
    assert "--augment" not in bs.TrainRecipe().cli_args(data, tmp_path / "o")  # old runs keep their keys
    argv = bs.TrainRecipe(augment=1.0).cli_args(data, tmp_path / "o")
    assert argv[argv.index("--augment") + 1] == "1.0"


def test_warm_up_starts_are_their_own_random_draws_and_sit_beside_the_default(tmp_path):
    import torch
    from safetensors.torch import load_file

    runs = tmp_path / "runs"
    assert recipe.seed_run_dir(runs, 24, 0) == runs / "warmup_e24"  # seed 0 is the default's own warm-up
    assert recipe.seed_run_dir(runs, 24, 2) == runs / "warmup_e24_seed2"
    # w/o PTR from the same starts, each beside its full twin's: seed 0 is the ablation row's own run
    assert recipe.no_ptr_run_dir(runs, 0) == runs / "warmup_no_ptr"
    assert recipe.no_ptr_run_dir(runs, 2) == runs / "warmup_no_ptr_seed2"
    assert recipe.START_SEEDS[0] == 0 and len(set(recipe.START_SEEDS)) == len(recipe.START_SEEDS) > 1
    assert recipe.start_init(tmp_path, 0) == "small-untrained"  # the preset, drawn by the training command
    assert recipe.start_init(tmp_path, 1) == recipe.seed_init(tmp_path, 1)
    one = recipe.seed_init(tmp_path, 1)
    weights = load_file(one / "uprm.safetensors")
    mtime = (one / "uprm.safetensors").stat().st_mtime_ns
    assert recipe.seed_init(tmp_path, 1) == one and (one / "uprm.safetensors").stat().st_mtime_ns == mtime  # saved once
    again = load_file(recipe.seed_init(tmp_path / "elsewhere", 1) / "uprm.safetensors")
    other = load_file(recipe.seed_init(tmp_path, 2) / "uprm.safetensors")
    assert weights.keys() == again.keys() == other.keys()
    assert all(torch.equal(weights[k], again[k]) for k in weights)  # reproducible from scratch
    assert any(not torch.equal(weights[k], other[k]) for k in weights)  # another seed, another start


def test_a_seed_spread_start_is_drawn_again_when_the_small_preset_changes(tmp_path, monkeypatch):
    from uprm.model import UPRMConfig

    before = recipe.seed_init(tmp_path, 1)
    small = UPRMConfig.small
    monkeypatch.setattr(UPRMConfig, "small", classmethod(lambda cls, **o: small(**{"threat_context_steps": 3, **o})))
    after = recipe.seed_init(tmp_path, 1)
    assert after != before
    assert json.loads((after / "config.json").read_text())["threat_context_steps"] == 3
    # a new decision-rule default is picked after training: the same start, not a new draw
    monkeypatch.setattr(UPRMConfig, "small", classmethod(lambda cls, **o: small(**{"threat_threshold": 0.8, **o})))
    assert recipe.seed_init(tmp_path, 1) == before


def test_the_start_is_the_one_whose_fold_twin_scored_best_on_validation_ties_to_the_lower_seed():
    # the objectives of the session-13 clean rebuild's three starts: seed 2 (0.680) is picked
    assert recipe.pick_start([{"seed": 0, "objective": 0.561}, {"seed": 1, "objective": 0.635},
                              {"seed": 2, "objective": 0.680}]) == 2
    assert recipe.pick_start([{"seed": 2, "objective": 0.6}, {"seed": 0, "objective": 0.6},
                              {"seed": 1, "objective": 0.5}]) == 0
    assert recipe.pick_start([{"seed": 1, "objective": 0.3}]) == 1
    with pytest.raises(bs.BootstrapError, match="START_SEEDS"):
        recipe.pick_start([])


def test_the_evaluation_scores_each_held_out_draw_on_its_own_and_their_mean(tmp_path):
    import numpy as np

    evaluation = pytest.importorskip("evaluate_default_model")

    def draw(seed: int, found: bool) -> tuple[bs.ComposedSet, bs.Scored]:
        vid = f"heldout_s{seed}_000"
        clip = bs.ClipRecord(vid, str(tmp_path / f"{vid}.mp4"), 10.0, 10.0, "x.mp4", 0.0, seed, ((2.0, 6.0),),
                             ("fall",), ("c",), ())
        times = np.arange(0.25, 10.0, 0.5)
        prob = np.where((times > 2.0) & (times < 6.0), 0.95 if found else 0.05, 0.05)
        return (bs.ComposedSet("heldout", tmp_path, seed, [clip]),
                bs.Scored(vid, 10.0, 0.5, times, prob, np.full((len(times), 4), 0.25)))

    (a, sa), (b, sb) = draw(2000, True), draw(2001, False)
    out = evaluation.draw_rows([a, b], [sa, sb], bs.DecisionRule(0.5, 1.0, 0.0))
    rows = {r["seed"]: r for r in out["draws"]}
    assert rows[2000]["fnr"] == 0.0 and rows[2000]["map"]["0.5"] == 1.0 and rows[2000]["threat_events"] == 1
    assert rows[2001]["fnr"] == 1.0 and rows[2001]["map"]["0.5"] == 0.0
    assert out["mean"]["fnr"] == 0.5 and out["mean"]["map"]["0.5"] == 0.5
