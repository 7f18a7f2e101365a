"""Building, saving and loading models: the one place where configs and weights meet.

A checkpoint folder holds
    config.json          UPRMConfig (incl. ablations and the LM choice)
    uprm.safetensors     UPRM's own weights: experts, router, threat head, projector
    lora_adapter/        the peft LoRA adapter of the language model
The base LM is not copied: it comes from where the config says (the SmolLM2 cache, a local folder,
or, for random tiny LMs, the seed). Loading is strict: any missing, unexpected or mis-shaped tensor
raises a CheckpointError naming it. Tensors stored in float16 (to keep shipped checkpoints small) are
cast to the model's float32 on load. ``lora_adapter`` may be a symlink to another checkpoint's adapter
(the alpha variants share the bootstrap model's).

The "small" preset is the shipped bootstrap checkpoint ``assets/uprm-small`` when it is there (its
``model_id`` is the version recorded in its weights, e.g. "uprm-small-bootstrap-v3"); otherwise, and
always for "small-untrained", the untrained small model, with a warning (model_id "small-untrained").
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from uprm.model.config import UPRMConfig
from uprm.model.errors import CheckpointError, ConfigError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "uprm.safetensors"
ADAPTER_DIR = "lora_adapter"
PRESETS = ("small", "paper", "tiny")
UNTRAINED_SMALL = "small-untrained"
# the shipped default weights of "small" (assets/ sits beside the uprm/ package in the repository)
SMALL_CHECKPOINT = Path(__file__).resolve().parents[2] / "assets" / "uprm-small"
MODEL_ID_KEY = "model_id"  # safetensors metadata key naming a checkpoint's version


def build_model(name_or_path: str | Path = "small", **overrides: Any):
    """A ready model in eval mode: "small" (SmolLM2, CPU default: the shipped bootstrap checkpoint when
    present), "small-untrained", "paper" (Video-LLaVA 7B), "tiny" (random tiny LM, for tests), or a
    checkpoint folder. Overrides replace config fields, e.g. ``build_model("small", no_ptr=True)`` or
    ``build_model("paper", lm=LMConfig(...))``.
    """
    if name_or_path == "small" and (SMALL_CHECKPOINT / CONFIG_FILE).is_file():
        return load_model(SMALL_CHECKPOINT, **overrides)
    if name_or_path in ("small", UNTRAINED_SMALL):
        if name_or_path == "small":
            warnings.warn(f"no trained small checkpoint at {SMALL_CHECKPOINT}: building the UNTRAINED small model "
                          "(random experts, router and threat head; rebuild the checkpoint with "
                          "assets/build_default_model.py)", UserWarning, stacklevel=2)
        model = _assemble(UPRMConfig.small(**overrides))
        model.model_id = UNTRAINED_SMALL
        return model.eval()
    if isinstance(name_or_path, str) and name_or_path in PRESETS:
        config = getattr(UPRMConfig, name_or_path)(**overrides)
        model = _assemble(config)
        model.model_id = name_or_path
        return model.eval()
    path = Path(name_or_path)
    if not (path / CONFIG_FILE).is_file():
        raise ConfigError(f"{name_or_path!r} is neither a preset {PRESETS + (UNTRAINED_SMALL,)} nor a checkpoint "
                          f"folder with {CONFIG_FILE}")
    return load_model(path, **overrides)


def _assemble(config: UPRMConfig):
    from uprm.model.language import load_language_model
    from uprm.model.uprm_model import UPRMModel

    return UPRMModel(config, load_language_model(config.lm))


def save_model(model, directory: str | Path, model_id: str | None = None) -> Path:
    """Write config.json, uprm.safetensors and lora_adapter/ into ``directory`` (created if needed).

    ``model_id`` (e.g. "uprm-small-bootstrap-v3") is recorded in the weights' metadata and becomes the
    loaded model's ``model_id``; without it a loaded model is named by its folder.
    """
    from safetensors.torch import save_file

    from uprm import __version__

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.config.save(directory / CONFIG_FILE)
    state = {k: v.detach().cpu().contiguous() for k, v in model.uprm_state_dict().items()}
    metadata = {"format": "pt", "uprm_version": __version__}
    if model_id:
        metadata[MODEL_ID_KEY] = model_id
    save_file(state, str(directory / WEIGHTS_FILE), metadata=metadata)
    model.lm.model.save_pretrained(str(directory / ADAPTER_DIR))
    return directory


_UNUSED_WINDOWED_HPE = "hpe.time_in."


def load_model(directory: str | Path, **overrides: Any):
    """Rebuild the model saved in ``directory`` (eval mode); overrides as in ``build_model``."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    directory = Path(directory)
    for name in (CONFIG_FILE, WEIGHTS_FILE, ADAPTER_DIR):
        if not (directory / name).exists():
            raise CheckpointError(f"{directory} is not a complete UPRM checkpoint: {name} is missing "
                                  "(save one with model.save_pretrained(folder))")
    config = UPRMConfig.load(directory / CONFIG_FILE).with_overrides(**overrides)
    model = _assemble(config)

    try:
        state = load_file(str(directory / WEIGHTS_FILE))
        with safe_open(str(directory / WEIGHTS_FILE), framework="pt") as fh:
            metadata = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {directory / WEIGHTS_FILE} ({exc}): the file is damaged or not "
                              "safetensors; rebuild or re-download the checkpoint") from None
    if config.hpe_window_s > 0:  # checkpoints saved before windowed HPE stopped building its unused time layer
        state = {k: v for k, v in state.items() if not k.startswith(_UNUSED_WINDOWED_HPE)}
    _check_keys(model.uprm_state_dict(), state, WEIGHTS_FILE, directory)
    # the LM's keys are not in this file (the check above is strict); copy_ casts float16 files to float32
    model.load_state_dict(state, strict=False)

    _load_adapter(model, directory / ADAPTER_DIR)
    model.model_id = metadata.get(MODEL_ID_KEY) or str(directory)
    return model.eval()


