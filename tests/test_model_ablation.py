"""Each ablation switch changes exactly what it claims, on a built (tiny) model, at run time."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from uprm.model import Ablation, InputError, build_model
from uprm.model.inputs import random_expert_inputs


@pytest.fixture(scope="module")
def model():
    return build_model("tiny")


@pytest.fixture()
def inputs(model):
    return random_expert_inputs(model.config, batch_size=2, num_steps=6, seed=3)


def run(model, x, **switches):
    model.set_ablation(Ablation(**switches))
    try:
        with torch.no_grad():
            return model(x)
    finally:
        model.set_ablation(Ablation())


def perturbed(x, part: str):
    g = torch.Generator().manual_seed(7)
    if part == "hpe":
        return replace(x, pose=torch.rand(x.pose.shape, generator=g))
    if part == "ore":
        return replace(x, object_class=(x.object_class + 5) % 91, relations=torch.rand(x.relations.shape, generator=g),
                       object_score=torch.rand(x.object_score.shape, generator=g))
    return replace(x, background=torch.randn(x.background.shape, generator=g))


def test_full_model_follows_eq_6_on_its_own_outputs(model, inputs):
    out = run(model, inputs)
    r, share = out.router_weights, out.coarse_share
    torch.testing.assert_close(share, 1 - r.amax(dim=-1))
    e = out.expert_outputs
    z = sum(r[..., i, None] * e[name] for i, name in enumerate(("hpe", "ore", "vbe"))) + share[..., None] * e["cve"]
    torch.testing.assert_close(out.fused, z)
    assert float(out.loss_z) > 0 and out.loss is None


@pytest.mark.parametrize("switch, index, part", [("no_hpe", 0, "hpe"), ("no_ore", 1, "ore"), ("no_vbe", 2, "vbe")])
def test_removing_one_fine_expert_zeroes_its_weight_and_its_influence(model, inputs, switch, index, part):
    full = run(model, inputs)
    out = run(model, inputs, **{switch: True})
    assert bool((out.router_weights[..., index] == 0).all()) and part not in out.expert_outputs
    others = [i for i in range(3) if i != index]
    assert bool((out.router_weights[..., others].sum(-1) > 0).any())  # the others still take weight
    again = run(model, perturbed(inputs, part), **{switch: True})
    torch.testing.assert_close(again.fused, out.fused, rtol=0, atol=0)  # its input no longer matters
    assert not torch.allclose(run(model, perturbed(inputs, part)).fused, full.fused)  # but it did before


def test_no_upe_sends_only_the_coarse_tokens(model, inputs):
    out = run(model, inputs, no_upe=True)
    assert bool((out.router_weights == 0).all()) and bool((out.coarse_share == 1).all())
    torch.testing.assert_close(out.fused, out.expert_outputs["cve"])
    assert set(out.expert_outputs) == {"cve"} and float(out.loss_z) == 0.0
    changed = replace(perturbed(perturbed(perturbed(inputs, "hpe"), "ore"), "vbe"))
    torch.testing.assert_close(run(model, changed, no_upe=True).fused, out.fused, rtol=0, atol=0)


def test_no_ptr_is_a_plain_softmax_over_four_experts_without_l_z(model, inputs):
    out = run(model, inputs, no_ptr=True)
    total = out.router_weights.sum(-1) + out.coarse_share
    torch.testing.assert_close(total, torch.ones_like(total))
    assert float(out.loss_z) == 0.0
    # with every expert's evidence present the weights are softmax(router logits) exactly
    x = replace(inputs, person_mask=torch.ones_like(inputs.person_mask), pose=inputs.pose.clamp(min=0.01),
                object_mask=torch.ones_like(inputs.object_mask), background_mask=torch.ones_like(inputs.background_mask))
    out = run(model, x, no_ptr=True)
    w = out.router_logits.softmax(-1)
    torch.testing.assert_close(out.router_weights, w[..., :3])
    torch.testing.assert_close(out.coarse_share, w[..., 3])
    e = out.expert_outputs
    z = sum(w[..., i, None] * e[n] for i, n in enumerate(("hpe", "ore", "vbe", "cve")))
    torch.testing.assert_close(out.fused, z)


def test_an_expert_without_evidence_at_a_step_gets_no_weight(model, inputs):
    x = replace(inputs, person_mask=inputs.person_mask.clone())
    x.person_mask[:, 2] = False  # nobody at step 2
    out = run(model, x)
    assert bool((out.router_weights[:, 2, 0] == 0).all())
    paper_literal = build_model("tiny", mask_absent_experts=False)
    with torch.no_grad():
        assert bool((paper_literal(x).router_weights[:, 2, 0] > 0).all())  # the router alone decides


def test_set_ablation_is_reversible_and_rejects_unknown_switches(model, inputs):
    before = run(model, inputs).fused
    model.set_ablation(no_hpe=True, no_ptr=True)
    assert model.ablation == Ablation(no_hpe=True, no_ptr=True) and model.config.ablation.no_ptr
    model.set_ablation(**Ablation().as_kwargs())
    with torch.no_grad():
        torch.testing.assert_close(model(inputs).fused, before)
    with pytest.raises(InputError, match="no_pose"):
        model.set_ablation(no_pose=True)


def test_expert_dropout_silences_whole_videos_experts_in_training_only(inputs):
    from uprm.model import ConfigError

    plain = build_model("tiny")
    dropping = build_model("tiny")
    dropping.load_state_dict(plain.state_dict())
    dropping.config = replace(dropping.config, expert_dropout=0.5)
    # at inference it changes nothing: the same weights give the same outputs
    plain.eval(), dropping.eval()
    with torch.no_grad():
        a, b = plain(inputs), dropping(inputs)
    torch.testing.assert_close(a.threat_prob, b.threat_prob, rtol=0, atol=0)
    # in training, over many draws, each fine expert is silent for a whole video in about half of them:
    # no weight at any step of that video; and the silenced experts differ between draws
    dropping.train()
    torch.manual_seed(0)
    silent = []
    with torch.no_grad():
        for _ in range(40):
            w = dropping(inputs).router_weights[..., :3]  # (B, T, 3)
            silent.append((w == 0).all(dim=1))  # (B, 3): expert silent at every step of the video
    share = torch.stack(silent).float().mean(dim=0)  # (B, 3)
    assert share[:, 0].min() > 0.25 and share[:, 0].max() < 0.75, share  # HPE, about p
    assert len({tuple(s.flatten().tolist()) for s in silent}) > 5
    with pytest.raises(ConfigError, match="expert_dropout"):
        replace(plain.config, expert_dropout=1.0)
