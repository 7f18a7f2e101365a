"""People and COCO objects: SSD-MobileNetV2 (TF Object Detection API, COCO-91 ids) through cv2.dnn."""
from __future__ import annotations

from functools import cached_property

import numpy as np

from uprm.evidence import COCO_PERSON_ID
from uprm.perception import weights

SSD_INPUT_PX = 300
DETECTOR_VERSION = "ssd_mobilenet_v2_coco_2018_03_29"

# COCO-91 label map of the TF Object Detection API (ids 12, 26, 29, 30, 45, 66, 68, 69, 71, 83 unused).
COCO91_NAMES: dict[int, str] = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train",
    8: "truck", 9: "boat", 10: "traffic light", 11: "fire hydrant", 13: "stop sign",
    14: "parking meter", 15: "bench", 16: "bird", 17: "cat", 18: "dog", 19: "horse", 20: "sheep",
    21: "cow", 22: "elephant", 23: "bear", 24: "zebra", 25: "giraffe", 27: "backpack", 28: "umbrella",
    31: "handbag", 32: "tie", 33: "suitcase", 34: "frisbee", 35: "skis", 36: "snowboard",
    37: "sports ball", 38: "kite", 39: "baseball bat", 40: "baseball glove", 41: "skateboard",
    42: "surfboard", 43: "tennis racket", 44: "bottle", 46: "wine glass", 47: "cup", 48: "fork",
    49: "knife", 50: "spoon", 51: "bowl", 52: "banana", 53: "apple", 54: "sandwich", 55: "orange",
    56: "broccoli", 57: "carrot", 58: "hot dog", 59: "pizza", 60: "donut", 61: "cake", 62: "chair",
    63: "couch", 64: "potted plant", 65: "bed", 67: "dining table", 70: "toilet", 72: "tv",
    73: "laptop", 74: "mouse", 75: "remote", 76: "keyboard", 77: "cell phone", 78: "microwave",
    79: "oven", 80: "toaster", 81: "sink", 82: "refrigerator", 84: "book", 85: "clock", 86: "vase",
    87: "scissors", 88: "teddy bear", 89: "hair drier", 90: "toothbrush",
}


def coco_name(class_id: int) -> str:
    return COCO91_NAMES.get(int(class_id), f"coco_{int(class_id)}")


class ObjectDetector:
    """SSD-MobileNetV2 on the whole frame: boxes in pixels of the frame given, best first.

    The graph takes 300x300 RGB with its own normalisation; frames are already RGB (no swap).
    Class-agnostic NMS at IoU 0.7 removes the same thing found twice under two labels (car/truck).
    """

    def __init__(self, min_score: float = 0.4, num_threads: int = 2):
        if not 0.0 < min_score < 1.0:
            raise ValueError(f"detector min_score must be in (0, 1), got {min_score}")
        self.min_score = min_score
        self.num_threads = num_threads

    @cached_property
    def _net(self):
        import cv2

        cv2.setNumThreads(self.num_threads)
        pb, pbtxt = weights.ssd_files()
        return cv2.dnn.readNetFromTensorflow(str(pb), str(pbtxt))

    def __call__(self, frame_rgb: np.ndarray):
        """sv.Detections with xyxy (N, 4) float32 px, confidence, class_id (COCO-91), data["class_name"]."""
        import cv2
        import supervision as sv

        h, w = frame_rgb.shape[:2]
        self._net.setInput(cv2.dnn.blobFromImage(frame_rgb, size=(SSD_INPUT_PX, SSD_INPUT_PX), swapRB=False))
        out = self._net.forward()[0, 0]  # (100, 7): image id, class id, score, x1, y1, x2, y2 in [0, 1]
        out = out[out[:, 2] >= self.min_score]
        boxes = (out[:, 3:7] * np.array([w, h, w, h], np.float32)).astype(np.float32)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        keep = ((boxes[:, 2] - boxes[:, 0]) >= 2) & ((boxes[:, 3] - boxes[:, 1]) >= 2)
        class_ids = out[keep, 1].astype(int)
        det = sv.Detections(
            xyxy=boxes[keep], confidence=out[keep, 2].astype(np.float32), class_id=class_ids,
            data={"class_name": np.array([coco_name(c) for c in class_ids], dtype=object)},
        )
        if len(det) > 1:
            det = det.with_nms(threshold=0.7, class_agnostic=True)
        order = np.argsort(-det.confidence, kind="stable")
        return det[order]


def person_mask(class_ids: np.ndarray) -> np.ndarray:
    return np.asarray(class_ids) == COCO_PERSON_ID
