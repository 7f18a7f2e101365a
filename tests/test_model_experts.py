"""Expert-level properties: masking really removes people/entities, order does not matter, padding steps
stay silent, a video without anyone still gives finite outputs."""
from __future__ import annotations

import pytest
import torch

from uprm.model import UPRMConfig
from uprm.model.cve import CoarseVideoExpert
from uprm.model.hpe import HumanPoseExpert
from uprm.model.inputs import random_expert_inputs
from uprm.model.ore import ObjectRelationExpert
from uprm.model.vbe import VisualBackgroundExpert

CFG = UPRMConfig.tiny(max_persons=3, max_entities=4)


@pytest.fixture()
def x():
    torch.manual_seed(0)
    return random_expert_inputs(CFG, batch_size=2, num_steps=5, seed=8)


def hpe_out(hpe, x, pose=None, person_mask=None):
    return hpe(x.pose if pose is None else pose, x.person_mask if person_mask is None else person_mask,
               x.coarse, x.times_s, x.step_mask)


def ore_out(ore, x, **kw):
    args = dict(object_class=x.object_class, object_box=x.object_box, object_score=x.object_score,
                object_mask=x.object_mask, relations=x.relations, step_mask=x.step_mask)
    return ore(**{**args, **kw})


@torch.no_grad()
def test_hpe_ignores_masked_people_and_their_order(x):
    hpe = HumanPoseExpert(CFG).eval()
    mask = x.person_mask.clone()
    mask[:, :, 0] = False
    ref = hpe_out(hpe, x, person_mask=mask)
    pose = x.pose.clone()
    pose[:, :, 0] = torch.rand_like(pose[:, :, 0])  # the masked person changes
    torch.testing.assert_close(hpe_out(hpe, x, pose=pose, person_mask=mask), ref)
    perm = torch.tensor([2, 0, 1])
    torch.testing.assert_close(hpe_out(hpe, x, pose=x.pose[:, :, perm], person_mask=mask[:, :, perm]), ref)
    assert not torch.allclose(hpe_out(hpe, x), ref)  # unmasking the person does change the output


@torch.no_grad()
def test_hpe_attends_across_time_and_survives_a_video_without_people(x):
    hpe = HumanPoseExpert(CFG).eval()
    ref = hpe_out(hpe, x)
    pose = x.pose.clone()
    pose[:, 4] = torch.rand_like(pose[:, 4])  # only the last step's poses change
    out = hpe_out(hpe, x, pose=pose)
    assert not torch.allclose(out[:, 0], ref[:, 0])  # the first step's token sees them (cross-attention)
    nobody = hpe_out(hpe, x, person_mask=torch.zeros_like(x.person_mask))  # only the null key is left
    assert torch.isfinite(nobody).all()
    x.step_mask[1, 3:] = False
    assert not hpe_out(hpe, x)[1, 3:].any()  # padding steps are silent


@torch.no_grad()
def test_ore_object_masking_removes_entities_with_their_edges(x):
    ore = ObjectRelationExpert(CFG).eval()
    mask = x.object_mask.clone()
    mask[:, :, 1] = True
    mask[:, :, 2] = False
    ref = ore_out(ore, x, object_mask=mask)
    rel = x.relations.clone()
    rel[:, :, :, 2, :] = 1.0  # the masked entity now relates to everyone
    rel[:, :, :, :, 2] = 1.0
    cls = x.object_class.clone()
    cls[:, :, 2] = 5
    torch.testing.assert_close(ore_out(ore, x, object_mask=mask, relations=rel, object_class=cls), ref)
    box = x.object_box.clone()
    box[:, :, 1, 2] = box[:, :, 1, 0]  # an empty box is masked as well
    empty = ore_out(ore, x, object_mask=mask, object_box=box)
    mask2 = mask.clone()
    mask2[:, :, 1] = False
    torch.testing.assert_close(empty, ore_out(ore, x, object_mask=mask2, object_box=box))


@torch.no_grad()
def test_ore_does_not_depend_on_entity_order(x):
    ore = ObjectRelationExpert(CFG).eval()
    perm = torch.tensor([3, 1, 0, 2])
    rel = x.relations[:, :, :, perm][:, :, :, :, perm]
    out = ore_out(ore, x, object_class=x.object_class[:, :, perm], object_box=x.object_box[:, :, perm],
                  object_score=x.object_score[:, :, perm], object_mask=x.object_mask[:, :, perm], relations=rel)
    torch.testing.assert_close(out, ore_out(ore, x))


@torch.no_grad()
def test_relations_change_the_ore_output(x):
    ore = ObjectRelationExpert(CFG).eval()
    for layer in ore.layers:
        layer.edge_logits.normal_()
    mask = torch.ones_like(x.object_mask)
    edges = torch.ones_like(x.relations) * (1 - torch.eye(4))  # pairwise only: the change goes through C
    assert not torch.allclose(ore_out(ore, x, object_mask=mask, relations=torch.zeros_like(x.relations)),
                              ore_out(ore, x, object_mask=mask, relations=edges))


