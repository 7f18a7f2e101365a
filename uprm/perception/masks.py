"""Per-entity masks at a reduced grid: selfie segmentation per person, MOG2 for moving objects, SAM 2.

Every mask comes from pixels a model or a background model classified; none is a painted box. The
masks of a video share one grid (``mask_size`` = (width, height), longer side MASK_MAX_SIDE) so a
long video's masks stay small in memory and on disk.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from functools import cached_property
from pathlib import Path

import numpy as np

from uprm.perception import weights
from uprm.perception.crops import SquareCrop
from uprm.perception.errors import PerceptionError

MASK_MAX_SIDE = 160  # 768x576 -> 160x120: 19 KB per mask as bool, 2.4 KB packed on disk
SELFIE_INPUT_PX = 256
SELFIE_VERSION = "selfie_segmentation_256_crop1.25_in_box"
BG_VERSION = "mog2_h120_v16"
BOX_MARGIN = 0.05  # a person's mask may leave its box by 5% of the box size (hands, hair)


def mask_size_for(width: int, height: int, max_side: int = MASK_MAX_SIDE) -> tuple[int, int]:
    """(width, height) of the mask grid for a frame of width x height pixels."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _box_in_grid(box_xyxy: np.ndarray, frame_wh: tuple[int, int], mask_wh: tuple[int, int],
                 margin: float = 0.0) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    mx, my = margin * (x2 - x1), margin * (y2 - y1)
    sx, sy = mask_wh[0] / frame_wh[0], mask_wh[1] / frame_wh[1]
    gx1, gy1 = max(0, int(np.floor((x1 - mx) * sx))), max(0, int(np.floor((y1 - my) * sy)))
    gx2 = min(mask_wh[0], int(np.ceil((x2 + mx) * sx)))
    gy2 = min(mask_wh[1], int(np.ceil((y2 + my) * sy)))
    return gx1, gy1, gx2, gy2


def restrict_to_box(mask: np.ndarray, box_xyxy: np.ndarray, frame_wh: tuple[int, int],
                    margin: float = BOX_MARGIN) -> np.ndarray:
    """mask AND (box grown by margin): a crop may show a neighbour, whose pixels are not this person's."""
    gx1, gy1, gx2, gy2 = _box_in_grid(box_xyxy, frame_wh, (mask.shape[1], mask.shape[0]), margin)
    out = np.zeros_like(mask)
    out[gy1:gy2, gx1:gx2] = mask[gy1:gy2, gx1:gx2]
    return out


class SelfieSegmenter:
    """MediaPipe selfie segmentation (plain TFLite through LiteRT) on each square person crop."""

    def __init__(self, num_threads: int = 2, threshold: float = 0.5):
        self.num_threads = num_threads
        self.threshold = threshold
        self._batch = 1

    @cached_property
    def _interpreter(self):
        return weights.litert_interpreter(weights.selfie_file(), self.num_threads)

    def person_probs(self, frame_rgb: np.ndarray, boxes_xyxy: np.ndarray) -> tuple[np.ndarray, list[SquareCrop]]:
        """(N, 256, 256) float32 person probability over each box's square crop, and the crops."""
        crops = [SquareCrop.around(b) for b in boxes_xyxy]
        if not crops:
            return np.zeros((0, SELFIE_INPUT_PX, SELFIE_INPUT_PX), np.float32), crops
        batch = np.stack([c.warp(frame_rgb, SELFIE_INPUT_PX) for c in crops]).astype(np.float32) / 255.0
        it = self._interpreter
        idx = it.get_input_details()[0]["index"]
        if self._batch != len(crops):  # one invoke for all people of the frame: ~35% faster than one each
            it.resize_tensor_input(idx, [len(crops), SELFIE_INPUT_PX, SELFIE_INPUT_PX, 3])
            it.allocate_tensors()
            self._batch = len(crops)
        it.set_tensor(idx, batch)  # (N, 256, 256, 3) float32 in [0, 1]
        it.invoke()
        return it.get_tensor(it.get_output_details()[0]["index"])[..., 0], crops  # (N, 256, 256)

    def __call__(self, frame_rgb: np.ndarray, boxes_xyxy: np.ndarray,
                 mask_wh: tuple[int, int]) -> np.ndarray:
        """(N, Hm, Wm) bool person masks on the mask grid, one per person box (xyxy px of frame_rgb)."""
        import cv2

        h, w = frame_rgb.shape[:2]
        probs, crops = self.person_probs(frame_rgb, boxes_xyxy)
        out = np.zeros((len(crops), mask_wh[1], mask_wh[0]), bool)
        sx, sy = mask_wh[0] / w, mask_wh[1] / h
        for i, (prob, crop) in enumerate(zip(probs, crops)):
            k = crop.side_px / SELFIE_INPUT_PX  # crop px -> frame px
            m = np.array([[k * sx, 0, crop.x0_px * sx], [0, k * sy, crop.y0_px * sy]], np.float32)
            grid = cv2.warpAffine(prob, m, mask_wh, flags=cv2.INTER_LINEAR, borderValue=0.0)
            out[i] = restrict_to_box(grid > self.threshold, boxes_xyxy[i], (w, h))
        return out


