"""Evidence augmentation (uprm.training.augment): what it perturbs, what it must leave alone, and that an
augmented run trains and resumes to the same weights."""
from __future__ import annotations

import pytest
import torch

from uprm.evidence import JOINT_NAMES
from uprm.model import ExpertInputs, build_model
from uprm.model.config import UPRMConfig
from uprm.model.inputs import MOTION_FEATURES, random_expert_inputs
from uprm.training import StaticFeatures, TrainingExample, TrainSettings, train
from uprm.training import augment as aug
from uprm.training.errors import TrainingCancelled, TrainingDataError


@pytest.fixture()
def inputs() -> ExpertInputs:
    cfg = UPRMConfig.tiny()
    # two videos of different lengths: the shorter one's last steps are padding
    x = ExpertInputs.collate([random_expert_inputs(cfg, 1, 10, seed=1), random_expert_inputs(cfg, 1, 6, seed=2)])
    x.pose[..., 2] = (x.pose[..., 2] > 0.2).float() * x.pose[..., 2]  # some joints unseen
    return x


def test_strength_zero_is_the_identity(inputs):
    assert aug.augment_inputs(inputs, 0.0) is inputs


def test_masks_only_lose_entries_and_padding_and_missed_slots_stay_zero(inputs):
    torch.manual_seed(0)
    out = aug.augment_inputs(inputs, 2.0)
    assert not (out.person_mask & ~inputs.person_mask).any() and not (out.object_mask & ~inputs.object_mask).any()
    assert (out.person_mask != inputs.person_mask).any() and (out.object_mask != inputs.object_mask).any()
    pad = ~inputs.step_mask  # video 2's steps 6-9
    assert pad.any()
    for name in ("pose", "object_box", "object_score", "relations", "object_motion", "coarse"):
        assert getattr(out, name)[pad].abs().sum() == 0, name
    assert out.pose[~out.person_mask].abs().sum() == 0
    assert out.object_box[~out.object_mask].abs().sum() == 0
    assert out.object_motion[~out.object_mask].abs().sum() == 0
    dropped = ~out.object_mask  # no relation may touch a missed entity
    assert out.relations.permute(0, 1, 3, 2, 4)[dropped].abs().sum() == 0
    assert out.relations.permute(0, 1, 4, 2, 3)[dropped].abs().sum() == 0
    box = out.object_box[out.object_mask]
    assert ((box >= 0) & (box <= 1)).all() and (box[:, 2:] >= box[:, :2]).all()
    assert ((out.pose[..., :2] >= 0) & (out.pose[..., :2] <= 1)).all()
    # the inputs themselves are untouched (the trainer's feature memo serves them again next epoch)
    assert inputs.person_mask.sum() > out.person_mask.sum()


def test_the_perturbation_is_small_next_to_the_evidence(inputs):
    torch.manual_seed(0)
    out = aug.augment_inputs(inputs, 1.0)
    kept = out.object_mask & inputs.object_mask
    motion_rel = (out.object_motion - inputs.object_motion)[kept].abs().mean() / inputs.object_motion[kept].abs().mean()
    coarse_rel = (out.coarse - inputs.coarse)[inputs.step_mask].norm(dim=-1) / inputs.coarse[inputs.step_mask].norm(dim=-1)
    assert motion_rel < 0.5 and coarse_rel.mean() < 0.5  # noise, not a new video (mirrors flip vx: < 0.5)


def test_a_mirror_swaps_left_and_right_and_negates_horizontal_motion(inputs, monkeypatch):
    for name in ("KEYPOINT_JITTER_H", "JOINT_MISS_P", "SCORE_SCALE", "PERSON_MISS_P", "ENTITY_MISS_P", "BOX_JITTER",
                 "MOTION_SCALE", "COARSE_NOISE"):
        monkeypatch.setattr(aug, name, 0.0)
    monkeypatch.setattr(aug, "MIRROR_P", 1.0)
    out = aug.augment_inputs(inputs, 1.0)
    left, right = JOINT_NAMES.index("left_wrist"), JOINT_NAMES.index("right_wrist")
    people = inputs.person_mask
    src = inputs.pose[people]
    seen = src[:, right, 2] > 0
    torch.testing.assert_close(out.pose[people][:, left, 0][seen], 1 - src[:, right, 0][seen])
    torch.testing.assert_close(out.pose[people][:, left, 1][seen], src[:, right, 1][seen])
    objs = inputs.object_mask
    torch.testing.assert_close(out.object_box[objs][:, 0], (1 - inputs.object_box[objs][:, 2]).clamp(0, 1))
    torch.testing.assert_close(out.object_box[objs][:, 3], inputs.object_box[objs][:, 3].clamp(0, 1))
    for col in ("vx_fps", "flow_vx_hps"):
        c = MOTION_FEATURES.index(col)
        torch.testing.assert_close(out.object_motion[objs][:, c], -inputs.object_motion[objs][:, c])
    c = MOTION_FEATURES.index("vy_fps")
    torch.testing.assert_close(out.object_motion[objs][:, c], inputs.object_motion[objs][:, c])
    torch.testing.assert_close(out.coarse, inputs.coarse * inputs.step_mask[..., None])
    twice = aug.augment_inputs(out, 1.0)  # a mirror of a mirror is the original (unseen joints: zeros)
    visible = src[..., 2] > 0
    torch.testing.assert_close(twice.pose[people][visible], src[visible])
    assert twice.pose[people][~visible].abs().sum() == 0


def test_the_mirror_table_pairs_every_side():
    pairs = {JOINT_NAMES[i]: JOINT_NAMES[j] for i, j in enumerate(aug.MIRRORED_JOINTS)}
    assert pairs["nose"] == "nose" and pairs["left_ankle"] == "right_ankle" and pairs["right_eye"] == "left_eye"
    assert sorted(aug.MIRRORED_JOINTS) == list(range(len(JOINT_NAMES)))


def _threat_examples(config, n: int = 8):
    feats, examples = {}, []
    for i in range(n):
        feats[f"v{i}"] = random_expert_inputs(config, 1, 8, seed=i)
        examples.append(TrainingExample(f"v{i}", "", None, None, threat_intervals_s=((1.0, 2.5),) if i % 2 else ()))
    return feats, examples


def test_an_augmented_run_differs_from_a_plain_one_and_resumes_to_the_same_weights(tmp_path):
    cfg_model = build_model("tiny")
    feats, examples = _threat_examples(cfg_model.config)
    settings = TrainSettings(lr=3e-3, batch_size=4, max_steps=6, seed=3, num_threads=1, show_progress=False,
                             checkpoint_every=3, augment=1.0)

    def run(out, s=settings, **kw):
        return train("tiny", examples, out, s, StaticFeatures(feats), **kw)

    whole = build_model(run(tmp_path / "whole").out_dir)
    plain = build_model(run(tmp_path / "plain", TrainSettings(**{**vars(settings), "augment": 0.0})).out_dir)
    assert not torch.equal(whole.threat_head.out.weight, plain.threat_head.out.weight)

    done = {"train": 0.0}

    def note(stage: str, fraction: float) -> None:
        done[stage] = fraction

    with pytest.raises(TrainingCancelled):  # stopped before step 4: resumes from the step-3 checkpoint
        run(tmp_path / "cut", progress=note, cancel=lambda: done["train"] >= 0.5)
    resumed = build_model(run(tmp_path / "cut", resume=True).out_dir)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_a_strength_out_of_range_is_refused_with_the_range():
    with pytest.raises(TrainingDataError, match=r"augment must lie in \[0, 4\]"):
        TrainSettings(augment=5.0)
