"""UPRMConfig / LMConfig validation and JSON round trip; ExpertInputs shape checks, collate, slicing."""
from __future__ import annotations

import json

import pytest
import torch

from uprm.model import Ablation, ConfigError, ExpertInputs, InputError, LMConfig, UPRMConfig
from uprm.model.inputs import random_expert_inputs


def test_defaults_follow_the_paper_and_the_perception_sizes():
    cfg = UPRMConfig.small()
    assert cfg.alpha == 0.05
    assert (cfg.lm.lora_r, cfg.lm.lora_alpha, cfg.lm.lora_dropout) == (16, 32, 0.05)
    assert cfg.lm.lora_target_modules == ("q_proj", "k_proj", "v_proj", "o_proj")  # attention only
    assert (cfg.d_bg, cfg.d_coarse) == (1280 + 64, 512 + 1)
    assert cfg.lm.kind == "smollm2" and cfg.ablation == Ablation()
    assert UPRMConfig.paper().lm.kind == "video_llava"


@pytest.mark.parametrize("bad, match", [
    (dict(d_model=30, num_heads=4), "divisible"),
    (dict(d_model=0), "positive integer"),
    (dict(dropout=1.0), "dropout"),
    (dict(alpha=-0.1), ">= 0"),
    (dict(time_dim=7), "even"),
    (dict(hpe_frame_position="false"), "hpe_frame_position"),
    (dict(lm={"kind": "smollm2", "lora_dropout": 1.5}), "lora_dropout"),
])
def test_invalid_values_raise_a_config_error_naming_the_field(bad, match):
    with pytest.raises(ConfigError, match=match):
        UPRMConfig.small(**bad)


def test_input_sizes_agree_with_what_perception_produces():
    perception = pytest.importorskip("uprm.perception", reason="the perception package is not importable here")
    cfg = UPRMConfig.small()
    assert (cfg.d_bg, cfg.d_coarse) == (perception.BACKGROUND_DIM, perception.COARSE_DIM)


def test_lm_config_needs_a_source_and_a_known_kind():
    with pytest.raises(ConfigError, match="name_or_path"):
        LMConfig(kind="causal_lm")
    with pytest.raises(ConfigError, match="lm.kind"):
        LMConfig(kind="gpt5")
    with pytest.raises(ConfigError, match="dtype"):
        LMConfig(dtype="int4")
    with pytest.raises(ConfigError, match="true or false|True or False"):
        Ablation(no_hpe="yes")


def test_json_round_trip_and_unknown_fields(tmp_path):
    cfg = UPRMConfig.tiny("video_llava", no_ptr=True, alpha=0.1)
    path = cfg.save(tmp_path / "config.json")
    again = UPRMConfig.load(path)
    assert again == cfg and again.ablation.no_ptr and isinstance(again.lm, LMConfig)
    d = json.loads(path.read_text())
    d["lm"]["bogus"] = 1
    path.write_text(json.dumps(d))
    with pytest.raises(ConfigError, match="bogus"):
        UPRMConfig.load(path)
    with pytest.raises(ConfigError, match="no model config"):
        UPRMConfig.load(tmp_path / "absent.json")
    with pytest.raises(ConfigError, match="unknown UPRMConfig field"):
        UPRMConfig.small(d_modle=64)


def test_overrides_accept_ablation_switches_directly():
    cfg = UPRMConfig.small(no_hpe=True, no_ptr=True)
    assert cfg.ablation == Ablation(no_hpe=True, no_ptr=True)
    assert cfg.ablation.fine_enabled == (False, True, True) and cfg.ablation.active == ("no_hpe", "no_ptr")
    assert Ablation(no_upe=True).fine_enabled == (False, False, False)
    assert not Ablation(no_hpe=True, no_ore=True, no_vbe=True).uses_experts


# ------------------------------------------------------------------ ExpertInputs


def test_expert_inputs_reject_inconsistent_shapes_with_a_clear_message():
    x = random_expert_inputs(UPRMConfig.tiny(), batch_size=1, num_steps=4)
    with pytest.raises(InputError, match="relations"):
        ExpertInputs(**{**x.__dict__, "relations": x.relations[:, :, :3]})
    with pytest.raises(InputError, match="bool"):
        ExpertInputs(**{**x.__dict__, "step_mask": x.step_mask.float()})
    with pytest.raises(InputError, match="at least one valid time step"):
        ExpertInputs(**{**x.__dict__, "step_mask": torch.zeros_like(x.step_mask)})


def test_collate_pads_steps_people_and_entities_and_slicing_keeps_shapes():
    a = random_expert_inputs(UPRMConfig.tiny(), num_steps=3, seed=1)
    b = random_expert_inputs(UPRMConfig.tiny(max_persons=5, max_entities=6), num_steps=5, seed=2)
    batch = ExpertInputs.collate([a, b])
    assert batch.pose.shape == (2, 5, 5, 17, 3) and batch.relations.shape == (2, 5, 8, 6, 6)
    assert batch.step_mask.tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert not batch.person_mask[0, :, 3:].any() and not batch.object_mask[0, 3:].any()
    torch.testing.assert_close(batch.relations[0, :3, :, :4, :4], a.relations[0])
    part = batch.slice_steps(1, 3)
    assert part.num_steps == 2 and torch.equal(part.times_s, batch.times_s[:, 1:3])
    with pytest.raises(InputError, match="outside"):
        batch.slice_steps(4, 9)
