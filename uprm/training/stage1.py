"""Stage 1: physical-world instructions (regions, human motion, backgrounds) before DeepSVU tuning.

The paper pre-tunes on RefCOCO (regions), HumanML3D (motions) and RSI-CB (backgrounds) with
instructions such as "Analyze the designated area <region> and the actions depicted in the video",
<region> being the target's coordinates. Two sources here:

1. Built from the frozen front-ends' own evidence of any video (``evidence_instructions``): for the
   longest tracks, a region instruction (box at first sight -> what it is, how it moves, its scene-graph
   relations), a motion instruction for people (posture from the keypoints, speed and direction from the
   track) and one background instruction (scene labels, crowd size, objects present). Answers say only
   what the evidence holds, so this runs offline on the user's own footage.

2. Loaders for the paper's datasets, when a user has them locally. Accepted shapes:

   RefCOCO-style (``load_refcoco``), a JSON file holding either
     - a list of ``{"image": "path.jpg", "bbox": [x, y, w, h], "sentences": ["...", ...]}`` (COCO box in
       pixels; "sentence" for one; optional "width"/"height", else read from the image header), or
     - COCO-style refs ``{"images": [{"id", "file_name", "width", "height"}], "annotations": [{"id",
       "image_id", "bbox"}], "refs": [{"image_id", "ann_id", "sentences": [{"sent": "..."}]}]}`` (what
       the official ``refs(unc).p`` + ``instances.json`` hold; we never unpickle files: convert the
       pickle to JSON once yourself). Image paths are relative to the file or ``image_root``.
   HumanML3D-style (``load_humanml3d``), a folder with ``new_joints/<id>.npy`` ((frames, 22, 3) SMPL
     joints at 20 fps, y up, metres) and ``texts/<id>.txt`` (lines ``caption#tokens#start#end``, start and
     end in seconds, 0 0 = the whole motion); an optional ``<split>.txt`` lists the ids to use. Joints are
     mapped to COCO-17 and projected onto a virtual 4 m x 3 m camera frame (pose-only ExpertInputs).
   RSI-CB-style (``load_rsicb``), a folder of class folders of images (``<root>/<...>/<class>/<img>``):
     the class is the image's parent folder name, underscores read as spaces.

   Images become one-second still clips for perception (``still_clip``).
"""
from __future__ import annotations

import hashlib
import json
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from uprm.evidence import JOINT_NAMES, VideoEvidence
from uprm.training.data import TrainingExample
from uprm.training.errors import TrainingDataError

REGION_QUESTION = "Analyze the designated area {region} and the actions depicted in the video"
MOTION_QUESTION = "Describe the body pose and motion of the person in the designated area {region}"
BACKGROUND_QUESTION = "Describe the background of the scene in the video"
ACTION_QUESTION = "Describe the actions of the person in the video"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
HUMANML3D_FPS = 20.0
STILL_SECONDS = 1.0
_J = {name: i for i, name in enumerate(JOINT_NAMES)}
# COCO-17 joint <- SMPL-22 joint of HumanML3D's new_joints (face joints all take the head, less sure)
SMPL_TO_COCO = (15, 15, 15, 15, 15, 16, 17, 18, 19, 20, 21, 1, 2, 4, 5, 7, 8)
_FACE_SCORE = 0.5
VIEW_W_M, VIEW_H_M = 4.0, 3.0  # the virtual camera frame HumanML3D motions are projected onto


def format_region(box_norm: Sequence[float], time_s: float | None = None) -> str:
    """[x1, y1, x2, y2] in [0, 1] of the frame (2 decimals), with the time when given."""
    text = "[" + ", ".join(f"{min(max(v, 0.0), 1.0):.2f}" for v in box_norm) + "]"
    return text if time_s is None else f"{text} at {time_s:.1f}s"


# ------------------------------------------------------------------------------------- from evidence


def _tracks(evidence: VideoEvidence) -> dict[int, list[tuple[int, int]]]:
    """track id -> [(frame number in evidence.frames, entity index)] in time order."""
    out: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for f, frame in enumerate(evidence.frames):
        for i, tid in enumerate(frame.track_ids):
            if int(tid) >= 0:
                out[int(tid)].append((f, i))
    return out


