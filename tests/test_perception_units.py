"""Perception parts that need no model: scene-graph geometry, settings, cache format, tracker, crops."""
from __future__ import annotations

import numpy as np
import pytest

from uprm.evidence import NUM_JOINTS, PREDICATES, FrameEvidence, Relation, VideoEvidence, VideoInfo
from uprm.perception import BACKGROUND_DIM, COARSE_DIM, PerceptionError, PerceptionSettings
from uprm.perception.cache import (
    EvidenceFormatError, cache_key, load_chunk, load_evidence, save_chunk, save_evidence,
)
from uprm.perception.coarse import clip_window
from uprm.perception.crops import SquareCrop
from uprm.perception.detector import COCO91_NAMES
from uprm.perception.masks import mask_size_for, restrict_to_box, sam2_config_for
from uprm.perception.relations import build_relations, frame_relations

CLASS_ID = {name: cid for cid, name in COCO91_NAMES.items()}


def make_frame(t: float, entities: list[dict], index: int | None = None) -> FrameEvidence:
    """entities: dicts with name, box (xyxy), optional track (default -1), score, joints {idx: (x, y, s)}."""
    n = len(entities)
    kp = np.zeros((n, NUM_JOINTS, 3), np.float32)
    for i, e in enumerate(entities):
        for j, xys in e.get("joints", {}).items():
            kp[i, j] = xys
    return FrameEvidence(
        time_s=t, frame_index=index if index is not None else int(round(t * 10)),
        boxes=np.array([e["box"] for e in entities], np.float32).reshape(n, 4),
        class_ids=np.array([CLASS_ID[e["name"]] for e in entities], int),
        class_names=[e["name"] for e in entities],
        scores=np.array([e.get("score", 0.9) for e in entities], np.float32),
        track_ids=np.array([e.get("track", -1) for e in entities], int), keypoints=kp,
    )


def person(x: float, y: float = 100, h: float = 100, **kw) -> dict:
    """An upright person box of height h with its left edge at x and top at y."""
    return {"name": "person", "box": (x, y, x + 0.4 * h, y + h), **kw}


def predicates(rels: list[Relation]) -> list[str]:
    return sorted(r.predicate for r in rels)


def check_well_formed(rels: list[Relation]) -> None:
    for r in rels:
        assert r.predicate in PREDICATES and 0.0 <= r.score <= 1.0 and r.evidence
        assert type(r.score) is float and type(r.subject) is int and type(r.object) is int  # JSON-safe


# -- scene graph ---------------------------------------------------------------------------------

def test_near_touching_and_nothing_when_far():
    near = frame_relations([make_frame(0, [person(100), person(170)])], 0)  # 0.7 body heights apart
    assert predicates(near) == ["near"] and near[0].score == pytest.approx(0.3, abs=0.01)
    touching = frame_relations([make_frame(0, [person(100), person(120)])], 0)  # boxes overlap
    assert predicates(touching) == ["touching"]
    assert touching[0].score == pytest.approx(20 / 40, abs=0.01)  # overlap / smaller box
    assert frame_relations([make_frame(0, [person(100), person(500)])], 0) == []
    check_well_formed(near + touching)


def test_holding_needs_a_trusted_wrist_inside_a_hand_sized_object():
    wrist = {10: (130, 160, 0.8)}  # right wrist
    bag = {"name": "handbag", "box": (120, 150, 145, 175)}
    rels = frame_relations([make_frame(0, [person(100, joints=wrist), bag])], 0)
    assert predicates(rels) == ["holding"]
    assert (rels[0].subject, rels[0].object) == (0, 1) and "right wrist" in rels[0].evidence
    weak = frame_relations([make_frame(0, [person(100, joints={10: (130, 160, 0.1)}), bag])], 0)
    assert "holding" not in predicates(weak)  # a joint MoveNet is unsure about proves nothing
    car = {"name": "car", "box": (120, 150, 400, 300)}
    assert "holding" not in predicates(frame_relations([make_frame(0, [person(100, joints=wrist), car])], 0))
    # subject is the person whatever the entity order
    rels = frame_relations([make_frame(0, [bag, person(100, joints=wrist)])], 0)
    assert (rels[0].subject, rels[0].predicate, rels[0].object) == (1, "holding", 0)
    check_well_formed(rels)


def test_riding_a_bicycle_but_not_standing_beside_it():
    rider = person(100, y=60, h=100, joints={11: (115, 130, 0.9), 12: (125, 130, 0.9)})  # hips
    bike = {"name": "bicycle", "box": (90, 120, 160, 175)}
    rels = frame_relations([make_frame(0, [rider, bike])], 0)
    assert predicates(rels) == ["riding"] and "hips on it" in rels[0].evidence and rels[0].score > 0.8
    check_well_formed(rels)
    beside = frame_relations([make_frame(0, [person(200, y=75), bike])], 0)
    assert "riding" not in predicates(beside)


