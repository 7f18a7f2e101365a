"""Coarse evidence: mc3_18 surveillance-fight clip features and EfficientNet-Lite3 frame features.

The fight model (torchvision ``mc3_18`` fine-tuned on fight / noFight surveillance clips, package
feight-detection-from-surveillance-cameras) sees 16 frames of 112x112. It was trained on 16 frames
spread over short clips of a few seconds, so clips here are 16 frames at CLIP_FPS = 8 (2 s around the
step) rather than 16 consecutive native frames (0.5 s at 30 fps).

Speed: mc3_18's only temporal convolutions are in its stem and first stage (5 convolutions of
temporal size 3), and its head mean-pools over time. So the trunk runs once over the whole 8 fps
frame stream (in blocks with TRUNK_MARGIN frames of real context on each side, which makes block
edges exact) and each step's clip feature is the mean of the per-frame trunk features of its 16
frames. This is the same computation as running the model on each clip, except that the clip's
first and last few frames see their real neighbours instead of zero padding; it costs one trunk
pass per 16 frames instead of one per step (4x less at 2 fps sampling). ``exact_clip`` runs the
model on one clip as trained, for checks (bench_perception.py reports the difference).
"""
from __future__ import annotations

from functools import cached_property

import numpy as np

from uprm.perception import CLIP_FEATURE_DIM, SCENE_FEATURE_DIM, weights

CLIP_FPS = 8.0
CLIP_LEN = 16
TRUNK_MARGIN = 5  # temporal half receptive field of stem (3x7x7) + four 3x3x3 convs in layer1
FIGHT_RESIZE_HW = (128, 171)
FIGHT_CROP = 112
FIGHT_MEAN = np.array([0.43216, 0.394666, 0.37645], np.float32)
FIGHT_STD = np.array([0.22803, 0.22145, 0.216989], np.float32)
FIGHT_CLASSES = ("fight", "noFight")
FIGHT_VERSION = "mc3_18:model_16_m3_0.8888:clip16@8fps:shared-trunk"

EFFNET_INPUT_PX = 280
EFFNET_FEATURE_TENSOR = "efficientnet-lite3/model/head/Squeeze1"
SCENE_VERSION = "efficientnet_lite3_int8:head/Squeeze1:top5"


def fight_preprocess(rgb_128x171: np.ndarray) -> np.ndarray:
    """(128, 171, 3) uint8 RGB -> (112, 112, 3) float32 centre crop, normalised as in training."""
    h, w = FIGHT_RESIZE_HW
    if rgb_128x171.shape[:2] != (h, w):
        raise ValueError(f"fight model frames must be resized to {h}x{w} first, got {rgb_128x171.shape}")
    y0, x0 = (h - FIGHT_CROP) // 2, (w - FIGHT_CROP) // 2
    crop = rgb_128x171[y0:y0 + FIGHT_CROP, x0:x0 + FIGHT_CROP].astype(np.float32) / 255.0
    return (crop - FIGHT_MEAN) / FIGHT_STD