def _movement(evidence: VideoEvidence, hits: list[tuple[int, int]], is_person: bool) -> str:
    frames = evidence.frames
    (f0, i0), (f1, i1) = hits[0], hits[-1]
    b0, b1 = frames[f0].boxes[i0], frames[f1].boxes[i1]
    dt = frames[f1].time_s - frames[f0].time_s
    heights = [frames[f].boxes[i][3] - frames[f].boxes[i][1] for f, i in hits]
    h = max(float(np.mean(heights)), 1.0)
    dx = ((b1[0] + b1[2]) - (b0[0] + b0[2])) / 2
    dy = ((b1[1] + b1[3]) - (b0[1] + b0[3])) / 2
    speed = math.hypot(dx, dy) / h / dt if dt > 0 else 0.0  # body heights per second
    if speed < 0.15:
        return "stays in place" if not is_person else "stands still"
    verb = "moves" if not is_person else ("walks" if speed < 1.2 else "runs")
    if abs(dx) >= abs(dy):
        where = "to the right" if dx > 0 else "to the left"
    else:
        where = "towards the camera" if dy > 0 else "away from the camera"
    return f"{verb} {where}"


_PHRASES = {"moving_away": "moving away from", "lying": "lying down"}


def _relations_of(evidence: VideoEvidence, hits: list[tuple[int, int]]) -> list[str]:
    """Predicates with the entity as subject, most frequent first: "holding a handbag", "lying down"."""
    counts: Counter[str] = Counter()
    for f, i in hits:
        frame = evidence.frames[f]
        for r in frame.relations:
            if r.subject != i:
                continue
            verb = _PHRASES.get(r.predicate, r.predicate.replace("_", " "))
            counts[verb if r.object == r.subject else f"{verb} a {frame.class_names[r.object]}"] += 1
    return [p for p, _ in counts.most_common(3)]


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _posture(kp: np.ndarray, box: np.ndarray) -> str | None:
    """upright / lying / bending from one person's keypoints (x, y, score) in pixels; None if unsure."""
    ok = kp[:, 2] >= 0.3
    w, h = box[2] - box[0], box[3] - box[1]
    if w > 1.3 * h:
        return "lying"
    head = kp[[_J["nose"], _J["left_eye"], _J["right_eye"]]]
    hips = kp[[_J["left_hip"], _J["right_hip"]]]
    ankles = kp[[_J["left_ankle"], _J["right_ankle"]]]
    if not (ok[[_J["left_hip"], _J["right_hip"]]].any() and (head[:, 2] >= 0.3).any()):
        return None
    head_y = head[head[:, 2] >= 0.3, 1].mean()
    hip_y = hips[hips[:, 2] >= 0.3, 1].mean()
    if head_y > hip_y - 0.15 * h:
        return "bending over"
    if (ankles[:, 2] >= 0.3).any() and ankles[ankles[:, 2] >= 0.3, 1].mean() > hip_y:
        return "upright"
    return None


def _arms_raised(kp: np.ndarray) -> bool:
    for wrist, shoulder in (("left_wrist", "left_shoulder"), ("right_wrist", "right_shoulder")):
        w, s = kp[_J[wrist]], kp[_J[shoulder]]
        if w[2] >= 0.3 and s[2] >= 0.3 and w[1] < s[1]:
            return True
    return False


def _box_norm(evidence: VideoEvidence, box: np.ndarray) -> list[float]:
    w, h = evidence.video.width, evidence.video.height
    return [float(box[0]) / w, float(box[1]) / h, float(box[2]) / w, float(box[3]) / h]