def _walk(track_a: float, track_b: float, speed_a: float, n: int = 5, dt: float = 0.5) -> list[FrameEvidence]:
    """Two tracked people; A starts at x=track_a moving speed_a px/s, B stands at x=track_b."""
    return [make_frame(k * dt, [person(track_a + speed_a * k * dt, track=1), person(track_b, track=2)])
            for k in range(n)]


def test_approaching_and_moving_away_from_distance_trends():
    frames = _walk(0, 250, speed_a=100)  # 1 body height/s toward B
    build_relations(frames)
    assert "approaching" not in predicates(frames[1].relations)  # needs 1 s of history
    last = [r for r in frames[-1].relations if r.predicate == "approaching"]
    assert len(last) == 1 and (last[0].subject, last[0].object) == (0, 1)  # A approaches B
    assert last[0].score == pytest.approx(1.0)
    away = _walk(200, 250, speed_a=-100)  # ends 2.5 body heights apart
    build_relations(away)
    rel = [r for r in away[-1].relations if r.predicate == "moving_away"]
    assert len(rel) == 1 and rel[0].subject == 0
    check_well_formed(frames[-1].relations + away[-1].relations)
    still = _walk(100, 250, speed_a=0)
    build_relations(still)
    assert not {"approaching", "moving_away"} & set(predicates(still[-1].relations))
    untracked = [make_frame(f.time_s, [person(f.boxes[0, 0]), person(250)]) for f in frames]
    build_relations(untracked)
    assert "approaching" not in predicates(untracked[-1].relations)  # no identity, no trend


def test_lying_from_box_shape_and_torso_angle():
    flat_joints = {5: (110, 210, 0.8), 6: (110, 220, 0.8), 11: (170, 212, 0.8), 12: (170, 222, 0.8)}
    fallen = {"name": "person", "box": (100, 200, 220, 240), "joints": flat_joints}
    rels = frame_relations([make_frame(0, [fallen])], 0)
    assert predicates(rels) == ["lying"] and rels[0].subject == rels[0].object == 0
    assert "deg from vertical" in rels[0].evidence
    upright_joints = {5: (110, 120, 0.8), 6: (130, 120, 0.8), 11: (112, 160, 0.8), 12: (128, 160, 0.8)}
    assert frame_relations([make_frame(0, [person(100, joints=upright_joints)])], 0) == []
    # a wide box whose joints say "upright" (someone with arms out) is not lying
    wide_upright = {"name": "person", "box": (100, 100, 260, 200), "joints": upright_joints}
    assert frame_relations([make_frame(0, [wide_upright])], 0) == []
    no_pose = frame_relations([make_frame(0, [{"name": "person", "box": (100, 200, 250, 240)}])], 0)
    assert predicates(no_pose) == ["lying"] and no_pose[0].score < rels[0].score
    check_well_formed(rels + no_pose)


def test_running_from_track_speed_in_body_heights():
    run = [make_frame(k * 0.5, [person(100 + 300 * k * 0.5, track=7)]) for k in range(4)]  # 3 heights/s
    build_relations(run)
    assert predicates(run[0].relations) == []  # no history yet
    rel = run[-1].relations
    assert predicates(rel) == ["running"] and rel[0].subject == rel[0].object == 0
    check_well_formed(rel)
    walk = [make_frame(k * 0.5, [person(100 + 70 * k * 0.5, track=7)]) for k in range(4)]  # 0.7 heights/s
    build_relations(walk)
    assert predicates(walk[-1].relations) == []
    # the same speed in pixels is a walk for a person twice as tall (nearer the camera)
    big = [make_frame(k * 0.5, [person(100 + 150 * k * 0.5, h=200, track=7)]) for k in range(4)]
    build_relations(big)
    assert predicates(big[-1].relations) == []


def test_objects_alone_make_no_edges():
    cars = [{"name": "car", "box": (0, 0, 100, 50)}, {"name": "car", "box": (50, 0, 150, 50)}]
    assert frame_relations([make_frame(0, cars)], 0) == []


# -- settings, crops, grids ----------------------------------------------------------------------

