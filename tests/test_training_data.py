"""Training data: conversation JSON from the real annotation exports, per-step targets, the split,
stage-1 loaders in their documented shapes, the model registry, and settings validation."""
from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest

from uprm.instructions import ATTRIBUTE, IDENTIFY, LOCATE
from uprm.training import (
    DataSummary, EvalScores, ModelVersion, Registry, RegistryError, TrainingDataError, TrainSettings,
    list_versions, load_conversations, split_by_video, step_targets,
)
from uprm.training.data import (
    detect_format, examples_from_conversations, labelled_events, load_training_files, video_intervals,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="module")
def ucf_export(tmp_path_factory) -> tuple[Path, object]:
    """The real UCF-Crime temporal annotations through the store and its LLaVA export."""
    ucf = SHARED / "data" / "ucf_crime" / "Temporal_Anomaly_Annotation.txt"
    cuva = SHARED / "data" / "cuva" / "gt_Causev1.json"
    if not (ucf.is_file() and cuva.is_file()):
        pytest.skip(f"reference data {ucf} / {cuva} is absent (the shared folder sits beside the repository)")
    from annotations import Store
    from annotations.formats import export, import_file

    store = Store(":memory:")
    import_file(store, "ucf_crime", ucf)
    # a real CUVA cause on one UCF video, so the attribute turn is exercised with real text
    cause = json.loads(cuva.read_text())[0]["answer"]
    vid = store.find_video("Abuse028_x264")
    seg = store.current_segments(vid)[0]
    store.edit_cause(seg.id, cause, "alice")
    out = tmp_path_factory.mktemp("export")
    result = export(store, "llava", out, name="ucf")
    return result.paths[0], store


def test_real_export_becomes_examples_with_the_stores_intervals(ucf_export):
    path, store = ucf_export
    examples = load_conversations(path)
    intervals = video_intervals(examples)
    assert len(intervals) == 290
    for name in ("Abuse028_x264", "Arrest024_x264", "Normal_Videos_003_x264"):
        video = store.video_by_name(name)
        if video is None:
            continue
        expected = [(s.start_s, s.end_s) for s in store.current_segments(video.id) if s.status == "accepted"]
        got = intervals[name]
        assert len(got) == len(expected)
        for (a, b), (c, d) in zip(got, expected):  # the export writes 0.1 s: 165 / 30 = 5.5 s exactly
            assert abs(a - c) <= 0.05 and abs(b - d) <= 0.05
    assert intervals["Abuse028_x264"] == ((5.5, 8.0),)  # frames 165-240 at 30 fps
    normals = [v for v, iv in intervals.items() if v.startswith("Normal")]
    assert normals and all(intervals[v] == () for v in normals)
    abuse = [ex for ex in examples if ex.video_id == "Abuse028_x264"]
    assert [ex.kind for ex in abuse] == ["identify", "locate", "attribute"]
    assert abuse[0].question == IDENTIFY and "<video>" not in abuse[0].question
    assert abuse[2].question == ATTRIBUTE and "masked people" in abuse[2].answer
    assert abuse[2].span_s == (5.5, 8.0) and abuse[0].span_s is None
    assert Path(abuse[0].video_path).name == "Abuse028_x264.mp4"


def test_the_exports_categories_are_the_events_the_kind_head_learns_from(ucf_export):
    path, store = ucf_export
    events = labelled_events(path)
    abuse = store.video_by_name("Abuse028_x264")
    assert [s.label for s in store.current_segments(abuse.id)] == ["Abuse"]
    assert events["Abuse028_x264"] == ((5.5, 8.0, "Abuse"),)
    assert not any(v.startswith("Normal") for v in events)  # no segment, no event
    assert len(events) == sum(1 for iv in video_intervals(load_conversations(path)).values() if iv)


def test_step_targets_are_overlap_fractions_of_centred_steps():
    times = [0.25, 0.75, 1.25, 1.75, 2.25]
    got = step_targets(times, 0.5, [(1.0, 2.0)])
    assert got == [0.0, 0.0, 1.0, 1.0, 0.0]
    got = step_targets(times, 0.5, [(0.9, 1.1), (1.0, 1.2), (2.4, 9.0)])  # overlaps merge: never above 1
    assert got[2] == pytest.approx(0.4) and got[4] == pytest.approx(0.2) and max(got) <= 1.0
    assert step_targets(times, 0.5, []) == [0.0] * 5
    with pytest.raises(TrainingDataError):
        step_targets(times, 0.0, [])