def evidence_instructions(evidence: VideoEvidence, video_id: str | None = None, video_path: str | None = None,
                          max_tracks: int = 3, min_track_s: float = 1.0) -> list[TrainingExample]:
    """Region, motion and background instructions whose answers are read off the evidence."""
    vid = video_id or Path(evidence.video.path).stem
    path = video_path if video_path is not None else evidence.video.path
    frames = evidence.frames
    if not frames:
        raise TrainingDataError(f"the evidence of {vid!r} has no frames: nothing to describe")
    tracks = _tracks(evidence)
    ranked = sorted(tracks.items(), key=lambda kv: (-len(kv[1]), kv[1][0][0], kv[0]))
    out: list[TrainingExample] = []

    def add(kind: str, question: str, answer: str) -> None:
        out.append(TrainingExample(vid, path, question, answer, kind=kind, source=f"evidence:{vid}"))

    for tid, hits in ranked[:max_tracks]:
        f0, i0 = hits[0]
        f1, _ = hits[-1]
        t0, t1 = frames[f0].time_s, frames[f1].time_s
        if t1 - t0 + 1 / evidence.sample_fps < min_track_s:
            continue
        name = frames[f0].class_names[i0]
        is_person = bool(frames[f0].is_person[i0])
        region = format_region(_box_norm(evidence, frames[f0].boxes[i0]), t0)
        rel = _relations_of(evidence, hits)
        answer = f"A {name} {_movement(evidence, hits, is_person)} from {t0:.1f}s to {t1:.1f}s."
        if rel:
            answer += f" {'The person' if is_person else 'It'} is {_and(rel)}."
        add("region", REGION_QUESTION.format(region=region), answer)
        if is_person:
            postures = Counter(p for f, i in hits if (p := _posture(frames[f].keypoints[i], frames[f].boxes[i])))
            if postures:
                raised = sum(_arms_raised(frames[f].keypoints[i]) for f, i in hits) > len(hits) / 3
                posture = postures.most_common(1)[0][0]
                moving = _movement(evidence, hits, True).replace("stands still", "stays in place")
                text = (f"The person is {posture} and {moving}"
                        f"; the arms are {'raised' if raised else 'down'}.")
                add("motion", MOTION_QUESTION.format(region=region), text)

    labels: Counter[str] = Counter()
    objects: Counter[str] = Counter()
    people = []
    for frame in frames:
        for name, _ in frame.scene_labels[:2]:
            labels[name] += 1
        people.append(int(frame.is_person.sum()))
        objects.update({n for n, p in zip(frame.class_names, frame.is_person) if not p})
    parts = []
    if labels:
        parts.append(f"The scene looks like a {' or a '.join(n for n, _ in labels.most_common(2))}.")
    mean_people = float(np.mean(people))
    crowd = "nobody is" if mean_people < 0.5 else (f"about {round(mean_people)} people are" if mean_people >= 1.5
                                                  else "one person is")
    parts.append(f"On average {crowd} visible.")
    steady = [n for n, c in objects.most_common() if c >= 0.3 * len(frames)][:3]
    if steady:
        parts.append(f"Also present: {_and(steady)}.")
    add("background", BACKGROUND_QUESTION, " ".join(parts))
    return out


# ------------------------------------------------------------------------------------- images


def still_clip(image_path: str | Path, out_dir: str | Path | None = None, seconds: float = STILL_SECONDS,
               fps: float = 2.0) -> Path:
    """A short H.264 clip repeating one image (perception reads videos), cached by the image's hash."""
    import cv2

    from uprm.video import write_h264

    image_path = Path(image_path)
    if out_dir is None:
        from uprm.model.language import cache_root

        out_dir = cache_root() / "stills"
    digest = hashlib.sha256(image_path.read_bytes()).hexdigest()[:20]
    out = Path(out_dir) / f"{digest}.mp4"
    if out.is_file():
        return out
    bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise TrainingDataError(f"{image_path}: cannot read this image (expected jpg, png, tif, bmp or webp)")
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    if min(rgb.shape[:2]) < 16:
        raise TrainingDataError(f"{image_path}: image of {rgb.shape[1]}x{rgb.shape[0]} px is too small")
    return write_h264((rgb for _ in range(max(2, round(seconds * fps)))), out, fps)


def _image_size(path: Path, entry: dict) -> tuple[int, int]:
    if entry.get("width") and entry.get("height"):
        return int(entry["width"]), int(entry["height"])
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except OSError:
        raise TrainingDataError(f"{path}: cannot read the image to learn its size (give width and height)") from None


