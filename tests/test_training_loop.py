"""The correction loop end to end on real clips cut from vtest.avi (perception: detector, pose,
tracker, scene graph), with a real annotation store; and stage-1 instructions from that evidence."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from uprm.training import (
    PerceptionFeatures, TrainingCancelled, TrainingDataError, list_versions, run_correction_loop,
)
from uprm.training.loop import promotion_verdict
from uprm.training.registry import Registry

SHARED = Path(__file__).resolve().parents[2] / "shared"
CLIP_STARTS = (0, 150, 300, 450)  # frames of vtest (10 fps): four 3-second clips
LOOP_ARGS = dict(base="tiny", heldout_fraction=0.5, batch_size=2, epochs=3, lr=1e-3, num_threads=1)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    vtest = SHARED / "media" / "vtest.avi"
    if not vtest.is_file():
        pytest.skip(f"{vtest} is absent (the shared folder sits beside the repository)")
    from uprm.video import cut_clips

    return cut_clips(vtest, CLIP_STARTS, 30, tmp_path_factory.mktemp("clips"), 10.0, max_side=384, prefix="vtest_")


@pytest.fixture(scope="module")
def perception(tmp_path_factory):
    from uprm.perception import PerceptionSettings

    return PerceptionSettings(layers={"pose", "relations"}), tmp_path_factory.mktemp("evidence")


def _store(path: Path, clips: list[Path]):
    from annotations import Store
    from uprm.video import probe

    store = Store(path)
    for i, clip in enumerate(clips):
        vid = store.add_video(probe(clip))
        if i % 2 == 0:  # corrections: a threat the model missed in every other clip
            store.add_segment(vid, 1.0, 2.5, "alice", cause="a person runs into the crowd")
        store.mark_reviewed(vid, "alice")
    return store


@pytest.mark.slow
def test_the_loop_registers_a_version_with_before_and_after_scores(tmp_path, clips, perception):
    from uprm.model import build_model
    from uprm.training.loop import predict_segments

    settings, cache = perception
    store = _store(tmp_path / "annotations.db", clips)
    seen: list[tuple[str, float]] = []
    v1 = run_correction_loop(store, tmp_path / "models", progress=lambda s, f: seen.append((s, f)),
                             perception_settings=settings, cache_dir=cache, **LOOP_ARGS)
    assert [v.version_id for v in list_versions(tmp_path / "models")] == ["v0001"]
    assert v1.parent == "tiny" and v1.base == "tiny"
    names = {p.stem for p in clips}
    assert set(v1.data.train_videos) | set(v1.data.heldout_videos) == names
    assert not set(v1.data.train_videos) & set(v1.data.heldout_videos)
    assert v1.data.heldout_segments == 1 and v1.data.train_segments == 1  # stratified: a threat on each side
    assert v1.data.train_examples == 5  # 2 turns per clip, 3 with the cause
    for scores in (v1.before, v1.after):
        assert scores.n_videos == 2 and scores.n_gt == 1
        assert set(scores.map_at) == {"0.1", "0.3", "0.5"} and scores.average_map is not None
        assert scores.fnr is not None and scores.f2 is not None
        assert set(scores.per_video) == set(v1.data.heldout_videos)
    assert v1.train["steps"] == 9 and v1.train["final"]["loss"] > 0
    assert v1.train["settings"]["lr"] == 1e-3 and v1.train["settings"]["fusion_lr"] is None  # one rate, as asked
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert [s for s, _ in seen][-1] == "register"
    # promoted exactly when the verdict on its held-out scores says so, and the reason is kept
    assert (v1.promoted, v1.promotion) == promotion_verdict(v1.after, v1.before)
    assert Registry(tmp_path / "models").get("v0001").promotion == v1.promotion

    # the registered checkpoint is the model that was scored
    model = build_model(v1.checkpoint)
    feats = PerceptionFeatures(model.config, settings, cache)
    for vid, detail in v1.after.per_video.items():
        segs, _ = predict_segments(model, feats(vid, str(next(p for p in clips if p.stem == vid))), vid)
        assert [[s.start_s, s.end_s, s.score] for s in segs] == detail["pred"]
    assert not (Path(v1.checkpoint) / "checkpoints").exists()  # intermediate checkpoints are cleaned up

    # a second round starts from the current version (or the preset when v1 was not promoted)
    current = Registry(tmp_path / "models").current()
    v2 = run_correction_loop(store, tmp_path / "models", perception_settings=settings, cache_dir=cache,
                             promote="always", **{**LOOP_ARGS, "epochs": 1})
    assert v2.version_id == "v0002" and v2.parent == (current.version_id if current else "tiny")
    assert Registry(tmp_path / "models").current().version_id == "v0002"
    assert v2.promoted and v2.promotion.startswith("promote='always' (held-out average mAP")

    # cancelled half-way through training: nothing registered, no folder left behind
    cancel = threading.Event()

    def stop_in_training(stage: str, fraction: float) -> None:
        if stage == "train":
            cancel.set()

    with pytest.raises(TrainingCancelled):
        run_correction_loop(store, tmp_path / "models", progress=stop_in_training, cancel=cancel,
                            perception_settings=settings, cache_dir=cache, **LOOP_ARGS)
    assert [v.version_id for v in list_versions(tmp_path / "models")] == ["v0001", "v0002"]
    assert sorted(p.name for p in (tmp_path / "models" / "versions").iterdir()) == ["v0001", "v0002"]


@pytest.mark.slow
def test_the_loop_teaches_the_kind_head_the_corrected_categories(tmp_path, clips, perception):
    """Categories annotators gave refit the kind head (those it has a kind for); the rest are listed, not
    learnt; the held-out segments' categories are scored before and after, as the registered model names them."""
    from annotations import Store
    from uprm.model import build_model
    from uprm.training.data import labelled_events
    from uprm.training.loop import _kind_calls
    from uprm.video import probe

    settings, cache = perception
    base = build_model("tiny", event_kinds=("fall", "loiter")).save_pretrained(tmp_path / "base")
    store = Store(tmp_path / "a.db", categories=("fall", "loiter", "Fighting"))
    for i, clip in enumerate(clips):
        vid = store.add_video(probe(clip))
        store.add_segment(vid, 0.5, 1.5, "alice", label="loiter" if i % 2 else "fall", cause="someone lingers")
        store.add_segment(vid, 2.0, 2.8, "alice", label="Fighting", cause="two people fight")
        store.mark_reviewed(vid, "alice")
    loop_args = {k: x for k, x in LOOP_ARGS.items() if k != "lr"}  # the loop's own rates
    v = run_correction_loop(store, tmp_path / "models", perception_settings=settings, cache_dir=cache,
                            promote="always", **{**loop_args, "base": str(base)})
    assert (v.train["settings"]["lr"], v.train["settings"]["fusion_lr"]) == (1e-4, 2e-5)
    k = v.train["kind_head"]
    assert k["refit"] and k["segments"] == 2 and k["other_categories"] == ["Fighting"]
    assert sum(k["steps_by_kind"].values()) > 0
    for scores in (v.before, v.after):
        assert scores.kinds_of == 2 and 0 <= scores.kinds_right <= 2  # "Fighting" has no kind: not scored
    model = build_model(v.checkpoint)
    start = build_model(str(base))
    assert any(not torch.equal(a, b) for a, b in zip(model.kind_head.state_dict().values(),
                                                      start.kind_head.state_dict().values()))
    events = labelled_events(v.data.export_path)
    feats = PerceptionFeatures(model.config, settings, cache)
    path = {p.stem: str(p) for p in clips}
    named = [c for vid in v.data.heldout_videos for c in _kind_calls(model, feats(vid, path[vid]), events[vid])]
    assert sum(a == b for a, b in named) == v.after.kinds_right  # the registered head is the one scored
    taught = [c for vid in v.data.train_videos for c in _kind_calls(model, feats(vid, path[vid]), events[vid])]
    assert all(a == b for a, b in taught)  # it learnt the corrected categories it was shown


