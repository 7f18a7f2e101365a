"""save_pretrained / from_pretrained / build_model: identical outputs after a round trip, strict loading."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from uprm.model import CheckpointError, ConfigError, LanguageModelUnavailable, UPRMModel, build_model
from uprm.model.inputs import random_expert_inputs


def trained(kind: str = "causal_lm"):
    """A tiny model whose every trainable weight (LoRA B included) differs from its initialisation."""
    model = build_model("tiny", lm_kind=kind, no_vbe=True)
    with torch.no_grad():
        g = torch.Generator().manual_seed(11)
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = trained()
    folder = model.save_pretrained(tmp_path_factory.mktemp("ckpt") / "uprm")
    return model, folder


def test_checkpoint_folder_layout(saved):
    model, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "lora_adapter", "uprm.safetensors"]
    weights = load_file(str(folder / "uprm.safetensors"))
    assert weights and not any(k.startswith("lm.") for k in weights)  # UPRM's own weights only
    assert set(weights) == set(model.uprm_state_dict())
    adapter = json.loads((folder / "lora_adapter" / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], adapter["lora_dropout"]) == (16, 32, 0.05)


def test_round_trip_gives_identical_outputs_and_answers(saved):
    model, folder = saved
    again = UPRMModel.from_pretrained(folder)
    assert again.config == model.config and again.ablation.no_vbe and not again.training
    x = random_expert_inputs(model.config, batch_size=1, num_steps=5, seed=4)
    with torch.no_grad():
        a, b = model(x, labels=None), again(x)
        for field in ("threat_logits", "router_weights", "coarse_share", "fused", "loss_z"):
            torch.testing.assert_close(getattr(b, field), getattr(a, field), rtol=0, atol=0)
        tokens = model.video_tokens(a.fused, x)[0]
        torch.testing.assert_close(again.video_tokens(b.fused, x)[0], tokens, rtol=0, atol=0)
    assert again.answer(x, "Is there a threat?") == model.answer(x, "Is there a threat?")
    from peft import get_peft_model_state_dict

    mine, theirs = get_peft_model_state_dict(model.lm.model), get_peft_model_state_dict(again.lm.model)
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert any(bool(v.abs().sum() > 0) for k, v in theirs.items() if "lora_B" in k)  # not the zero init
    assert build_model(str(folder), no_ptr=True).ablation.no_ptr  # overrides apply to checkpoints too


def test_loading_is_strict_about_weights(saved, tmp_path):
    _, folder = saved
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    weights = load_file(str(broken / "uprm.safetensors"))
    dropped = sorted(weights)[0]
    del weights[dropped]
    weights["router.extra.weight"] = torch.zeros(1)
    save_file(weights, str(broken / "uprm.safetensors"))
    with pytest.raises(CheckpointError, match="missing.*" + dropped.replace(".", r"\.") + ".*unexpected router.extra"):
        UPRMModel.from_pretrained(broken)

    config = json.loads((folder / "config.json").read_text())
    config["d_model"] = 64
    shutil.copytree(folder, tmp_path / "resized")
    (tmp_path / "resized" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="wrong shape"):
        UPRMModel.from_pretrained(tmp_path / "resized")


def test_loading_is_strict_about_the_adapter(saved, tmp_path):
    _, folder = saved
    import shutil

    shutil.copytree(folder, tmp_path / "a")
    adapter = tmp_path / "a" / "lora_adapter" / "adapter_model.safetensors"
    weights = load_file(str(adapter))
    del weights[sorted(weights)[0]]
    save_file(weights, str(adapter))
    with pytest.raises(CheckpointError, match="LoRA adapter.*missing"):
        UPRMModel.from_pretrained(tmp_path / "a")
    shutil.rmtree(tmp_path / "a" / "lora_adapter")
    with pytest.raises(CheckpointError, match="lora_adapter is missing"):
        UPRMModel.from_pretrained(tmp_path / "a")


def test_build_model_rejects_unknown_names(tmp_path):
    with pytest.raises(ConfigError, match="neither a preset"):
        build_model("medium")
    with pytest.raises(ConfigError, match="neither a preset"):
        build_model(str(tmp_path))


def test_tiny_paper_config_round_trips(tmp_path):
    model = trained("video_llava")
    model.save_pretrained(tmp_path / "p")
    again = UPRMModel.from_pretrained(tmp_path / "p")
    x = random_expert_inputs(model.config, num_steps=4, seed=9)
    assert again.answer(x, "Why?", max_new_tokens=6) == model.answer(x, "Why?", max_new_tokens=6)


def test_a_language_model_that_cannot_be_found_offline_gives_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(LanguageModelUnavailable, match="local folder"):
        build_model("paper", lm=dict(kind="video_llava", name_or_path=str(tmp_path / "no-such-model")))
    # a half-written SmolLM2 conversion (no completion marker) is reported, not loaded
    monkeypatch.setenv("UPRM_CACHE_DIR", str(tmp_path))
    (tmp_path / "smollm2-135m-instruct").mkdir()
    with pytest.raises(LanguageModelUnavailable, match="not a finished conversion"):
        build_model("small")


def test_windowed_hpe_has_no_time_layer_and_older_checkpoints_with_one_still_load(tmp_path):
    """With hpe_window_s > 0 HPE carries no absolute time, so it builds no time layer; checkpoints saved
    before that (v2 of the default) hold an unused hpe.time_in, which loading drops."""
    model = build_model("tiny", hpe_window_s=2.0).eval()
    assert not any(k.startswith("hpe.time_in.") for k in model.uprm_state_dict())
    assert any(k.startswith("hpe.time_in.") for k in build_model("tiny").uprm_state_dict())  # whole-video form
    folder = model.save_pretrained(tmp_path / "w")
    weights = load_file(str(folder / "uprm.safetensors"))
    weights["hpe.time_in.weight"] = torch.zeros(model.config.d_model, model.config.time_dim)
    weights["hpe.time_in.bias"] = torch.zeros(model.config.d_model)
    save_file(weights, str(folder / "uprm.safetensors"))
    again = UPRMModel.from_pretrained(folder)
    x = random_expert_inputs(model.config, num_steps=4, seed=3)
    with torch.no_grad():
        assert torch.equal(again(x).threat_prob, model(x).threat_prob)


def test_weights_fingerprint_reads_the_tensors_not_the_file_bytes(tmp_path):
    import torch
    from safetensors.torch import save_file

    from uprm.model.io import weights_sha256

    a, b = torch.arange(6, dtype=torch.float16).reshape(2, 3), torch.ones(4)
    save_file({"a": a, "b": b}, tmp_path / "one.safetensors", metadata={"format": "pt", "model_id": "v1"})
    # the same tensors and metadata written in another order (the header may come out in either): one fingerprint
    save_file({"b": b, "a": a}, tmp_path / "two.safetensors", metadata={"model_id": "v1", "format": "pt"})
    one, two = weights_sha256(tmp_path / "one.safetensors"), weights_sha256(tmp_path / "two.safetensors")
    assert one == two
    b2 = b.clone()
    b2[3] = 2.0
    save_file({"a": a, "b": b2}, tmp_path / "three.safetensors", metadata={"format": "pt", "model_id": "v1"})
    save_file({"a": a, "b": b}, tmp_path / "four.safetensors", metadata={"format": "pt", "model_id": "v2"})
    save_file({"a": a.float(), "b": b}, tmp_path / "five.safetensors", metadata={"format": "pt", "model_id": "v1"})
    others = {weights_sha256(tmp_path / f"{n}.safetensors") for n in ("three", "four", "five")}
    assert one not in others and len(others) == 3  # a value, the version or a dtype changed