def load_refcoco(path: str | Path, image_root: str | Path | None = None) -> list[TrainingExample]:
    """Region instructions from a RefCOCO-style JSON (shapes in the module docstring)."""
    path = Path(path)
    data = _read_json(path, "a RefCOCO-style JSON")
    root = Path(image_root) if image_root else path.parent
    items: list[tuple[str, list[float], list[str], dict]] = []
    if isinstance(data, dict) and {"images", "annotations", "refs"} <= data.keys():
        images = {im["id"]: im for im in data["images"]}
        anns = {a["id"]: a for a in data["annotations"]}
        for k, ref in enumerate(data["refs"]):
            try:
                ann, im = anns[ref["ann_id"]], images[ref["image_id"]]
                sents = [s["sent"] if isinstance(s, dict) else str(s) for s in ref["sentences"]]
                items.append((im["file_name"], list(ann["bbox"]), sents, im))
            except (KeyError, TypeError):
                raise TrainingDataError(f"{path}: refs[{k}] needs image_id, ann_id and sentences that exist in "
                                        "'images' and 'annotations'") from None
    elif isinstance(data, list):
        for k, e in enumerate(data):
            if not isinstance(e, dict) or "image" not in e or "bbox" not in e:
                raise TrainingDataError(f"{path}: entry #{k} needs 'image', 'bbox' [x, y, w, h] and 'sentences'")
            sents = e.get("sentences") or ([e["sentence"]] if e.get("sentence") else [])
            items.append((e["image"], list(e["bbox"]), [str(s) for s in sents], e))
    else:
        raise TrainingDataError(f"{path}: expected a list of {{image, bbox, sentences}} or a COCO-style "
                                "{images, annotations, refs} object")
    out = []
    for k, (image, bbox, sents, meta) in enumerate(items):
        img = Path(image) if Path(image).is_absolute() else root / image
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
            raise TrainingDataError(f"{path}: item #{k} bbox must be [x, y, w, h] in pixels, got {bbox!r}")
        if not sents:
            raise TrainingDataError(f"{path}: item #{k} ({image}) has no referring sentence")
        if not img.is_file():
            raise TrainingDataError(f"{path}: image {img} does not exist (pass image_root / --video-root)")
        w, h = _image_size(img, meta)
        x, y, bw, bh = (float(v) for v in bbox)
        region = format_region([x / w, y / h, (x + bw) / w, (y + bh) / h])
        for s in sents:
            answer = s.strip()
            answer = answer[:1].upper() + answer[1:]
            out.append(TrainingExample(img.stem, str(img), REGION_QUESTION.format(region=region),
                                       answer if answer.endswith(".") else answer + ".", kind="region",
                                       source=str(path)))
    return out


def load_rsicb(root: str | Path) -> list[TrainingExample]:
    """Background instructions from a folder of class folders of images."""
    root = Path(root)
    if not root.is_dir():
        raise TrainingDataError(f"{root}: not a folder (expected <root>/<class>/<image> files)")
    out = []
    for img in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        if img.parent == root:
            continue  # no class folder
        label = img.parent.name.replace("_", " ").strip()
        out.append(TrainingExample(f"{img.parent.name}/{img.stem}", str(img), BACKGROUND_QUESTION,
                                   f"The background is {label}.", kind="background", source=str(root)))
    if not out:
        raise TrainingDataError(f"{root}: found no images in class folders (<root>/<class>/<image>.jpg|png|tif)")
    return out


# ------------------------------------------------------------------------------------- HumanML3D


def smpl_to_coco_2d(joints: np.ndarray) -> np.ndarray:
    """(F, 22, 3) SMPL joints in metres (y up) -> (F, 17, 3) COCO (x, y, score), x and y in [0, 1] of a
    VIEW_W_M x VIEW_H_M frame centred on the motion (camera looking along -z, y down in the image).

    Joints leaving the frame get score 0 (and zero coordinates, as featurize writes undetected joints).
    """
    if joints.ndim != 3 or joints.shape[1:] != (22, 3):
        raise TrainingDataError(f"HumanML3D joints must be (frames, 22, 3), got {joints.shape}")
    coco = joints[:, SMPL_TO_COCO, :]  # (F, 17, 3)
    cx = float(joints[:, 0, 0].mean())
    ground = float(joints[..., 1].min())
    x = (coco[..., 0] - cx) / VIEW_W_M + 0.5
    y = 1.0 - (coco[..., 1] - ground) / VIEW_H_M - 0.05  # feet near the bottom of the frame
    score = np.ones(x.shape, np.float32)
    score[:, :5] = _FACE_SCORE
    inside = (x >= 0) & (x <= 1) & (y >= 0) & (y <= 1)
    score = np.where(inside, score, 0.0)
    out = np.stack([np.where(inside, x, 0.0), np.where(inside, y, 0.0), score], axis=-1).astype(np.float32)
    return out