@torch.no_grad()
def test_background_and_coarse_experts_shapes_and_padding(x):
    x.step_mask[0, 2:] = False
    for out in (VisualBackgroundExpert(CFG)(x.background, x.step_mask), CoarseVideoExpert(CFG)(x.coarse, x.step_mask)):
        assert out.shape == (2, 5, CFG.d_model) and not out[0, 2:].any() and out[1].abs().sum() > 0


@torch.no_grad()
def test_ore_reads_entity_motion_and_masks_it_with_the_entity(x):
    ore = ObjectRelationExpert(CFG).eval()
    moving = x.object_motion.clone()
    moving[..., 0] += 3.0  # everyone runs
    assert not torch.allclose(ore_out(ore, x, object_motion=moving), ore_out(ore, x, object_motion=x.object_motion))
    # motion of a masked entity changes nothing
    hidden = ~x.object_mask
    ghost = torch.where(hidden.unsqueeze(-1), moving, x.object_motion)
    torch.testing.assert_close(ore_out(ore, x, object_motion=ghost), ore_out(ore, x, object_motion=x.object_motion))


@torch.no_grad()
def test_threat_head_reads_its_context_window_and_ignores_padding():
    import torch.nn.functional as F

    from uprm.model.uprm_model import ThreatHead

    torch.manual_seed(0)
    per_step, ctx = ThreatHead(16), ThreatHead(16, context_steps=5)
    z = torch.randn(2, 7, 16)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 5:] = False
    # kernel 1 is the per-step MLP: LN -> Linear -> GELU -> Linear, step by step
    h = per_step.norm(z)
    mlp = F.linear(F.gelu(F.linear(h, per_step.temporal.weight[..., 0], per_step.temporal.bias)),
                   per_step.out.weight[..., 0], per_step.out.bias).squeeze(-1)
    torch.testing.assert_close(per_step(z), mlp)
    a = ctx(z, mask)
    assert a.shape == (2, 7)
    z2 = z.clone()
    z2[1, 5:] = 100.0  # padding steps
    torch.testing.assert_close(ctx(z2, mask)[1, :5], a[1, :5])
    # a clip scores the same alone as padded in a batch, and its end is invisible: as if its last step
    # went on (composed falls last to the end of their clip; the head must not learn "the end" instead)
    torch.testing.assert_close(ctx(z[1:, :5]), a[1:, :5])
    held = torch.cat([z[1:, :5], z[1:, 4:5].expand(1, 4, 16)], dim=1)
    torch.testing.assert_close(ctx(held)[:, :5], a[1:, :5])
    z3 = z.clone()
    z3[0, 6, 0] += 3.0  # a neighbour 2 steps away changes step 4 (kernel 5), not step 3
    b = ctx(z3, mask)
    assert not torch.allclose(b[0, 4], a[0, 4]) and torch.allclose(b[0, 3], a[0, 3])


def test_threat_context_steps_must_be_odd():
    from uprm.model import ConfigError

    with pytest.raises(ConfigError, match="odd"):
        UPRMConfig.tiny(threat_context_steps=4)
    assert UPRMConfig.small().threat_context_steps == 9 and UPRMConfig.tiny().threat_context_steps == 1


@torch.no_grad()
def test_hpe_window_is_local_in_time_and_blind_to_absolute_time():
    cfg = UPRMConfig.tiny(max_persons=3, max_entities=4, hpe_window_s=1.0)
    hpe = HumanPoseExpert(cfg).eval()
    x = random_expert_inputs(cfg, batch_size=1, num_steps=12, seed=3)  # steps 0.5 s apart
    out = hpe_out(hpe, x)
    late = hpe(x.pose, x.person_mask, x.coarse, x.times_s + 300.0, x.step_mask)  # the same clip 5 min later
    torch.testing.assert_close(late, out)
    far = x.pose.clone()
    far[:, 8:] = torch.rand_like(far[:, 8:])  # poses from 4.0 s on change
    changed = hpe_out(hpe, x, pose=far)
    # two attentions of +-1 s each: steps up to 1.5 s reach poses up to 3.5 s at most
    torch.testing.assert_close(changed[:, :4], out[:, :4])
    assert not torch.allclose(changed[:, 7], out[:, 7])


@torch.no_grad()
def test_hpe_without_frame_position_sees_the_body_shape_not_where_it_stands():
    cfg = UPRMConfig.tiny(max_persons=3, max_entities=4, hpe_frame_position=False)
    hpe = HumanPoseExpert(cfg).eval()
    x = random_expert_inputs(cfg, batch_size=1, num_steps=6, seed=5)
    out = hpe_out(hpe, x)
    moved = x.pose.clone()
    moved[..., 0] = moved[..., 0] * 0.5 + 0.3  # every person shifted and shrunk: same shape elsewhere
    moved[..., 1] = moved[..., 1] * 0.5 + 0.1
    torch.testing.assert_close(hpe_out(hpe, x, pose=moved), out)
    bent = x.pose.clone()
    bent[:, :, :, 9:11, 1] += 0.3  # the wrists drop: another shape
    assert not torch.allclose(hpe_out(hpe, x, pose=bent), out)
    with_position = HumanPoseExpert(UPRMConfig.tiny(max_persons=3, max_entities=4)).eval()
    assert not torch.allclose(hpe_out(with_position, x, pose=moved), hpe_out(with_position, x))