@pytest.mark.slow
def test_the_loop_needs_two_reviewed_videos(tmp_path, clips, perception):
    from annotations import Store
    from uprm.video import probe

    store = Store(tmp_path / "a.db")
    vid = store.add_video(probe(clips[0]))
    store.mark_reviewed(vid, "alice")
    store.add_video(probe(clips[1]))  # not reviewed: not exported
    with pytest.raises(TrainingDataError, match="review at least 2"):
        run_correction_loop(store, tmp_path / "models", base="tiny", perception_settings=perception[0],
                            cache_dir=perception[1])
    ref = store.add_video(name="Abuse028_x264", fps=30.0, duration_s=20.0)  # a dataset reference, no file
    store.add_segment(ref, 5.5, 8.0, "alice")
    store.mark_reviewed(ref, "alice")
    with pytest.raises(TrainingDataError, match="have their file on this machine"):
        run_correction_loop(store, tmp_path / "models", base="tiny", perception_settings=perception[0],
                            cache_dir=perception[1])
    assert list_versions(tmp_path / "models") == []
    assert not list((tmp_path / "models" / "versions").iterdir())  # failed runs leave no folder


@pytest.mark.slow
def test_stage1_instructions_from_real_evidence(clips, perception):
    from uprm.perception import perceive
    from uprm.training.stage1 import evidence_instructions

    settings, cache = perception
    evidence = perceive(clips[1], settings, cache_dir=cache)
    examples = evidence_instructions(evidence)
    kinds = [ex.kind for ex in examples]
    assert kinds.count("background") == 1 and 1 <= kinds.count("region") <= 3
    region = next(ex for ex in examples if ex.kind == "region")
    assert region.question.startswith("Analyze the designated area [")
    assert region.question.endswith("and the actions depicted in the video")
    assert region.answer.startswith("A person ") and "s to " in region.answer  # what vtest holds: pedestrians
    background = next(ex for ex in examples if ex.kind == "background")
    people = round(sum(int(f.is_person.sum()) for f in evidence.frames) / len(evidence.frames))
    assert f"about {people} people" in background.answer or people < 2
    motions = [ex for ex in examples if ex.kind == "motion"]
    assert all(("upright" in ex.answer or "bending" in ex.answer or "lying" in ex.answer) for ex in motions)
    assert all(ex.video_path == str(clips[1]) and ex.threat_intervals_s is None for ex in examples)
