"""The real bundled front-ends on real vtest frames (frame 150: 8 people by eye, frame 400: 3)."""
from __future__ import annotations

import numpy as np
import pytest

from uprm.evidence import JOINT_NAMES
from uprm.perception import CLIP_FEATURE_DIM, SCENE_FEATURE_DIM, PerceptionError
from uprm.video import iter_frames

HEAD = [JOINT_NAMES.index(n) for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")]
ANKLES = [JOINT_NAMES.index(n) for n in ("left_ankle", "right_ankle")]


@pytest.fixture(scope="module")
def vtest_frames(vtest_path) -> dict[int, np.ndarray]:
    frames = {}
    for f in iter_frames(vtest_path):
        if f.frame_index in (150, 400):
            frames[f.frame_index] = f.rgb()
        if f.frame_index >= 400:
            return frames
    raise AssertionError("vtest.avi ended before frame 400")


@pytest.fixture(scope="module")
def detector():
    from uprm.perception.detector import ObjectDetector

    return ObjectDetector(min_score=0.4)


@pytest.fixture(scope="module")
def people(vtest_frames, detector) -> dict[int, np.ndarray]:
    out = {}
    for i, rgb in vtest_frames.items():
        det = detector(rgb)
        out[i] = det.xyxy[det.class_id == 1]
    return out


def test_detector_finds_the_people_counted_by_eye(people, vtest_frames, detector):
    assert len(people[150]) >= 7  # 8 people by eye
    assert len(people[400]) == 3  # 3 people by eye, no extra
    det = detector(vtest_frames[150])
    assert det.xyxy.dtype == np.float32 and (det.confidence >= 0.4).all()
    assert (det.xyxy[:, 2] <= 768).all() and (det.xyxy[:, 3] <= 576).all()
    assert set(det.data["class_name"]) >= {"person"}


def test_upright_people_have_heads_above_ankles(people, vtest_frames):
    from uprm.perception.pose import PoseEstimator

    pose = PoseEstimator()
    checked = agree = 0
    for i, boxes in people.items():
        kps = pose(vtest_frames[i], boxes)
        assert kps.shape == (len(boxes), 17, 3)
        for box, kp in zip(boxes, kps):
            # joints land on the person: inside the box grown by half its size
            w, h = box[2] - box[0], box[3] - box[1]
            good = kp[:, 2] >= 0.3
            assert ((kp[good, 0] > box[0] - w / 2) & (kp[good, 0] < box[2] + w / 2)).all()
            head, ankles = kp[HEAD][kp[HEAD, 2] >= 0.3], kp[ANKLES][kp[ANKLES, 2] >= 0.3]
            if h / w > 1.5 and len(head) and len(ankles):
                checked += 1
                agree += head[:, 1].mean() < ankles[:, 1].mean() - 0.3 * h
    assert checked >= 8 and agree == checked


def test_selfie_masks_are_real_person_shapes(people, vtest_frames):
    from uprm.perception.masks import SelfieSegmenter, _box_in_grid, mask_size_for

    grid = mask_size_for(768, 576)
    masks = SelfieSegmenter()(vtest_frames[150], people[150], grid)
    assert masks.shape == (len(people[150]), 120, 160) and masks.dtype == bool
    for box, m in zip(people[150], masks):
        gx1, gy1, gx2, gy2 = _box_in_grid(box, (768, 576), grid, margin=0.05)
        area = (gx2 - gx1) * (gy2 - gy1)
        assert m[gy1:gy2, gx1:gx2].sum() == m.sum()  # nothing outside the person's box
        assert 0.2 * area < m.sum() < 0.9 * area  # a silhouette: neither empty nor the painted box


def test_scene_features_and_labels(vtest_frames):
    from uprm.perception.coarse import SceneClassifier

    feature, labels = SceneClassifier()(vtest_frames[150])
    assert feature.shape == (SCENE_FEATURE_DIM,) and feature.dtype == np.float32
    assert np.isfinite(feature).all() and feature.min() >= 0 and feature.max() <= 6.01  # ReLU6 range
    assert feature.std() > 0.01
    probs = [p for _, p in labels]
    assert len(labels) == 5 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0
    assert all(isinstance(name, str) and name and "," not in name for name, _ in labels)


@pytest.fixture(scope="module")
def fight_clip(vtest_path) -> np.ndarray:
    from uprm.perception.coarse import FIGHT_RESIZE_HW, fight_preprocess

    h, w = FIGHT_RESIZE_HW
    frames = []
    for f in iter_frames(vtest_path):
        if 100 <= f.frame_index < 120:
            frames.append(fight_preprocess(f.rgb(size=(w, h))))
        if f.frame_index >= 120:
            break
    return np.stack(frames)  # (20, 112, 112, 3)


def test_fight_trunk_blocks_are_exact(fight_clip):
    from uprm.perception.coarse import FightClipModel

    model = FightClipModel(bf16=False, num_threads=1)  # fp32: exactness checkable to float tolerance
    # the trunk is fully convolutional: the 56 px centre keeps the check exact at a quarter of the cost
    frames = np.ascontiguousarray(fight_clip[:16, 28:84, 28:84])
    whole = model.frame_features(frames, 0, 16)
    assert whole.shape == (16, CLIP_FEATURE_DIM)
    model.block_frames = 6  # three blocks, each with 5 frames of real context on both sides
    blocks = model.frame_features(frames, 0, 16)
    np.testing.assert_allclose(blocks, whole, atol=2e-4, rtol=1e-4)
    middle = model.frame_features(frames, 7, 10)
    np.testing.assert_allclose(middle, whole[7:10], atol=2e-4, rtol=1e-4)
    assert np.abs(whole[0] - whole[8]).max() > 1e-3  # frames differ: the check is not vacuous


def test_fight_shared_trunk_matches_the_clip_model(fight_clip):
    from uprm.perception.coarse import FightClipModel

    model = FightClipModel(num_threads=1)  # the precision the pipeline uses on this CPU
    clip = fight_clip[2:18]
    feature, prob = model.exact_clip(clip)
    assert feature.shape == (CLIP_FEATURE_DIM,) and 0.0 <= prob <= 1.0
    shared = model.frame_features(fight_clip, 2, 18).mean(0)  # the same 16 frames, real neighbours
    cos = float(shared @ feature / np.linalg.norm(shared) / np.linalg.norm(feature))
    assert cos > 0.98
    assert abs(float(model.head(shared)) - prob) < 0.1


def test_sam2_video_masks_on_a_tiny_random_model():
    pytest.importorskip("sam2")
    from uprm.perception.masks import Sam2Masker

    # no checkpoint exists offline: random weights at 128 px test the plumbing, not mask quality
    # one torch thread: plumbing, not speed, and robust on a CPU shared with other jobs
    masker = Sam2Masker(None, config="configs/sam2.1/sam2.1_hiera_t.yaml", image_size=128, window=3,
                        num_threads=1)
    frames = []
    for k in range(3):
        img = np.full((120, 160, 3), 70, np.uint8)
        img[40:100, 20 + 10 * k: 50 + 10 * k] = 220
        frames.append(img)
    boxes = [np.array([[20 + 10 * k, 40, 50 + 10 * k, 100], [120, 10, 150, 40]], np.float32) for k in range(3)]
    tracks = [np.array([5, -1]), np.array([5, -1]), np.array([5, 9])]
    masks = masker(frames, boxes, tracks, (80, 60))
    assert [m.shape for m in masks] == [(2, 60, 80)] * 3 and all(m.dtype == bool for m in masks)
    assert "sam2.1_hiera_t" in masker.version and "random-init" in masker.version


def test_sam2_checkpoint_is_loaded_strictly(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("sam2")
    from uprm.perception.masks import Sam2Masker

    bad = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": {"not_a_sam2_weight": torch.zeros(1)}}, bad)
    masker = Sam2Masker(bad, image_size=128)
    with pytest.raises(PerceptionError, match="does not match"):
        masker([np.zeros((60, 80, 3), np.uint8)], [np.array([[1, 1, 20, 20]], np.float32)], [np.array([1])], (40, 30))
    with pytest.raises(PerceptionError, match="does not exist"):
        Sam2Masker(tmp_path / "missing.pt")


def test_the_fight_trunk_runs_in_bf16_only_where_the_cpu_has_it(monkeypatch):
    from uprm.perception import coarse
    from uprm.perception.pipeline import PerceptionSettings, Perceiver

    assert coarse.FightClipModel(bf16=False).bf16 is False and coarse.FightClipModel(bf16=True).bf16 is True
    keys = {}
    for native in (True, False):  # emulated bf16 takes minutes per clip on AVX2-only CPUs
        monkeypatch.setattr(coarse, "native_bf16", lambda native=native: native)
        assert coarse.FightClipModel().bf16 is native
        keys[native] = Perceiver(PerceptionSettings()).versions()["fight"]
    # the two precisions round differently, so their evidence is cached apart; bf16 keeps its old key
    assert keys[False] == keys[True] + ":fp32"
