"""featurize on hand-built evidence: ranking and caps, normalisation, relations, empty vectors, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from uprm.evidence import PREDICATES, FrameEvidence, Relation, VideoEvidence, VideoInfo
from uprm.featurize import featurize
from uprm.model import InputError, UPRMConfig, build_model

W, H = 200, 100
CFG = UPRMConfig.tiny(max_persons=2, max_entities=3)  # d_bg = 12, d_coarse = 10


def keypoints(x: float, y: float, score: float = 0.9) -> np.ndarray:
    kp = np.zeros((17, 3), np.float32)
    kp[:, 0], kp[:, 1], kp[:, 2] = x + np.arange(17), y + np.arange(17), score
    return kp


def frame(time_s: float, entities: list[tuple[int, float, tuple]], relations=(), background=None, coarse=None,
          poses: dict[int, np.ndarray] | None = None) -> FrameEvidence:
    """entities: (class_id, score, box) in evidence order; people get a pose unless poses says otherwise."""
    n = len(entities)
    kps = np.zeros((n, 17, 3), np.float32)
    for i, (cls, _, box) in enumerate(entities):
        if cls == 1:
            kps[i] = (poses or {}).get(i, keypoints(box[0], box[1]))
    return FrameEvidence(
        time_s=time_s, frame_index=int(time_s * 10),
        boxes=np.array([e[2] for e in entities], np.float32).reshape(n, 4),
        class_ids=np.array([e[0] for e in entities], int), class_names=[str(e[0]) for e in entities],
        scores=np.array([e[1] for e in entities], np.float32), track_ids=np.full(n, -1), keypoints=kps,
        relations=list(relations),
        background=np.zeros(0, np.float32) if background is None else np.asarray(background, np.float32),
        coarse=np.zeros(0, np.float32) if coarse is None else np.asarray(coarse, np.float32),
    )


def video(frames: list[FrameEvidence]) -> VideoEvidence:
    info = VideoInfo(path="hand.mp4", content_hash="0" * 64, fps=10.0, frame_count=10 * len(frames),
                     duration_s=len(frames) / 2, width=W, height=H)
    return VideoEvidence(video=info, sample_fps=2.0, frames=frames)


# three people (scores 0.5, 0.9, 0.7), a knife (0.95) and a bag (0.3)
ENTITIES = [(1, 0.5, (10, 10, 30, 60)), (1, 0.9, (50, 20, 70, 90)), (1, 0.7, (100, 0, 120, 50)),
            (49, 0.95, (60, 40, 66, 50)), (31, 0.3, (0, 0, 200, 100))]
RELATIONS = [Relation(1, "holding", 3, 0.8, "right wrist in knife box"),
             Relation(2, "near", 1, 0.6, "boxes 10 px apart"),
             Relation(0, "near", 1, 0.4, "dropped with person 0"),
             Relation(2, "running", 2, 0.7, "fast track")]


@pytest.fixture()
def evidence() -> VideoEvidence:
    return video([
        frame(0.0, ENTITIES, RELATIONS, background=np.arange(12), coarse=np.ones(10)),
        frame(0.5, [], background=[], coarse=np.full(10, 2.0)),
    ])


def test_shapes_and_step_metadata(evidence):
    x = featurize(evidence, CFG)
    assert x.pose.shape == (1, 2, 2, 17, 3) and x.relations.shape == (1, 2, len(PREDICATES), 3, 3)
    assert x.background.shape == (1, 2, 12) and x.coarse.shape == (1, 2, 10)
    assert x.step_mask.tolist() == [[True, True]] and x.times_s.tolist() == [[0.0, 0.5]]
    assert x.pose.dtype == torch.float32 and x.object_class.dtype == torch.long


def test_people_are_ranked_by_score_capped_and_normalised(evidence):
    x = featurize(evidence, CFG)
    assert x.person_mask[0, 0].tolist() == [True, True] and not x.person_mask[0, 1].any()
    # slot 0 = the 0.9 person (box at 50, 20), slot 1 = the 0.7 person (100, 0); the 0.5 one is dropped
    np.testing.assert_allclose(x.pose[0, 0, 0, 3].numpy(), [(50 + 3) / W, (20 + 3) / H, 0.9], rtol=1e-6)
    np.testing.assert_allclose(x.pose[0, 0, 1, 0].numpy(), [100 / W, 0.0, 0.9], rtol=1e-6)
    assert float(x.pose[..., :2].max()) <= 1.0 and float(x.pose[..., :2].min()) >= 0.0


def test_undetected_joints_and_people_without_pose(evidence):
    kp = keypoints(50, 20)
    kp[5:, 2] = 0.0  # only the head was seen
    f = frame(0.0, ENTITIES[:3], poses={1: kp, 2: np.zeros((17, 3), np.float32)})
    x = featurize(video([f]), CFG)
    assert x.pose[0, 0, 0, 5:].abs().sum() == 0  # unseen joints are all zero
    # the 0.7 person has no pose at all: the 0.5 person takes slot 1
    np.testing.assert_allclose(x.pose[0, 0, 1, 0, :2].numpy(), [10 / W, 10 / H], rtol=1e-6)


def test_entities_are_capped_and_relations_follow_their_new_slots(evidence):
    x = featurize(evidence, CFG)
    # kept by score: knife 0.95 (slot 0), person 0.9 (slot 1), person 0.7 (slot 2)
    assert x.object_class[0, 0].tolist() == [49, 1, 1] and x.object_mask[0, 0].all()
    np.testing.assert_allclose(x.object_box[0, 0, 0].numpy(), [60 / W, 40 / H, 66 / W, 50 / H], rtol=1e-6)
    np.testing.assert_allclose(x.object_score[0, 0].numpy(), [0.95, 0.9, 0.7], rtol=1e-6)
    rel = x.relations[0, 0]
    expected = torch.zeros_like(rel)
    expected[PREDICATES.index("holding"), 1, 0] = 0.8  # person 0.9 holding knife
    expected[PREDICATES.index("near"), 2, 1] = 0.6
    expected[PREDICATES.index("running"), 2, 2] = 0.7  # unary on the diagonal
    torch.testing.assert_close(rel, expected)  # "near" from the dropped person is gone
    assert not x.object_mask[0, 1].any() and not x.relations[0, 1].any()


def test_empty_vectors_become_zeros_and_are_flagged(evidence):
    x = featurize(evidence, CFG)
    assert x.background_mask.tolist() == [[True, False]]
    torch.testing.assert_close(x.background[0, 0], torch.arange(12, dtype=torch.float32))
    assert not x.background[0, 1].any()
    torch.testing.assert_close(x.coarse[0, 1], torch.full((10,), 2.0))


def test_deterministic(evidence):
    a, b = featurize(evidence, CFG), featurize(evidence, CFG)
    assert all(torch.equal(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)


def test_bad_evidence_raises_clear_errors():
    with pytest.raises(InputError, match="size 5.*expects 12"):
        featurize(video([frame(0.0, [], background=np.ones(5))]), CFG)
    with pytest.raises(InputError, match="NaN"):
        featurize(video([frame(0.0, [], coarse=np.full(10, np.nan))]), CFG)
    with pytest.raises(InputError, match="class id.*120"):
        featurize(video([frame(0.0, [(120, 0.5, (0, 0, 5, 5))])]), CFG)
    with pytest.raises(InputError, match="no frames"):
        featurize(video([]), CFG)


def test_featurized_evidence_runs_through_the_model(evidence):
    model = build_model("tiny", max_persons=2, max_entities=3)
    with torch.no_grad():
        out = model(featurize(evidence, model.config))
    assert out.threat_prob.shape == (1, 2)
    assert float(out.router_weights[0, 1].sum()) == 0.0  # step 2 has no fine evidence: coarse only
    assert float(out.coarse_share[0, 1]) == 1.0


def test_entity_motion_from_tracks_is_hand_computable():
    """A person tracked from 0.5 s (steps 0.5 s apart) moves 60 px right per second, then stands still; a
    bag appears at 1.5 s and never moves; an untracked entity has no motion; a car already there in the
    first frame has an unknown past and counts as old (and still, while it does not move)."""
    from uprm.featurize import MAX_DWELL_S, entity_motion
    from uprm.model.inputs import MOTION_FEATURES, TRACK_FEATURES

    car = (3, 0.6, (150, 0, 190, 20))

    def f(t, person_x=None, with_bag=False):
        ents, ids = [car], [11]
        if person_x is not None:
            ents.append((1, 0.9, (person_x, 20, person_x + 20, 70)))  # 50 px tall
            ids.append(7)
        if with_bag:
            ents += [(31, 0.8, (150, 80, 160, 90)), (1, 0.7, (0, 0, 10, 40))]
            ids += [3, -1]
        fr = frame(t, ents)
        fr.track_ids = np.array(ids)
        return fr

    frames = [f(0.0), f(0.5, 10), f(1.0, 40), f(1.5, 70, True), f(2.0, 70, True), f(2.5, 70, True)]
    m = entity_motion(frames, W, H)
    assert [x.shape[0] for x in m] == [1, 2, 2, 4, 4, 4] and m[0].shape[1] == len(TRACK_FEATURES)
    speed, vx, vy, log_age, log_still = m[3][1][:5]
    # over the last second (0.5 -> 1.5 s) the person moved 60 px: 1.2 body heights (50 px) per second
    assert speed == pytest.approx(1.2) and vx == pytest.approx(60 / W) and vy == 0
    assert log_age == pytest.approx(np.log1p(1.0)) and log_still == 0
    # at 2.5 s it has stood still since 1.5 s: velocity over the last second is zero
    assert m[5][1][0] == 0 and m[5][1][4] == pytest.approx(np.log1p(1.0))
    # the bag: tracked since 1.5 s, still all along; the untracked person: no track kinematics (its zone
    # dwell needs no track: test_zone_dwell_...)
    np.testing.assert_allclose(m[5][2], [0, 0, 0, np.log1p(1.0), np.log1p(1.0), 0, 0, 0], atol=1e-6)
    assert not m[5][3][:-1].any()
    # the car was there before the video began: as old and as still as the cap, from the first frame on
    cap = np.log1p(MAX_DWELL_S)
    for step in (0, 3, 5):
        np.testing.assert_allclose(m[step][0], [0, 0, 0, cap, cap, 0, 0, 0], atol=1e-6)
    # it walked straight, then stopped: it went where it moved, so it did not wander
    assert m[5][1][5] == pytest.approx(0, abs=1e-6) and m[5][1][6] == pytest.approx(0, abs=1e-6)
    # featurize puts each entity's motion in its ranked slot
    x = featurize(video(frames), UPRMConfig.tiny(max_persons=2, max_entities=4))
    assert x.object_motion.shape == (1, 6, 4, len(MOTION_FEATURES))
    np.testing.assert_allclose(x.object_motion[0, 5, 1, :len(TRACK_FEATURES)].numpy(), m[5][2], atol=1e-6)  # the bag ranks 2nd
    assert not x.object_motion[0, :, :, len(TRACK_FEATURES):].any()  # no motion layer in this evidence


def test_zone_dwell_is_the_share_of_the_last_8_s_someone_stood_here():
    """Steps 0.5 s apart; a person 50 px tall (so "here" = within 50 px of the feet) paces between x = 10
    and 40 for 4 s while tracks break at every step; a passer-by crosses at 60 px a step."""
    from uprm.featurize import entity_motion
    from uprm.model.inputs import TRACK_FEATURES

    zone = TRACK_FEATURES.index("zone_dwell_8s")
    frames = []
    for k in range(9):
        ents = [(1, 0.9, (10 + 30 * (k % 2), 20, 30 + 30 * (k % 2), 70)), (1, 0.8, (60 * k, 100, 20 + 60 * k, 150))]
        fr = frame(0.5 * k, ents)
        fr.track_ids = np.array([100 + k, 200 + k])  # a new track id every step: the tracker keeps losing them
        frames.append(fr)
    m = entity_motion(frames, W, H)
    assert m[0][0][zone] == 0  # nothing looked back on yet
    assert m[8][0][zone] == pytest.approx(1.0)  # someone stood within a body height at each of the 8 steps before
    assert m[8][1][zone] == 0  # the passer-by was a body height further at each step before
    assert not m[8][0][:zone].any()  # a one-step track has no kinematics


def test_wandering_is_path_length_minus_net_displacement_in_body_heights():
    """Pacing 30 px back and forth every 0.5 s (50 px tall): over the last 4 s (9 steps) the path is 8 x 30
    px and the net displacement 0 (4.8 body heights); the 8 s window holds the same 9 points here."""
    from uprm.featurize import entity_motion

    frames = []
    for k in range(9):
        x = 10 + 30 * (k % 2)
        fr = frame(0.5 * k, [(1, 0.9, (x, 20, x + 20, 70))])
        fr.track_ids = np.array([5])
        frames.append(fr)
    m = entity_motion(frames, W, H)
    assert m[8][0][5] == pytest.approx(8 * 30 / 50) and m[8][0][6] == pytest.approx(8 * 30 / 50)
    assert m[1][0][5] == 0, "two points show no direction change"