def pose_inputs(pose_xy: np.ndarray, times_s: np.ndarray, config):
    """One person's (T, 17, 3) pose (x, y in [0, 1], score) as ExpertInputs (B = 1) with no other evidence."""
    import torch

    from uprm.model.inputs import ExpertInputs
    from uprm.evidence import PREDICATES

    t, p, k = len(times_s), config.max_persons, config.max_entities
    pose = torch.zeros(1, t, p, 17, 3)
    pose[0, :, 0] = torch.from_numpy(pose_xy)
    person = torch.zeros(1, t, p, dtype=torch.bool)
    person[0, :, 0] = torch.from_numpy((pose_xy[..., 2] > 0).any(-1))
    return ExpertInputs(
        pose=pose, person_mask=person, object_class=torch.zeros(1, t, k, dtype=torch.long),
        object_box=torch.zeros(1, t, k, 4), object_score=torch.zeros(1, t, k),
        object_mask=torch.zeros(1, t, k, dtype=torch.bool), relations=torch.zeros(1, t, len(PREDICATES), k, k),
        background=torch.zeros(1, t, config.d_bg), background_mask=torch.zeros(1, t, dtype=torch.bool),
        coarse=torch.zeros(1, t, config.d_coarse), step_mask=torch.ones(1, t, dtype=torch.bool),
        times_s=torch.from_numpy(np.asarray(times_s, np.float32)).unsqueeze(0))


def motion_features(npy_path: str | Path, config, sample_fps: float = 2.0):
    """A HumanML3D motion file as VideoFeatures (pose-only ExpertInputs at ``sample_fps``)."""
    from uprm.training.features import VideoFeatures

    try:
        joints = np.load(npy_path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise TrainingDataError(f"{npy_path}: not a readable .npy joints file ({exc})") from None
    if len(joints) == 0:
        raise TrainingDataError(f"{npy_path}: the motion has no frames")
    stride = max(1, round(HUMANML3D_FPS / sample_fps))
    idx = np.arange(0, len(joints), stride)
    pose = smpl_to_coco_2d(np.asarray(joints, np.float32))[idx]
    times = idx / HUMANML3D_FPS
    return VideoFeatures(pose_inputs(pose, times, config), HUMANML3D_FPS / stride, len(joints) / HUMANML3D_FPS)


def load_humanml3d(root: str | Path, split: str | None = None) -> list[TrainingExample]:
    """Motion instructions from a HumanML3D-style folder; features come from ``motion_features``."""
    root = Path(root)
    joints_dir, texts_dir = root / "new_joints", root / "texts"
    if not joints_dir.is_dir() or not texts_dir.is_dir():
        raise TrainingDataError(f"{root}: expected new_joints/<id>.npy and texts/<id>.txt (HumanML3D layout)")
    if split:
        split_file = root / f"{split}.txt"
        if not split_file.is_file():
            raise TrainingDataError(f"{split_file}: no such split file")
        ids = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
    else:
        ids = sorted(p.stem for p in joints_dir.glob("*.npy"))
    out = []
    for mid in ids:
        npy, txt = joints_dir / f"{mid}.npy", texts_dir / f"{mid}.txt"
        if not (npy.is_file() and txt.is_file()):
            continue  # HumanML3D's split files list a few ids without both files
        for n, line in enumerate(txt.read_text(encoding="utf-8").splitlines()):
            if not line.strip():
                continue
            parts = line.split("#")
            caption = parts[0].strip()
            try:
                start, end = (float(parts[2]), float(parts[3])) if len(parts) >= 4 else (0.0, 0.0)
            except ValueError:
                raise TrainingDataError(f"{txt}:{n + 1}: start/end must be seconds "
                                        "(caption#tokens#start#end)") from None
            if not caption:
                continue
            span = (start, end) if end > start else None  # 0 0: the caption covers the whole motion
            answer = caption[:1].upper() + caption[1:]
            out.append(TrainingExample(mid, str(npy), ACTION_QUESTION,
                                       answer if answer.endswith(".") else answer + ".", kind="motion",
                                       span_s=span, source=str(root)))
    if not out:
        raise TrainingDataError(f"{root}: no motion with both new_joints/<id>.npy and a caption in texts/<id>.txt")
    return out


def _read_json(path: Path, what: str):
    if not path.is_file():
        raise TrainingDataError(f"{path}: no such file (expected {what})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TrainingDataError(f"{path}: not valid JSON ({exc}); expected {what}") from None
