"""The one evidence type that flows from perception to the experts, overlays, chat and store.

Like supervision's ``Detections``: parallel arrays, length-checked on construction. One
``FrameEvidence`` per sampled time step; a ``VideoEvidence`` holds them with the video's metadata.
Coordinates are pixels of the original frame (x1, y1, x2, y2); times are seconds.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NUM_JOINTS = 17
COCO_PERSON_ID = 1  # COCO-91 id of "person" as used by SSD-MobileNetV2

# COCO keypoint order (MoveNet / COCO 17).
JOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
# Undirected skeleton edges over JOINT_NAMES indices (COCO), the graph HPE attends over.
SKELETON_EDGES = (
    (0, 1), (0, 2), (1, 3), (2, 4), (0, 5), (0, 6), (5, 6), (5, 7), (7, 9), (6, 8), (8, 10),
    (5, 11), (6, 12), (11, 12), (11, 13), (13, 15), (12, 14), (14, 16),
)

# Per entity, from the motion front-end (uprm.perception.motion), FrameEvidence.motion's columns:
# optical flow inside the entity's box over the last sample interval (every frame, not only the
# sampled ones): mean speed, mean velocity (x right, y down), how much the velocity flips back and
# forth, the moving fraction of the box, how much faster its top comes down than its bottom, in body
# heights per second (box heights), and how far it went to and fro over the last 2 s without getting
# anywhere (path minus net displacement, body heights). For scene changes (things that appeared and
# stayed): how much they changed (change_grey, mean |now - before|), their contrast with the ground
# around them now and before (0-1), log(1 + seconds since they appeared), the fraction of them a person
# box covers, and log(1 + seconds between the last time a person stood there and the change appearing):
# an item put down or a person who fell has ~0, a flapping tape nobody touched has the cap.
# Columns that do not apply are zero.
ENTITY_MOTION = (
    "flow_speed_hps", "flow_vx_hps", "flow_vy_hps", "flow_flail_hps", "flow_moving_frac", "flow_drop_hps",
    "flow_wander_2s_h",
    "change_grey", "change_contrast", "change_contrast_before", "change_log_age_s", "change_person_overlap",
    "change_log_since_person_s",
)
# A scene change is an entity of its own: COCO-91 id 0 ("unknown"), which the detector never emits.
SCENE_CHANGE_CLASS_ID = 0
SCENE_CHANGE_NAME = "scene change"

# Predicates the scene-graph builder may emit; the index is the predicate id the ORE embeds.
PREDICATES = (
    "near", "touching", "holding", "riding", "approaching", "moving_away", "lying", "running",
)


@dataclass(frozen=True)
class VideoInfo:
    """Metadata of a video file as decoded (not as its container claims)."""

    path: str
    content_hash: str  # sha256 of the file bytes
    fps: float
    frame_count: int
    duration_s: float
    width: int
    height: int
    rotation_deg: int = 0


@dataclass(frozen=True)
class Relation:
    """A directed scene-graph edge between two entities of the same frame."""

    subject: int  # index into FrameEvidence entities
    predicate: str  # one of PREDICATES
    object: int  # index into FrameEvidence entities; == subject for unary states (lying, running)
    score: float  # in [0, 1]
    evidence: str  # why it was produced, in plain words, e.g. "right wrist inside box of handbag"


@dataclass
class FrameEvidence:
    """Everything the frozen front-ends saw at one sampled time step.

    Entities (people and objects) are parallel arrays of length N. ``keypoints`` is (N, 17, 3) with
    (x_px, y_px, score); rows of non-person entities are all zero. ``masks`` is (N, Hm, Wm) bool at the
    video's mask resolution (see ``VideoEvidence.mask_size``) or None when no mask was made;
    ``mask_sources[i]`` names what produced mask i ("sam2", "selfie_segmentation", "bg_subtraction",
    "scene_change", or "" for none). ``motion`` is (N, len(ENTITY_MOTION)) from the motion front-end,
    or None when it did not run. Scene changes (``SCENE_CHANGE_CLASS_ID``) come after the detections.
    """

    time_s: float
    frame_index: int
    boxes: np.ndarray  # (N, 4) float32 xyxy px
    class_ids: np.ndarray  # (N,) int, COCO-91 ids
    class_names: list[str]
    scores: np.ndarray  # (N,) float32 detector confidence
    track_ids: np.ndarray  # (N,) int, -1 when untracked
    keypoints: np.ndarray  # (N, 17, 3) float32
    relations: list[Relation] = field(default_factory=list)
    masks: np.ndarray | None = None  # (N, Hm, Wm) bool
    mask_sources: list[str] = field(default_factory=list)
    background: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # (D_bg,)
    coarse: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # (D_coarse,)
    scene_labels: list[tuple[str, float]] = field(default_factory=list)  # top ImageNet labels
    fight_prob: float = 0.0  # mc3_18 surveillance-fight probability: a feature, not a verdict
    motion: np.ndarray | None = None  # (N, len(ENTITY_MOTION)) float32, see ENTITY_MOTION

    def __post_init__(self) -> None:
        n = len(self.boxes)
        checks = {
            "class_ids": len(self.class_ids), "class_names": len(self.class_names),
            "scores": len(self.scores), "track_ids": len(self.track_ids),
            "keypoints": len(self.keypoints),
        }
        if self.masks is not None:
            checks["masks"] = len(self.masks)
            checks["mask_sources"] = len(self.mask_sources)
        if self.motion is not None:
            checks["motion"] = len(self.motion)
        bad = {k: v for k, v in checks.items() if v != n}
        if bad:
            raise ValueError(f"FrameEvidence arrays must all have length {n} (boxes); got {bad}")
        if self.motion is not None and np.asarray(self.motion).shape[1:] != (len(ENTITY_MOTION),):
            raise ValueError(f"motion must be (N, {len(ENTITY_MOTION)}), got {np.asarray(self.motion).shape}")
        if n and self.keypoints.shape[1:] != (NUM_JOINTS, 3):
            raise ValueError(f"keypoints must be (N, 17, 3), got {self.keypoints.shape}")
        for r in self.relations:
            if not (0 <= r.subject < n and 0 <= r.object < n):
                raise ValueError(f"relation {r} refers to an entity outside 0..{n - 1}")
            if r.predicate not in PREDICATES:
                raise ValueError(f"unknown predicate {r.predicate!r}; expected one of {PREDICATES}")

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def is_person(self) -> np.ndarray:
        return self.class_ids == COCO_PERSON_ID

    @classmethod
    def empty(cls, time_s: float, frame_index: int) -> "FrameEvidence":
        return cls(
            time_s=time_s, frame_index=frame_index,
            boxes=np.zeros((0, 4), np.float32), class_ids=np.zeros(0, int), class_names=[],
            scores=np.zeros(0, np.float32), track_ids=np.zeros(0, int),
            keypoints=np.zeros((0, NUM_JOINTS, 3), np.float32),
        )


@dataclass
class VideoEvidence:
    """The evidence of a whole video at its sampling rate, plus how it was produced."""

    video: VideoInfo
    sample_fps: float
    frames: list[FrameEvidence]
    mask_size: tuple[int, int] = (0, 0)  # (width, height) of FrameEvidence.masks
    versions: dict[str, str] = field(default_factory=dict)  # front-end name -> version string
    warnings: list[str] = field(default_factory=list)  # e.g. "decoding stopped at 41.2 s: corrupt packet"

    @property
    def times_s(self) -> np.ndarray:
        return np.array([f.time_s for f in self.frames], dtype=np.float64)
