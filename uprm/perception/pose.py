"""17 COCO joints per person: MoveNet Lightning (single-person) on each square person crop (top-down)."""
from __future__ import annotations

from functools import cached_property

import numpy as np

from uprm.evidence import NUM_JOINTS
from uprm.perception import weights
from uprm.perception.crops import SquareCrop

MOVENET_INPUT_PX = 192
POSE_VERSION = "movenet_lightning_topdown_crop1.25"


class PoseEstimator:
    """Keypoints (x_px, y_px, score) in pixels of the frame given, one row per box."""

    def __init__(self, num_threads: int = 2):
        self.num_threads = num_threads

    @cached_property
    def _interpreter(self):
        return weights.litert_interpreter(weights.movenet_file(), self.num_threads)

    def __call__(self, frame_rgb: np.ndarray, boxes_xyxy: np.ndarray) -> np.ndarray:
        """(N, 17, 3) float32 for N person boxes (xyxy px)."""
        out = np.zeros((len(boxes_xyxy), NUM_JOINTS, 3), np.float32)
        if len(boxes_xyxy) == 0:
            return out
        it = self._interpreter
        inp = it.get_input_details()[0]["index"]
        outp = it.get_output_details()[0]["index"]
        for i, box in enumerate(boxes_xyxy):
            crop = SquareCrop.around(box)
            it.set_tensor(inp, crop.warp(frame_rgb, MOVENET_INPUT_PX)[None])  # (1, 192, 192, 3) uint8
            it.invoke()
            yxs = it.get_tensor(outp)[0, 0]  # (17, 3): y, x normalised to the crop, score
            out[i, :, :2] = crop.to_frame(yxs[:, [1, 0]])
            out[i, :, 2] = yxs[:, 2]
        return out