def test_settings_are_validated_with_clear_errors(tmp_path):
    assert COARSE_DIM == 513 and BACKGROUND_DIM == 1344
    with pytest.raises(PerceptionError, match="sample_fps"):
        PerceptionSettings(sample_fps=0)
    with pytest.raises(PerceptionError, match="unknown perception layers"):
        PerceptionSettings(layers={"pose", "xray"})
    with pytest.raises(PerceptionError, match="does not exist"):
        PerceptionSettings(sam2_checkpoint=str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError):  # PerceptionError is a ValueError
        PerceptionSettings(min_score=1.5)
    a, b = PerceptionSettings(), PerceptionSettings(layers=["pose"])
    assert isinstance(b.layers, frozenset) and hash(a) != hash(b)
    assert "num_threads" not in a.cache_fields()


def test_sam2_config_from_checkpoint_name(tmp_path):
    assert sam2_config_for(tmp_path / "sam2.1_hiera_tiny.pt") == "configs/sam2.1/sam2.1_hiera_t.yaml"
    assert sam2_config_for(tmp_path / "sam2_hiera_large.pt") == "configs/sam2/sam2_hiera_l.yaml"
    with pytest.raises(PerceptionError, match="sam2_config"):
        sam2_config_for(tmp_path / "my_model.pt")


def test_square_crop_pads_outside_the_frame_and_maps_back():
    frame = np.full((100, 100, 3), 200, np.uint8)
    crop = SquareCrop.around(np.array([0, 0, 40, 80]))  # at the frame's corner
    assert crop.side_px == pytest.approx(100)  # 1.25 x the longer side
    patch = crop.warp(frame, 50)
    assert patch.shape == (50, 50, 3) and patch[0, 0].max() == 0 and patch[-1, -1].min() == 200
    assert crop.to_frame(np.array([0.5, 0.5])) == pytest.approx([20, 40])


def test_mask_grid_and_box_restriction():
    assert mask_size_for(768, 576) == (160, 120)
    assert mask_size_for(100, 50) == (100, 50)  # never upscaled
    full = np.ones((120, 160), bool)
    m = restrict_to_box(full, np.array([384, 288, 768, 576]), (768, 576), margin=0.0)
    assert m.sum() == 80 * 60 and m[60:, 80:].all()


def test_clip_window_stays_inside_the_stream():
    assert clip_window(20, 100) == (12, 28)
    assert clip_window(2, 100) == (0, 16)
    assert clip_window(99, 100) == (84, 100)
    assert clip_window(3, 10) == (0, 10)


def test_tracker_keeps_ids_and_separates_people_from_objects():
    from uprm.perception.tracking import EntityTracker

    tracker = EntityTracker(sample_fps=2.0)
    ids = []
    for k in range(6):
        x = 100 + 12 * k  # walking right, 12 px per sample
        boxes = np.array([[x, 100, x + 40, 200], [x + 5, 120, x + 60, 180], [400, 50, 500, 150]], np.float32)
        ids.append(tracker.update(boxes, np.array([0.9, 0.8, 0.85], np.float32), np.array([1, 3, 1]), k * 0.5))
    ids = np.array(ids)  # (6 samples, 3 entities)
    assert (ids[0] == -1).all()  # ByteTrack confirms a track on its second sighting
    for col in range(3):
        assert len(set(ids[1:, col])) == 1 and ids[1, col] > 0  # one id per entity throughout
    assert len(set(ids[1])) == 3  # the car overlapping the person keeps its own id


def test_tracker_follows_a_walker_who_moves_a_body_width_per_sample():
    from uprm.perception.tracking import EntityTracker

    tracker = EntityTracker(sample_fps=2.0)
    ids = [tracker.update(np.array([[100 + 35 * k, 100, 130 + 35 * k, 190]], np.float32),  # no overlap
                          np.array([0.8], np.float32), np.array([1]), k * 0.5)[0] for k in range(6)]
    assert ids[0] == -1 and len(set(ids[1:])) == 1 and ids[1] > 0


def test_backfill_gives_first_sightings_their_track():
    from uprm.perception.tracking import backfill_first_sightings

    frames = [make_frame(0.0, [person(100), person(300), {"name": "car", "box": (500, 100, 600, 150)}]),
              make_frame(0.5, [person(112, track=4), person(300, track=5),
                               {"name": "car", "box": (500, 100, 600, 150), "track": 6}]),
              make_frame(1.0, [person(124, track=4), person(700, track=9)])]
    assert backfill_first_sightings(frames) == 3
    assert frames[0].track_ids.tolist() == [4, 5, 6]
    assert frames[1].track_ids.tolist() == [4, 5, 6]  # 9 appears far from anyone untracked: left alone


# -- cache format --------------------------------------------------------------------------------

