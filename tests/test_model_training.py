"""Losses and gradients: every trainable part learns, nothing frozen moves, LoRA leaves the base alone."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from uprm.instructions import ATTRIBUTE, IDENTIFY, LOCATE, attribute_answer, identify_answer, locate_answer
from uprm.model import Instruction, build_model
from uprm.model.inputs import random_expert_inputs

INSTRUCTIONS = [Instruction(IDENTIFY, identify_answer(True)),
                Instruction(LOCATE, locate_answer([(1.0, 2.5)]), context="people near the door")]

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="module")
def cuva_causes() -> list[str]:
    path = SHARED / "data" / "cuva" / "gt_Causev1.json"
    if not path.is_file():
        pytest.skip(f"{path} is absent (the shared reference data sits beside the repository)")
    return [row["answer"] for row in json.loads(path.read_text())[:2]]


@pytest.fixture()
def model():
    return build_model("tiny").train()


def full_loss(model, seed: int = 0):
    x = random_expert_inputs(model.config, batch_size=2, num_steps=6, seed=seed)
    # steps without people, without entities, without background: the "nothing seen" paths train too
    x.person_mask[:, 1] = False
    x.object_mask[:, 2] = False
    x.background_mask[:, 3] = False
    targets = torch.zeros(2, 6)
    targets[0, 2:4] = 1.0
    return model(x, threat_targets=targets, labels=INSTRUCTIONS)


def test_total_loss_is_ce_plus_alpha_lz_plus_threat(model):
    out = full_loss(model)
    assert out.loss_ce is not None and out.loss_threat is not None and float(out.loss_z.detach()) > 0
    expected = out.loss_ce + model.config.alpha * out.loss_z + model.config.threat_loss_weight * out.loss_threat
    torch.testing.assert_close(out.loss, expected)
    only_threat = model(random_expert_inputs(model.config, 2, 6), threat_targets=torch.zeros(2, 6))
    assert only_threat.loss_ce is None
    torch.testing.assert_close(only_threat.loss, only_threat.loss_threat + model.config.alpha * only_threat.loss_z)


def test_gradients_reach_every_trainable_part_and_no_frozen_part(model):
    full_loss(model).loss.backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p for n, p in model.named_parameters() if not p.requires_grad}
    assert all(n.startswith("lm.") and "lora_" not in n for n in frozen)  # frozen = the base LM, all of it
    assert frozen and all(p.grad is None for p in frozen.values())
    parts = {n.split(".")[0] for n in trainable}
    assert parts == {"hpe", "ore", "vbe", "cve", "router", "threat_head", "projector", "lm"}
    no_grad = [n for n, p in trainable.items() if p.grad is None]
    assert not no_grad, f"no gradient reached {no_grad}"
    # LoRA B starts at zero, so A's gradient is exactly zero at the first step; everything else moves
    zero = [n for n, p in trainable.items() if not bool(p.grad.abs().sum() > 0) and "lora_A" not in n]
    assert not zero, f"zero gradient at {zero}"


def test_an_optimizer_step_changes_lora_and_uprm_weights_but_not_the_base_lm(model):
    base = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    head = model.threat_head.out.weight.detach().clone()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for step in range(2):  # the second step gives lora_A a gradient through the now non-zero lora_B
        opt.zero_grad()
        full_loss(model, seed=step).loss.backward()
        opt.step()
    after = dict(model.named_parameters())
    assert all(torch.equal(after[n], v) for n, v in base.items())
    assert all(not torch.equal(after[n], v) for n, v in lora.items())
    assert not torch.equal(model.threat_head.out.weight, head)


def test_training_on_real_cuva_causes_reduces_both_losses(model, cuva_causes):
    """Two real CUVA cause explanations as attribute answers: the LM loss and the threat loss fall."""
    x = random_expert_inputs(model.config, batch_size=2, num_steps=6, seed=5)
    targets = torch.zeros(2, 6)
    targets[:, 3:] = 1.0
    labels = [Instruction(ATTRIBUTE, attribute_answer(c)) for c in cuva_causes]
    batch = model.tokenize_instructions(x, labels)
    assert model.lm.tokenizer.decode(batch.input_ids[0][batch.labels[0] >= 0], skip_special_tokens=True) \
        == attribute_answer(cuva_causes[0])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    first = last = None
    for _ in range(8):
        opt.zero_grad()
        out = model(x, threat_targets=targets, labels=batch)
        out.loss.backward()
        opt.step()
        first = first or (out.loss_ce.item(), out.loss_threat.item())
        last = (out.loss_ce.item(), out.loss_threat.item())
    assert last[0] < first[0] - 0.05 and last[1] < 0.5 * first[1], (first, last)
