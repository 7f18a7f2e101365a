"""Sprites: people and items cut out of real frames with real masks, and the bank that holds them.

People: SSD person boxes (uprm.perception's ObjectDetector) are linked into tracks over consecutive
frames; each isolated, uncut person gets the product of two independent masks, selfie segmentation
(uprm.perception's SelfieSegmenter: what looks like a person) and background subtraction against the
clean plate (what is not the empty scene), so neither the segmenter's blur nor the plate's shadows
and lighting drift leak in. Runs of clean cut-outs of one
track become a ``SpriteTrack``: a real walk cycle that events replay elsewhere.

Items (for left-object events): compact things lying on uniform ground in the plate itself, cut by
their contrast to the local ground (median-filtered plate). They are what the footage has; vtest
offers small bundles and litter on its lawn, not luggage.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uprm.compose.cache import cache_dir, code_fingerprint
from uprm.compose.errors import ComposeError
from uprm.compose.perspective import PerspectiveFit, fit_perspective
from uprm.compose.plate import Plate, foreground
from uprm.evidence import VideoInfo

HARVEST_VERSION = 3  # bump when harvesting or the bank format changes (3: exact alpha), so cached banks are rebuilt
MAX_SAMPLE_FPS = 12.5  # faster footage is sampled down: gait needs ~10 samples/s, the detector is slow
MIN_PERSON_PX = 30  # smaller people make sprites too blurry to reuse
LINK_IOU = 0.3


@dataclass(frozen=True)
class Sprite:
    """One cut-out: colour, feathered alpha and the point where it touches the ground."""

    rgb: np.ndarray  # (h, w, 3) uint8
    alpha: np.ndarray  # (h, w) float32 in [0, 1], feathered (soft border)
    foot_xy: tuple[float, float]  # ground contact in sprite px
    source_foot_xy: tuple[float, float]  # the same point in the source frame, px
    source_frame: int
    ground_lab: tuple[float, float, float]  # mean (L, a, b) of the plate around the source spot

    @property
    def height_px(self) -> int:
        return int(self.alpha.shape[0])


@dataclass(frozen=True)
class SpriteTrack:
    """Consecutive cut-outs of one real person walking: a walk cycle with its real foot path."""

    track_id: int
    sprites: tuple[Sprite, ...]
    sample_fps: float

    @property
    def foot_path(self) -> np.ndarray:
        return np.array([s.source_foot_xy for s in self.sprites], np.float64)  # (n, 2)

    @property
    def duration_s(self) -> float:
        return len(self.sprites) / self.sample_fps

    @property
    def step_px(self) -> np.ndarray:
        """Net displacement per sample (dx, dy) in source px."""
        path = self.foot_path
        return (path[-1] - path[0]) / max(1, len(path) - 1)


@dataclass
class SpriteBank:
    """Everything harvested from one source video: tracks, items, the perspective fit and ground."""

    video: VideoInfo
    sample_step: int  # frames between samples (sample_fps = video.fps / sample_step)
    perspective: PerspectiveFit
    tracks: list[SpriteTrack]
    items: list[Sprite]
    foot_points: np.ndarray  # (N, 2) float32 foot positions of every person detected: where people walk

    @property
    def sample_fps(self) -> float:
        return self.video.fps / self.sample_step


# ---------------------------------------------------------------------------------------------------
# cutting


def feather(alpha: np.ndarray, sigma_px: float) -> np.ndarray:
    """Erode by one pixel (drops the halo of source background) then blur: soft, halo-free edges."""
    import cv2

    eroded = cv2.erode(alpha.astype(np.float32), np.ones((3, 3), np.uint8))
    return cv2.GaussianBlur(eroded, (0, 0), sigmaX=sigma_px).clip(0.0, 1.0)


def _trim(rgb: np.ndarray, alpha: np.ndarray, foot_xy: tuple[float, float], pad: int = 2):
    """Crop a cut-out to where its alpha is non-zero (plus pad); shift the foot anchor with it."""
    ys, xs = np.nonzero(alpha > 0.004)
    y1, y2 = max(0, ys.min() - pad), min(alpha.shape[0], ys.max() + 1 + pad)
    x1, x2 = max(0, xs.min() - pad), min(alpha.shape[1], xs.max() + 1 + pad)
    return (np.ascontiguousarray(rgb[y1:y2, x1:x2]), np.ascontiguousarray(alpha[y1:y2, x1:x2]),
            (foot_xy[0] - x1, foot_xy[1] - y1))


def _isolated(i: int, boxes: np.ndarray, frame_hw: tuple[int, int]) -> bool:
    """Uncut by the frame border and clear of every other detected person (no shared pixels)."""
    x1, y1, x2, y2 = boxes[i]
    h, w = frame_hw
    if x1 < 3 or y1 < 3 or x2 > w - 3 or y2 > h - 3 or (y2 - y1) < MIN_PERSON_PX:
        return False
    gx, gy = 0.15 * (x2 - x1), 0.05 * (y2 - y1)
    for j, (a1, b1, a2, b2) in enumerate(boxes):
        if j != i and min(x2 + gx, a2) > max(x1 - gx, a1) and min(y2 + gy, b2) > max(y1 - gy, b1):
            return False
    return True


def _window(crop, frame_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """The part of a (possibly overhanging) square crop that lies in the frame, integer px."""
    h, w = frame_hw
    return (max(0, int(np.floor(crop.x0_px))), max(0, int(np.floor(crop.y0_px))),
            min(w, int(np.ceil(crop.x0_px + crop.side_px))), min(h, int(np.ceil(crop.y0_px + crop.side_px))))


def cut_person(frame_rgb: np.ndarray, box: np.ndarray, prob: np.ndarray, crop, frame_index: int,
               plate: Plate) -> Sprite | None:
    """A clean person sprite from one detection, or None when the masks disagree (occlusion, clutter).

    ``prob`` is the selfie segmenter's (S, S) person probability over the square ``crop``
    (uprm.perception.crops.SquareCrop) around ``box``.
    """
    import cv2

    cx1, cy1, cx2, cy2 = _window(crop, frame_rgb.shape[:2])
    k = crop.side_px / prob.shape[0]  # segmenter px -> frame px
    to_window = np.array([[k, 0, crop.x0_px - cx1], [0, k, crop.y0_px - cy1]], np.float32)
    seg = cv2.warpAffine(prob, to_window, (cx2 - cx1, cy2 - cy1), flags=cv2.INTER_LINEAR,
                         borderValue=0.0).clip(0.0, 1.0)  # (h, w) person probability
    crop_rgb = frame_rgb[cy1:cy2, cx1:cx2]
    fg = foreground(crop_rgb, plate, window=(cx1, cy1, cx2, cy2))
    soft = seg * fg  # both must agree: a person AND not the empty scene
    hard = (soft > 0.35).astype(np.uint8)
    hard = cv2.morphologyEx(hard, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(hard)
    if n < 2:
        return None
    bx1, by1, bx2, by2 = (float(box[0]) - cx1, float(box[1]) - cy1, float(box[2]) - cx1, float(box[3]) - cy1)
    inside = np.zeros_like(hard, bool)
    inside[int(by1):int(np.ceil(by2)), int(bx1):int(np.ceil(bx2))] = True
    overlap = np.bincount(labels[inside], minlength=n)
    overlap[0] = 0
    comp = labels == int(overlap.argmax())
    box_h, box_area = by2 - by1, (bx2 - bx1) * (by2 - by1)
    ys, xs = np.nonzero(comp)
    seg_area = float(((seg > 0.5) & inside).sum())
    if (
        comp.sum() < 0.25 * box_area or comp.sum() > 0.9 * box_area  # fragment, or background blob
        or ys.max() - ys.min() < 0.85 * box_h  # head or feet missing
        or abs(ys.max() - by2) > 0.12 * box_h  # feet not where the detector put them
        or (comp & inside).sum() < 0.75 * seg_area  # holes where a static occluder covers the person
    ):
        return None
    foot_y = float(ys.max())
    foot_x = float(xs[ys >= foot_y - 0.08 * box_h].mean())
    alpha = feather(np.where(cv2.dilate(comp.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0, soft, 0.0)
                    .clip(0, 1) ** 0.5, sigma_px=max(0.7, box_h / 100))
    rgb, alpha, foot = _trim(crop_rgb, alpha, (foot_x, foot_y))
    ground = tuple(float(v) for v in plate.ground_lab(tuple(float(v) for v in box)))
    return Sprite(rgb, alpha.astype(np.float32), foot, (foot_x + cx1, foot_y + cy1), frame_index, ground)


def find_items(plate: Plate, perspective: PerspectiveFit, max_items: int = 6) -> list[Sprite]:
    """Compact items lying alone on uniform ground in the plate, cut by contrast to the local ground."""
    import cv2

    rgb = plate.rgb
    h, w = rgb.shape[:2]
    ground = cv2.medianBlur(rgb, 41)  # the local ground without anything small lying on it
    contrast = np.abs(rgb.astype(np.int16) - ground.astype(np.int16)).max(axis=2)
    mask = cv2.morphologyEx((contrast > 40).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    found: list[tuple[float, Sprite]] = []
    for i in range(1, n):
        x, y, bw, bh, area = (int(v) for v in stats[i])
        rel = max(bw, bh) / float(perspective.height_px(y + bh))  # size relative to a person there
        if area < 30 or not 0.1 <= rel <= 0.7 or area < 0.35 * bw * bh or bw < 8:
            continue
        if x < 2 or y < 2 or x + bw > w - 2 or y + bh > h - 2:
            continue
        blob = (labels == i).astype(np.uint8)
        r = max(bw, bh) // 2 + 4
        ring = (cv2.dilate(blob, np.ones((2 * r + 1, 2 * r + 1), np.uint8)) > 0) & (
            cv2.dilate(blob, np.ones((5, 5), np.uint8)) == 0)
        if np.mean(contrast[ring] < 20) < 0.9 or rgb[ring].std(axis=0).max() > 20:
            continue  # not alone on uniform ground: part of a structure, or a cut would take clutter
        X1, Y1, X2, Y2 = max(0, x - 4), max(0, y - 4), min(w, x + bw + 4), min(h, y + bh + 4)
        soft = (contrast[Y1:Y2, X1:X2].astype(np.float32) / 40.0).clip(0, 1) * (
            cv2.dilate(blob, np.ones((3, 3), np.uint8))[Y1:Y2, X1:X2] > 0)
        alpha = feather(soft, sigma_px=0.7)
        foot = (x + bw / 2 - X1, y + bh - 1 - Y1)
        crop, alpha, foot = _trim(rgb[Y1:Y2, X1:X2], alpha, foot)
        ground = tuple(float(v) for v in plate.ground_lab((x, y, x + bw, y + bh)))
        sprite = Sprite(crop, alpha, foot, (x + bw / 2, y + bh - 1.0), -1, ground)
        found.append((float(contrast[blob > 0].mean()) * area ** 0.5, sprite))
    found.sort(key=lambda t: -t[0])
    return [s for _, s in found[:max_items]]


# ---------------------------------------------------------------------------------------------------
# harvesting


def harvest(video: VideoInfo, plate: Plate, start: int = 0, stop: int | None = None, min_track_s: float = 1.5,
            max_tracks: int = 60, progress: Callable[[float], None] | None = None) -> SpriteBank:
    """Detect, link and cut every clean person of frames [start, stop) of a static-camera video."""
    import supervision as sv

    from uprm.compose.source import iter_frames
    from uprm.evidence import COCO_PERSON_ID
    from uprm.perception.detector import ObjectDetector
    from uprm.perception.masks import SelfieSegmenter

    stop = video.frame_count if stop is None else min(stop, video.frame_count)
    step = max(1, int(np.ceil(video.fps / MAX_SAMPLE_FPS)))
    min_len = max(3, int(round(min_track_s * video.fps / step)))
    detector, segmenter = ObjectDetector(min_score=0.5), SelfieSegmenter()
    feet: list[tuple[float, float, float]] = []  # (foot x, foot y, box height)
    runs: list[list[Sprite]] = []
    prev_boxes = np.zeros((0, 4), np.float32)
    prev_ids: list[int] = []
    open_runs: dict[int, list[Sprite]] = {}
    next_id = 0
    total = max(1, (stop - start) // step)
    for k, (index, rgb) in enumerate(iter_frames(video.path, start, stop, step)):
        detections = detector(rgb)
        boxes = detections.xyxy[detections.class_id == COCO_PERSON_ID].astype(np.float32)
        # greedy IoU linking to the previous sample: people at <= 12.5 samples/s move less than a width
        ids = [-1] * len(boxes)
        if len(boxes) and len(prev_boxes):
            iou = sv.box_iou_batch(boxes, prev_boxes)  # (N, M)
            for flat in np.argsort(-iou, axis=None):
                i, j = np.unravel_index(flat, iou.shape)
                if iou[i, j] < LINK_IOU:
                    break
                if ids[i] == -1 and prev_ids[j] not in ids:
                    ids[i] = prev_ids[j]
        for i in range(len(boxes)):
            if ids[i] == -1:
                ids[i], next_id = next_id, next_id + 1
        clear = [i for i in range(len(boxes)) if _isolated(i, boxes, rgb.shape[:2])]
        probs, crops = segmenter.person_probs(rgb, boxes[clear]) if clear else ([], [])
        cut = {i: cut_person(rgb, boxes[i], p, c, index, plate) for i, p, c in zip(clear, probs, crops)}
        for i, box in enumerate(boxes):
            x1, y1, x2, y2 = (float(v) for v in box)
            if y1 > 3 and y2 < video.height - 3:
                feet.append(((x1 + x2) / 2, y2, y2 - y1))
            sprite = cut.get(i)
            if sprite is None:
                run = open_runs.pop(ids[i], None)
                if run and len(run) >= min_len:
                    runs.append(run)
            else:
                open_runs.setdefault(ids[i], []).append(sprite)
        for tid in [t for t in open_runs if t not in ids]:  # tracks that ended
            run = open_runs.pop(tid)
            if len(run) >= min_len:
                runs.append(run)
        prev_boxes, prev_ids = boxes, ids
        if progress:
            progress(min(1.0, (k + 1) / total))
    runs.extend(run for run in open_runs.values() if len(run) >= min_len)
    if not feet:
        raise ComposeError(f"{video.path}: no person was detected; the compositor needs footage with people")
    feet_arr = np.array(feet, np.float32)
    perspective = fit_perspective(feet_arr[:, 1], feet_arr[:, 2])
    if not runs:
        raise ComposeError(
            f"{video.path}: no person could be cut out cleanly for {min_track_s:g} s (everyone is occluded, "
            "cut by the border or smaller than 30 px); use footage where single people walk in the open"
        )
    runs.sort(key=lambda r: (-len(r), r[0].source_frame))  # longest walk cycles first, ties by time
    tracks = [SpriteTrack(i, tuple(r), video.fps / step) for i, r in enumerate(runs[:max_tracks])]
    return SpriteBank(video, step, perspective, tracks, find_items(plate, perspective), feet_arr[:, :2])


# ---------------------------------------------------------------------------------------------------
# on-disk cache (harvesting a minute of footage costs about a minute of CPU)


def _cache_key(video: VideoInfo, start: int, stop: int | None, min_track_s: float) -> str:
    key = json.dumps([HARVEST_VERSION, code_fingerprint(), video.content_hash, start, stop, min_track_s])
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def _pack(sprites: list[Sprite]) -> dict[str, np.ndarray]:
    # alpha is kept exactly (float32), not at 8 bits: a bank read back from the cache must compose the same
    # pixels as the freshly harvested one (at 8 bits, a build from an empty cache and one from a warm cache
    # composed different clips from the same plans)
    return {
        "rgb": np.concatenate([s.rgb.reshape(-1) for s in sprites]),
        "alpha": np.concatenate([s.alpha.astype(np.float32, copy=False).reshape(-1) for s in sprites]),
        "shapes": np.array([s.alpha.shape for s in sprites], np.int64),  # (n, 2)
        "foot": np.array([s.foot_xy for s in sprites], np.float64),
        "src_foot": np.array([s.source_foot_xy for s in sprites], np.float64),
        "frame": np.array([s.source_frame for s in sprites], np.int64),
        "ground": np.array([s.ground_lab for s in sprites], np.float64),
    }


def _unpack(arrays: dict[str, np.ndarray], prefix: str) -> list[Sprite]:
    shapes = arrays[prefix + "shapes"]
    rgb, alpha, offset, out = arrays[prefix + "rgb"], arrays[prefix + "alpha"], 0, []
    for i, (h, w) in enumerate(shapes):
        n = int(h) * int(w)
        out.append(Sprite(
            rgb[3 * offset:3 * (offset + n)].reshape(h, w, 3), alpha[offset:offset + n].reshape(h, w),
            tuple(arrays[prefix + "foot"][i]), tuple(arrays[prefix + "src_foot"][i]),
            int(arrays[prefix + "frame"][i]), tuple(float(v) for v in arrays[prefix + "ground"][i]),
        ))
        offset += n
    return out


def save_bank(bank: SpriteBank, path: Path) -> None:
    arrays: dict[str, np.ndarray] = {}
    people = [s for t in bank.tracks for s in t.sprites]
    arrays.update({"p_" + k: v for k, v in _pack(people).items()})
    if bank.items:
        arrays.update({"i_" + k: v for k, v in _pack(bank.items).items()})
    arrays["track_lengths"] = np.array([len(t.sprites) for t in bank.tracks], np.int64)
    arrays["feet"] = bank.foot_points
    p = bank.perspective
    meta = {"step": bank.sample_step, "perspective": [p.slope, p.intercept_px, p.n_people, p.residual_px]}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".partial.npz")
    np.savez(tmp, **arrays)  # uncompressed: RGBA sprites barely compress and load 5x faster
    tmp.replace(path)


def load_bank(video: VideoInfo, path: Path) -> SpriteBank:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(arrays["meta"].tobytes().decode())
    people = _unpack(arrays, "p_")
    items = _unpack(arrays, "i_") if "i_shapes" in arrays else []
    tracks, offset = [], 0
    for i, n in enumerate(arrays["track_lengths"]):
        tracks.append(SpriteTrack(i, tuple(people[offset:offset + n]), video.fps / meta["step"]))
        offset += int(n)
    slope, intercept, n_people, resid = meta["perspective"]
    return SpriteBank(video, int(meta["step"]), PerspectiveFit(slope, intercept, int(n_people), resid),
                      tracks, items, arrays["feet"])


def load_or_harvest(video: VideoInfo, plate: Plate, start: int = 0, stop: int | None = None,
                    min_track_s: float = 1.5, use_cache: bool = True,
                    progress: Callable[[float], None] | None = None) -> SpriteBank:
    """The sprite bank of a video window, from the on-disk cache when the same footage was harvested."""
    path = cache_dir() / f"bank_{_cache_key(video, start, stop, min_track_s)}.npz"
    if use_cache and path.is_file():
        return load_bank(video, path)
    bank = harvest(video, plate, start, stop, min_track_s, progress=progress)
    if use_cache:
        save_bank(bank, path)
    return bank
