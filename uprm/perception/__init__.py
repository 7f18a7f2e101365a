"""Frozen front-ends that turn a video into ``uprm.evidence.VideoEvidence``.

Detector (SSD-MobileNetV2, COCO), pose (MoveNet Lightning on person crops), tracks (ByteTrack),
scene graph (geometry, keypoints and motion), masks (selfie segmentation per person, background
subtraction for moving objects, SAM 2 when given a checkpoint), coarse clip features (mc3_18 fight
model), frame features (EfficientNet-Lite3) and the motion layer (dense optical flow per entity and
scene changes that stayed, from every frame: ``uprm.perception.motion``). Every model ships inside an
installed package: nothing is downloaded. Entry point: :func:`perceive` (cached per video on disk).

Vector sizes the model side builds against (``uprm.featurize``):

- ``FrameEvidence.coarse``: COARSE_DIM = 512 mc3_18 clip feature (mean-pooled trunk output of the
  16-frame clip around the step) followed by the clip's fight probability.
- ``FrameEvidence.background``: BACKGROUND_DIM = 1280 dequantised EfficientNet-Lite3 pooled feature
  followed by 64 = an 8x8 grid (row-major, top-left first) of the fraction of each cell covered by
  person masks.

A layer switched off in ``PerceptionSettings.layers`` leaves its vector empty (length 0), never zeros
that look like a real measurement.
"""
from __future__ import annotations

CLIP_FEATURE_DIM = 512
SCENE_FEATURE_DIM = 1280
OCCUPANCY_GRID = 8  # background occupancy grid is OCCUPANCY_GRID x OCCUPANCY_GRID cells
COARSE_DIM = CLIP_FEATURE_DIM + 1  # 513
BACKGROUND_DIM = SCENE_FEATURE_DIM + OCCUPANCY_GRID * OCCUPANCY_GRID  # 1344

from uprm.perception.errors import PerceptionError  # noqa: E402
from uprm.perception.pipeline import LAYERS, PerceptionSettings, Perceiver, perceive  # noqa: E402

__all__ = [
    "BACKGROUND_DIM", "CLIP_FEATURE_DIM", "COARSE_DIM", "LAYERS", "OCCUPANCY_GRID", "PerceptionError",
    "PerceptionSettings", "Perceiver", "SCENE_FEATURE_DIM", "perceive",
]