def _load_adapter(model, adapter_dir: Path) -> None:
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from peft.utils import load_peft_weights

    saved_cfg = json.loads((adapter_dir / "adapter_config.json").read_text()) \
        if (adapter_dir / "adapter_config.json").is_file() else {}
    lm = model.config.lm
    for key, want in (("r", lm.lora_r), ("lora_alpha", lm.lora_alpha)):
        if key in saved_cfg and saved_cfg[key] != want:
            raise CheckpointError(f"{adapter_dir}: LoRA {key}={saved_cfg[key]} but the config says {want}")
    try:
        weights = load_peft_weights(str(adapter_dir), device="cpu")
    except Exception as exc:  # noqa: BLE001  safetensors / torch raise several kinds for a damaged file
        raise CheckpointError(f"cannot read the LoRA adapter in {adapter_dir}: {exc}") from None
    _check_keys(get_peft_model_state_dict(model.lm.model), weights, "LoRA adapter", adapter_dir)
    set_peft_model_state_dict(model.lm.model, weights)


def _check_keys(expected: dict, found: dict, what: str, where: Path) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(k for k in set(expected) & set(found) if tuple(expected[k].shape) != tuple(found[k].shape))
    if missing or unexpected or shapes:
        def some(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

        parts = []
        if missing:
            parts.append(f"missing {some(missing)}")
        if unexpected:
            parts.append(f"unexpected {some(unexpected)}")
        if shapes:
            parts.append("wrong shape " + ", ".join(f"{k} {tuple(found[k].shape)} vs {tuple(expected[k].shape)}"
                                                     for k in shapes[:5]))
        raise CheckpointError(f"{what} in {where} does not match the model built from its config: "
                              + "; ".join(parts) + ". Were config.json and the weights saved together?")


def weights_sha256(path: str | Path) -> str:
    """sha256 over a safetensors file's tensors (names, dtypes, shapes, bytes, in name order) and metadata:
    equal for equal weights. The file's own bytes are not: the header's key order varies from one save to
    the next (safetensors writes its metadata map unordered), so two identical trainings hash apart."""
    import hashlib

    import torch
    from safetensors import safe_open

    digest = hashlib.sha256()
    with safe_open(str(path), framework="pt") as f:
        digest.update(json.dumps(f.metadata() or {}, sort_keys=True).encode())
        for name in sorted(f.keys()):
            t = f.get_tensor(name).contiguous()
            digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