def native_bf16() -> bool:
    """Whether this CPU runs bfloat16 convolutions in hardware (AVX-512 / AMX). Elsewhere (AVX2-only
    laptops and servers) bf16 autocast emulates them: the trunk of one 10 s clip then takes minutes
    instead of seconds, so the model runs in float32 there."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


class FightClipModel:
    """mc3_18 fight / noFight clip model: per-frame trunk features, clip features and P(fight).

    ``bf16``: None = in bfloat16 where the CPU has it (``native_bf16``), else float32. The two round
    differently (features agree to ~0.05), so the evidence cache keys them apart."""

    def __init__(self, num_threads: int = 2, bf16: bool | None = None, block_frames: int = 48):
        self.num_threads = num_threads
        self.bf16 = native_bf16() if bf16 is None else bf16
        self.block_frames = block_frames

    @cached_property
    def model(self):
        import torch
        from torchvision.models.video import mc3_18

        model = mc3_18(num_classes=len(FIGHT_CLASSES))
        state = torch.load(weights.fight_file(), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
        return model.eval().to(memory_format=torch.channels_last_3d)

    def _autocast(self):
        import contextlib

        import torch

        return torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    def _to_input(self, frames: np.ndarray):
        import torch

        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)[None]  # (1, 3, T, 112, 112)
        return x.contiguous(memory_format=torch.channels_last_3d)

    def _trunk(self, x):
        m = self.model
        x = m.layer4(m.layer3(m.layer2(m.layer1(m.stem(x)))))  # (1, 512, T, 7, 7)
        return x.float().mean(dim=(3, 4))[0].T  # (T, 512): spatially pooled, per frame

    def frame_features(self, frames: np.ndarray, first: int, stop: int) -> np.ndarray:
        """Per-frame trunk features (stop - first, 512) for frames[first:stop] of a (T, 112, 112, 3) run.

        Frames outside [first, stop) serve as temporal context; with TRUNK_MARGIN of them on each
        side (or the run's ends) the result equals a pass over the whole run.
        """
        import torch

        out = []
        with weights.torch_threads(self.num_threads), torch.inference_mode(), self._autocast():
            for a in range(first, stop, self.block_frames):
                b = min(stop, a + self.block_frames)
                lo, hi = max(0, a - TRUNK_MARGIN), min(len(frames), b + TRUNK_MARGIN)
                feats = self._trunk(self._to_input(frames[lo:hi]))
                out.append(feats[a - lo: b - lo].numpy())
        return np.concatenate(out) if out else np.zeros((0, CLIP_FEATURE_DIM), np.float32)

    def head(self, features: np.ndarray) -> np.ndarray:
        """P(fight) for clip features (..., 512)."""
        import torch

        with weights.torch_threads(self.num_threads), torch.inference_mode():
            logits = self.model.fc(torch.from_numpy(np.asarray(features, np.float32)))
            return logits.softmax(-1)[..., FIGHT_CLASSES.index("fight")].numpy()

    def exact_clip(self, frames: np.ndarray) -> tuple[np.ndarray, float]:
        """The model as trained on one (16, 112, 112, 3) clip: (512 feature, P(fight))."""
        import torch

        with weights.torch_threads(self.num_threads), torch.inference_mode(), self._autocast():
            feature = self._trunk(self._to_input(frames)).mean(0).numpy()  # (512,)
        return feature, float(self.head(feature))


def clip_window(center: int, n_frames: int, length: int = CLIP_LEN) -> tuple[int, int]:
    """[start, stop) of the `length` clip frames centred on index `center`, shifted to stay inside."""
    start = center - length // 2
    start = max(0, min(start, n_frames - length))
    return start, min(n_frames, start + length)


class SceneClassifier:
    """EfficientNet-Lite3 (int8, ImageNet-1k) on the whole frame: 1280-d pooled feature + top labels."""

    def __init__(self, num_threads: int = 2, top_k: int = 5):
        self.num_threads = num_threads
        self.top_k = top_k

    @cached_property
    def _interpreter(self):
        model, _ = weights.efficientnet_files()
        # the pooled feature is an intermediate tensor: readable only when tensors are preserved
        return weights.litert_interpreter(model, self.num_threads, preserve_all_tensors=True)

    @cached_property
    def labels(self) -> list[str]:
        _, labels = weights.efficientnet_files()
        return [line.split(",")[0].strip() for line in labels.read_text().splitlines() if line.strip()]

    @cached_property
    def _feature_tensor(self) -> tuple[int, float, int]:
        for t in self._interpreter.get_tensor_details():
            if t["name"] == EFFNET_FEATURE_TENSOR:
                scale, zero = t["quantization"]
                return t["index"], float(scale), int(zero)
        raise RuntimeError(f"{EFFNET_FEATURE_TENSOR} not found in efficientnet_lite3.tflite")

    def __call__(self, frame_rgb: np.ndarray) -> tuple[np.ndarray, list[tuple[str, float]]]:
        """((1280,) float32 dequantised feature, [(label, probability)] best first)."""
        import cv2

        it = self._interpreter
        x = cv2.resize(frame_rgb, (EFFNET_INPUT_PX, EFFNET_INPUT_PX), interpolation=cv2.INTER_AREA)
        it.set_tensor(it.get_input_details()[0]["index"], x[None])  # (1, 280, 280, 3) uint8
        it.invoke()
        index, scale, zero = self._feature_tensor
        feature = (it.get_tensor(index)[0].astype(np.float32) - zero) * scale  # (1280,)
        out = it.get_output_details()[0]
        probs = it.get_tensor(out["index"])[0].astype(np.float32)
        probs = (probs - out["quantization"][1]) * out["quantization"][0]  # (1000,) softmax
        top = np.argsort(-probs)[: self.top_k]
        labels = [(self.labels[i] if i < len(self.labels) else f"class_{i}", round(float(probs[i]), 4))
                  for i in top]
        return feature.reshape(SCENE_FEATURE_DIM), labels