def test_extra_segments_key_and_unknown_intervals():
    entries = [
        {"id": "a", "video": "a.mp4", "segments": [[1, 2], {"start_s": 4, "end_s": 5}],
         "conversations": [{"from": "human", "value": "<video>\nWhat happens?"},
                           {"from": "gpt", "value": "People walk."}]},
        {"id": "b", "video": "/abs/b.mp4",
         "conversations": [{"from": "human", "value": "<video>\nDescribe it"}, {"from": "gpt", "value": "A street."}]},
        {"id": "c", "video": "c.mp4",
         "conversations": [{"from": "human", "value": "<video>\n" + LOCATE},
                           {"from": "gpt", "value": "There is no threat in the video"}]},
    ]
    ex = examples_from_conversations(entries, "mem", json_dir="/data", video_root=None)
    assert ex[0].threat_intervals_s == ((1.0, 2.0), (4.0, 5.0)) and ex[0].video_path == "/data/a.mp4"
    assert ex[1].threat_intervals_s is None and ex[1].video_path == "/abs/b.mp4"  # unknown: no threat loss
    assert ex[2].threat_intervals_s == ()


@pytest.mark.parametrize("bad, message", [
    ({"id": "x"}, "conversations"),
    ({"id": "x", "conversations": [{"from": "human", "value": "hi"}]}, r"no \(human, gpt\) turn pair"),
    ({"id": "x", "segments": [[1]], "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
     "segments"),
])
def test_bad_entries_say_what_is_wrong(bad, message):
    with pytest.raises(TrainingDataError, match=message):
        examples_from_conversations([bad], "bad.json")


def test_malformed_and_missing_files(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('[{"id": "a",')
    with pytest.raises(TrainingDataError, match="malformed JSON at line 1"):
        load_conversations(p)
    with pytest.raises(TrainingDataError, match="no such file"):
        load_conversations(tmp_path / "nope.json")
    odd = tmp_path / "odd.json"
    odd.write_text('{"hello": 1}')
    with pytest.raises(TrainingDataError, match="cannot tell its format"):
        detect_format(odd)


def test_split_is_by_video_deterministic_and_stratified():
    ids = [f"v{i:02d}" for i in range(20)]
    pos = ids[:8]
    a = split_by_video(ids, 0.25, seed=3, positive=pos)
    assert a == split_by_video(list(reversed(ids)), 0.25, seed=3, positive=pos)
    train, held = a
    assert not set(train) & set(held) and set(train) | set(held) == set(ids)
    assert len(held) == 5 and sum(v in pos for v in held) == 2  # 25% of each group
    assert split_by_video(ids, 0.25, seed=4, positive=pos) != a
    t2, h2 = split_by_video(["a", "b"], 0.25, seed=0, positive=["a"])
    assert h2 == ["b"] and t2 == ["a"]  # the only threat video stays in training
    with pytest.raises(TrainingDataError, match="at least 2"):
        split_by_video(["a"], 0.25, 0)


# ------------------------------------------------------------------------------------- stage 1 loaders


@pytest.fixture(scope="module")
def vtest_frame(tmp_path_factory) -> Path:
    vtest = SHARED / "media" / "vtest.avi"
    if not vtest.is_file():
        pytest.skip(f"{vtest} is absent")
    import cv2

    from uprm.video import iter_frames

    for f in iter_frames(vtest):
        if f.frame_index == 150:
            path = tmp_path_factory.mktemp("img") / "vtest_150.jpg"
            cv2.imwrite(str(path), f.rgb()[:, :, ::-1])
            return path
    raise AssertionError("vtest.avi ended early")


def test_refcoco_both_shapes(tmp_path, vtest_frame):
    flat = tmp_path / "refs.json"
    flat.write_text(json.dumps([{"image": str(vtest_frame), "bbox": [384, 144, 77, 288],
                                 "sentences": ["woman in a dark coat walking", "the person in the middle"]}]))
    coco = tmp_path / "refs_coco.json"
    coco.write_text(json.dumps({
        "images": [{"id": 7, "file_name": vtest_frame.name, "width": 768, "height": 576}],
        "annotations": [{"id": 70, "image_id": 7, "bbox": [384, 144, 77, 288]}],
        "refs": [{"image_id": 7, "ann_id": 70, "sentences": [{"sent": "woman in a dark coat walking"}]}]}))
    a = load_training_files([flat])
    b = load_training_files([coco], video_root=vtest_frame.parent)
    assert len(a) == 2 and len(b) == 1
    assert a[0].question == b[0].question == (
        "Analyze the designated area [0.50, 0.25, 0.60, 0.75] and the actions depicted in the video")
    assert a[0].answer == "Woman in a dark coat walking." and a[0].kind == "region"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image": "missing.jpg", "bbox": [1, 2, 3, 4], "sentence": "x"}]))
    with pytest.raises(TrainingDataError, match="does not exist"):
        load_training_files([bad])


def test_rsicb_folders_and_still_clip(tmp_path, vtest_frame):
    import shutil

    from uprm.training.stage1 import still_clip
    from uprm.video import probe

    for cls in ("city_building", "grass"):
        (tmp_path / "rsi" / "construction land" / cls).mkdir(parents=True)
        shutil.copy(vtest_frame, tmp_path / "rsi" / "construction land" / cls / f"{cls}_1.jpg")
    ex = load_training_files([tmp_path / "rsi"])
    assert [e.answer for e in ex] == ["The background is city building.", "The background is grass."]
    clip = still_clip(ex[0].video_path, tmp_path / "stills")
    info = probe(clip)
    assert info.width == 768 and info.duration_s == pytest.approx(1.0, abs=0.01)
    assert still_clip(ex[0].video_path, tmp_path / "stills") == clip  # cached by content


def test_humanml3d_motion_is_upright_pose_inputs(tmp_path):
    from uprm.evidence import JOINT_NAMES
    from uprm.model.config import UPRMConfig
    from uprm.training.stage1 import motion_features

    # a standing skeleton (metres, y up) walking 1 m along x over 2 s at 20 fps
    t = np.arange(40)[:, None]
    height = {0: 0.95, 1: 0.9, 2: 0.9, 3: 1.05, 4: 0.5, 5: 0.5, 6: 1.2, 7: 0.08, 8: 0.08, 9: 1.35, 10: 0.02,
              11: 0.02, 12: 1.5, 13: 1.45, 14: 1.45, 15: 1.65, 16: 1.42, 17: 1.42, 18: 1.15, 19: 1.15, 20: 0.9, 21: 0.9}
    left, right = (1, 4, 7, 10, 13, 16, 18, 20), (2, 5, 8, 11, 14, 17, 19, 21)
    joints = np.zeros((40, 22, 3), np.float32)
    for j in range(22):
        offset = 0.15 if j in left else -0.15 if j in right else 0.0
        joints[:, j, 0] = offset + t[:, 0] / 40
        joints[:, j, 1] = height[j]
    (tmp_path / "h" / "new_joints").mkdir(parents=True)
    (tmp_path / "h" / "texts").mkdir()
    np.save(tmp_path / "h" / "new_joints" / "000001.npy", joints)
    (tmp_path / "h" / "texts" / "000001.txt").write_text(
        "a person walks forward slowly.#a/DET person/NOUN#0.0#0.0\nthe man takes a step#x#0.5#1.5\n")
    ex = load_training_files([tmp_path / "h"])
    assert [e.answer for e in ex] == ["A person walks forward slowly.", "The man takes a step."]
    assert ex[0].span_s is None and ex[1].span_s == (0.5, 1.5)
    cfg = UPRMConfig.tiny()
    feats = motion_features(ex[0].video_path, cfg, sample_fps=2.0)
    x = feats.inputs
    assert x.pose.shape == (1, 4, cfg.max_persons, 17, 3) and feats.sample_fps == 2.0
    assert x.person_mask[0, :, 0].all() and not x.person_mask[0, :, 1:].any()
    pose = x.pose[0, 0, 0]
    nose, ankle = pose[JOINT_NAMES.index("nose")], pose[JOINT_NAMES.index("left_ankle")]
    assert nose[1] < ankle[1] - 0.3  # head above the feet in image coordinates (y down)
    assert x.pose[0, -1, 0, 0, 0] > x.pose[0, 0, 0, 0, 0]  # walked to the right
    assert not x.background_mask.any() and not x.object_mask.any()


# ------------------------------------------------------------------------------------- registry, settings


def _version(reg: Registry, parent: str | None, score: float) -> ModelVersion:
    vid, folder = reg.reserve()
    (folder / "config.json").write_text("{}")
    scores = EvalScores(n_videos=2, fnr=math.nan, f2=0.5, precision=0.4, recall=1.0, map_at={"0.1": score},
                        average_map=score, n_gt=1, n_pred=2, threshold=0.5)
    return ModelVersion(vid, parent, "2026-01-01T00:00:00+00:00", str(folder), "tiny",
                        DataSummary(["a"], ["b"], 3, 1, 1), scores, scores)


def test_registry_register_list_current_and_errors(tmp_path):
    reg = Registry(tmp_path / "models")
    assert list_versions(tmp_path / "models") == [] and reg.current() is None
    v1 = reg.register(_version(reg, "tiny", 0.4))
    v2 = reg.register(_version(reg, v1.version_id, 0.6), make_current=False)
    got = list_versions(tmp_path / "models")
    assert [v.version_id for v in got] == ["v0001", "v0002"]
    assert got[1].parent == "v0001" and got[1].after.average_map == 0.6 and got[1].after.fnr is None
    assert reg.current().version_id == "v0001"
    reg.set_current("v0002")
    assert reg.current().version_id == "v0002"
    raw = json.loads((tmp_path / "models" / "registry.json").read_text())
    assert raw["versions"][0]["checkpoint"] == "versions/v0001"  # relative: the root may move
    with pytest.raises(RegistryError, match="no model version"):
        reg.get("v0099")
    with pytest.raises(RegistryError, match="already registered"):
        reg.register(v2)
    (tmp_path / "models" / "registry.json").write_text("{broken")
    with pytest.raises(RegistryError, match="damaged"):
        reg.versions()


def _scores(average_map: float | None, f2: float | None, kinds_right: int | None = None) -> EvalScores:
    return EvalScores(n_videos=4, fnr=0.2, f2=f2, precision=0.5, recall=0.8, map_at={"0.5": average_map},
                      average_map=average_map, n_gt=3, n_pred=3, threshold=0.9, kinds_right=kinds_right,
                      kinds_of=None if kinds_right is None else 5)


@pytest.mark.parametrize("after, before, better, says", [
    (_scores(0.6, 0.5), _scores(0.5, 0.9), True, "average mAP 50.0 -> 60.0, F2 90.0 -> 50.0: at least"),
    (_scores(0.5, 0.4), _scores(0.6, 0.3), False, "average mAP 60.0 -> 50.0, F2 30.0 -> 40.0: lower"),
    (_scores(0.5, 0.4), _scores(0.5, 0.5), False, "F2 50.0 -> 40.0: lower"),  # mAP tied: F2 decides
    (_scores(0.5, 0.5), _scores(0.5, 0.5), True, "at least its parent's"),
    # detection as good, but the refit kind head names fewer held-out categories than its parent did
    (_scores(0.7, 0.7, kinds_right=2), _scores(0.5, 0.5, kinds_right=3), False, "names 2 of 5 held-out categories, its parent 3 of 5"),
    (_scores(0.7, 0.7, kinds_right=3), _scores(0.5, 0.5, kinds_right=3), True, "categories named 3 -> 3 of 5"),
    (_scores(None, None), _scores(None, None), True, "average mAP n/a -> n/a, F2 n/a -> n/a: no held-out threat"),  # no held-out threat to judge by
])
def test_promotion_verdict(after, before, better, says):
    from uprm.training.loop import promotion_verdict

    got, why = promotion_verdict(after, before)
    assert got is better and says in why


def test_registry_keeps_the_promotion_verdict(tmp_path):
    from dataclasses import replace

    reg = Registry(tmp_path / "models")
    reg.register(replace(_version(reg, "tiny", 0.4), promotion="held-out average mAP 30.0 -> 40.0: at least"))
    assert reg.current().promotion == "held-out average mAP 30.0 -> 40.0: at least"
    raw = json.loads(reg.path.read_text())
    del raw["versions"][0]["promotion"]  # a registry written before the verdict was recorded still reads
    reg.path.write_text(json.dumps(raw))
    assert reg.current().promotion == ""


def test_registry_concurrent_registrations_lose_nothing(tmp_path):
    reg = Registry(tmp_path / "m")
    errors = []

    def work():
        try:
            for _ in range(5):
                r = Registry(tmp_path / "m")
                r.register(_version(r, None, 0.1))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ids = [v.version_id for v in reg.versions()]
    assert len(ids) == 20 == len(set(ids))


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 8, "grad_accum": 3}, "multiple of grad_accum"),
    ({"lr": 0}, "lr"), ({"stage": 3}, "stage"), ({"ablation": ("no_pretuning",)}, "pre-tuning"),
    ({"scheduler": "step"}, "scheduler"), ({"warmup_ratio": 1.5}, "warmup_ratio"),
])
def test_settings_refuse_bad_values(kwargs, message):
    with pytest.raises(TrainingDataError, match=message):
        TrainSettings(**kwargs)
    assert TrainSettings().lr == 2e-5 and TrainSettings().batch_size == 8 and TrainSettings().warmup_ratio == 0.03