class MovingRegionMasker:
    """Background subtraction (OpenCV MOG2) on the sampled frames at mask resolution.

    Gives masks to non-person objects that move (a bicycle, a car pulling out): the foreground pixels
    inside their box. Only for a fixed camera; a static object gets no mask rather than a fake one.
    """

    def __init__(self, mask_wh: tuple[int, int], history: int = 120, min_fraction: float = 0.05):
        import cv2

        self.mask_wh = mask_wh
        self.min_fraction = min_fraction
        # history 120 samples = 60 s at 2 fps; shadows (value 127) are not foreground
        self._mog = cv2.createBackgroundSubtractorMOG2(history=history, varThreshold=16, detectShadows=True)
        self._kernel = np.ones((3, 3), np.uint8)

    def update(self, frame_rgb: np.ndarray) -> np.ndarray:
        """Feed the next sampled frame; (Hm, Wm) bool foreground of this frame."""
        import cv2

        small = cv2.resize(frame_rgb, self.mask_wh, interpolation=cv2.INTER_AREA)
        fg = self._mog.apply(small) == 255
        return cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_OPEN, self._kernel).astype(bool)

    def masks_for(self, foreground: np.ndarray, boxes_xyxy: np.ndarray,
                  frame_wh: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """((N, Hm, Wm) bool, (N,) bool has-mask): moving pixels inside each box, when enough move."""
        out = np.zeros((len(boxes_xyxy), self.mask_wh[1], self.mask_wh[0]), bool)
        has = np.zeros(len(boxes_xyxy), bool)
        for i, box in enumerate(boxes_xyxy):
            gx1, gy1, gx2, gy2 = _box_in_grid(box, frame_wh, self.mask_wh)
            area = max(1, (gx2 - gx1) * (gy2 - gy1))
            inside = foreground[gy1:gy2, gx1:gx2]
            if inside.sum() >= self.min_fraction * area:
                out[i, gy1:gy2, gx1:gx2] = inside
                has[i] = True
        return out, has


@contextlib.contextmanager
def _quiet_tqdm():
    """SAM 2's loaders draw tqdm bars on stderr; our own progress callback reports instead."""
    old = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = old


def sam2_config_for(checkpoint: Path) -> str:
    """SAM 2 config name matching a checkpoint file name (sam2.1_hiera_tiny.pt -> sam2.1_hiera_t.yaml)."""
    name = checkpoint.name.lower()
    family = "sam2.1" if "2.1" in name else "sam2"
    for key, short in (("tiny", "t"), ("small", "s"), ("base_plus", "b+"), ("large", "l"),
                       ("hiera_t", "t"), ("hiera_s", "s"), ("hiera_b+", "b+"), ("hiera_l", "l")):
        if key in name:
            return f"configs/{family}/{family}_hiera_{short}.yaml"
    raise PerceptionError(
        f"cannot tell which SAM 2 model {checkpoint.name} is; name the config explicitly "
        "(PerceptionSettings.sam2_config, e.g. configs/sam2.1/sam2.1_hiera_t.yaml)"
    )


class Sam2Masker:
    """SAM 2 video predictor over windows of sampled frames, prompted with the detector's boxes.

    Each window (``window`` sampled frames) starts a fresh inference state, so memory stays bounded on
    long videos: every track is prompted with its box at its first frame in the window, untracked
    entities on their own frame, then masks propagate through the window.

    ``checkpoint=None`` builds the model with random weights: only for tests of the plumbing (its
    masks mean nothing). Real use passes a checkpoint, loaded strictly.
    """

    def __init__(self, checkpoint: str | Path | None, config: str | None = None,
                 image_size: int | None = None, window: int = 16, threshold: float = 0.0,
                 num_threads: int = 2):
        if checkpoint is not None:
            checkpoint = Path(checkpoint)
            if not checkpoint.is_file():
                raise PerceptionError(f"SAM 2 checkpoint {checkpoint} does not exist; give the path of "
                                      "a .pt file from the SAM 2 releases")
        if checkpoint is None and config is None:
            raise PerceptionError("Sam2Masker without a checkpoint needs an explicit config (tests only)")
        self.checkpoint = checkpoint
        self.config = config or sam2_config_for(checkpoint)
        self.image_size = image_size
        self.window = window
        self.threshold = threshold
        self.num_threads = num_threads

    @property
    def version(self) -> str:
        ckpt = "random-init" if self.checkpoint is None else f"{self.checkpoint.name}:{self.checkpoint.stat().st_size}"
        return f"sam2:{self.config}:{ckpt}:{self.image_size or 'default'}:w{self.window}"

    @cached_property
    def _predictor(self):
        try:
            from sam2.build_sam import build_sam2_video_predictor
        except ImportError as exc:
            raise PerceptionError(
                "SAM 2 code is not installed: SAM2_BUILD_CUDA=0 pip install --no-deps "
                "--no-build-isolation sam2==1.1.0 (plus hydra-core iopath)"
            ) from exc
        import warnings

        # without the optional CUDA extension SAM 2 skips hole filling in masks and says so per frame
        warnings.filterwarnings("ignore", message="cannot import name '_C' from 'sam2'")
        overrides = [f"++model.image_size={self.image_size}"] if self.image_size else []
        try:
            return build_sam2_video_predictor(self.config, None if self.checkpoint is None else str(self.checkpoint),
                                              device="cpu", hydra_overrides_extra=overrides)
        except (RuntimeError, KeyError) as exc:  # build_sam2 raises a bare RuntimeError on missing keys
            raise PerceptionError(
                f"SAM 2 checkpoint {self.checkpoint} does not match config {self.config} (missing or "
                "unexpected weights); pick the config of the same model size"
            ) from exc

    def __call__(self, frames_rgb: list[np.ndarray], boxes: list[np.ndarray], track_ids: list[np.ndarray],
                 mask_wh: tuple[int, int]) -> list[np.ndarray]:
        """Masks for one window: per frame (N_k, Hm, Wm) bool, aligned with boxes[k] (xyxy px)."""
        import cv2
        import torch

        out = [np.zeros((len(b), mask_wh[1], mask_wh[0]), bool) for b in boxes]
        if not any(len(b) for b in boxes):
            return out
        predictor = self._predictor
        # client object id per (frame, entity): tracks share one id, untracked entities get their own
        obj_of: dict[tuple[int, int], int] = {}
        prompts: dict[int, tuple[int, np.ndarray]] = {}
        next_untracked = 1_000_000
        for k, (bk, tk) in enumerate(zip(boxes, track_ids)):
            for i, (box, tid) in enumerate(zip(bk, tk)):
                if tid >= 0:
                    obj = int(tid)
                else:
                    obj, next_untracked = next_untracked, next_untracked + 1
                obj_of[(k, i)] = obj
                prompts.setdefault(obj, (k, box))
        # SAM 2 keeps its memory bank in bfloat16: on CPU that needs bf16 autocast (fast with AMX)
        with tempfile.TemporaryDirectory(prefix="uprm_sam2_") as tmp, _quiet_tqdm(), \
                weights.torch_threads(self.num_threads), torch.inference_mode(), \
                torch.autocast("cpu", dtype=torch.bfloat16):
            for k, frame in enumerate(frames_rgb):
                # the video predictor reads "<index>.jpg" folders; quality 95 keeps edges intact
                cv2.imwrite(str(Path(tmp) / f"{k}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, 95])
            state = predictor.init_state(tmp, offload_video_to_cpu=True, offload_state_to_cpu=True)
            for obj, (k, box) in prompts.items():
                predictor.add_new_points_or_box(state, frame_idx=k, obj_id=obj, box=np.asarray(box, np.float32))
            masks_at: dict[int, dict[int, np.ndarray]] = {}
            for k, obj_ids, logits in predictor.propagate_in_video(state):
                # logits: (num_objects, 1, H, W) at the frame's size
                small = {int(o): cv2.resize((logits[j, 0].float() > self.threshold).numpy().astype(np.uint8),
                                            mask_wh, interpolation=cv2.INTER_NEAREST).astype(bool)
                         for j, o in enumerate(obj_ids)}
                masks_at[int(k)] = small
            predictor.reset_state(state)
        for (k, i), obj in obj_of.items():
            mask = masks_at.get(k, {}).get(obj)
            if mask is not None and k >= prompts[obj][0]:
                out[k][i] = mask
        return out