def _evidence() -> VideoEvidence:
    rng = np.random.default_rng(0)
    frames = []
    for k in range(4):
        f = make_frame(k * 0.5, [person(100 + k, track=3, joints={0: (110, 105, 0.9)}),
                                 {"name": "handbag", "box": (120, 150, 145, 175), "track": 4}], index=5 * k)
        f.masks = rng.random((2, 12, 16)) > 0.5 if k != 2 else None
        f.mask_sources = ["selfie_segmentation", "bg_subtraction"] if k != 2 else []
        f.relations = [Relation(0, "holding", 1, 0.75, "right wrist inside the box of handbag#4")]
        f.background = rng.random(BACKGROUND_DIM).astype(np.float32)
        f.coarse = rng.random(COARSE_DIM).astype(np.float32)
        f.scene_labels = [("pole", 0.5), ("crutch", 0.25)]
        f.fight_prob = float(f.coarse[-1])
        frames.append(f)
    frames.append(FrameEvidence.empty(2.0, 20))  # a sample with nobody in it
    frames[-1].background = np.zeros(BACKGROUND_DIM, np.float32)
    frames[-1].coarse = np.zeros(COARSE_DIM, np.float32)
    info = VideoInfo("/v/clip.mp4", "ab" * 32, 10.0, 25, 2.5, 160, 120, 0)
    return VideoEvidence(info, 2.0, frames, mask_size=(16, 12), versions={"detector": "x"},
                         warnings=["clip.mp4: 1 damaged packet(s) skipped"])


def assert_same_evidence(a: VideoEvidence, b: VideoEvidence) -> None:
    assert a.video == b.video and a.sample_fps == b.sample_fps and tuple(a.mask_size) == tuple(b.mask_size)
    assert a.versions == b.versions and a.warnings == b.warnings and len(a.frames) == len(b.frames)
    for fa, fb in zip(a.frames, b.frames):
        assert (fa.time_s, fa.frame_index, fa.class_names) == (fb.time_s, fb.frame_index, fb.class_names)
        for name in ("boxes", "class_ids", "scores", "track_ids", "keypoints", "background", "coarse"):
            np.testing.assert_array_equal(getattr(fa, name), getattr(fb, name), err_msg=name)
        assert (fa.masks is None) == (fb.masks is None)
        if fa.masks is not None:
            np.testing.assert_array_equal(fa.masks, fb.masks)
        assert fa.mask_sources == fb.mask_sources and fa.relations == fb.relations
        assert fa.scene_labels == fb.scene_labels and fa.fight_prob == fb.fight_prob
        assert (fa.motion is None) == (fb.motion is None)
        if fa.motion is not None:
            np.testing.assert_array_equal(fa.motion, fb.motion)


def test_cache_round_trip_is_exact(tmp_path):
    ev = _evidence()
    folder = save_evidence(ev, tmp_path / "ev")
    assert {p.name for p in folder.iterdir()} == {"evidence.json", "arrays.npz"}
    assert_same_evidence(ev, load_evidence(folder))
    frames, warns = load_chunk(save_chunk(tmp_path / "chunk_00000", ev.frames[:2], ev.mask_size, ev.warnings))
    assert len(frames) == 2 and warns == ev.warnings
    np.testing.assert_array_equal(frames[1].masks, ev.frames[1].masks)


def test_cache_round_trip_keeps_the_motion_layer(tmp_path):
    from dataclasses import replace

    from uprm.evidence import ENTITY_MOTION

    ev = _evidence()
    rng = np.random.default_rng(1)
    ev = replace(ev, frames=[replace(f, motion=rng.random((len(f), len(ENTITY_MOTION))).astype(np.float32))
                             for f in ev.frames])
    assert_same_evidence(ev, load_evidence(save_evidence(ev, tmp_path / "ev")))
    ev.frames[1].motion = None  # a motion layer on some frames only is a bug, not something to store
    with pytest.raises(ValueError, match="all or none"):
        save_evidence(ev, tmp_path / "half")


def test_damaged_or_foreign_folders_are_refused(tmp_path):
    with pytest.raises(EvidenceFormatError, match="not an evidence folder"):
        load_evidence(tmp_path)
    folder = save_evidence(_evidence(), tmp_path / "ev")
    (folder / "evidence.json").write_text('{"format": "something-else"}')
    with pytest.raises(EvidenceFormatError, match="expected uprm-evidence"):
        load_evidence(folder)


def test_cache_key_depends_on_content_settings_and_versions():
    s = PerceptionSettings().cache_fields()
    base = cache_key("aa", s, {"detector": "1"})
    assert base == cache_key("aa", dict(s), {"detector": "1"})
    assert base != cache_key("ab", s, {"detector": "1"})
    assert base != cache_key("aa", PerceptionSettings(sample_fps=4).cache_fields(), {"detector": "1"})
    assert base != cache_key("aa", s, {"detector": "2"})
