"""Scene-graph edges from geometry, keypoints and motion across sampled frames.

Pure numpy over ``FrameEvidence`` (boxes, classes, track ids, keypoints, times): no model, no I/O.
Distances are measured in body heights (the person's box height) so thresholds hold near and far
from the camera; speeds in body heights per second (walking is about 0.5-1, running 2-4).
Every edge has a score in [0, 1] and says in plain words why it was made.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from uprm.evidence import COCO_PERSON_ID, FrameEvidence, Relation

RELATIONS_VERSION = "geometry-v1"

KP_MIN_SCORE = 0.3  # MoveNet joints below this are not trusted
NEAR_BODY_HEIGHTS = 1.0  # centres closer than this (in body heights) and boxes apart -> near
TREND_WINDOW_S = 2.0  # approach / retreat and speed look this far back
TREND_MIN_POINTS = 3  # at 2 fps: 1 s of history at least
TREND_MIN_RATE = 0.3  # body heights per second of closing (opening) to call approaching (moving_away)
TREND_MAX_BODY_HEIGHTS = 3.0  # only pairs this close can be approaching / moving away
RUN_SPEED = 1.5  # body heights per second; brisk walking stays below ~1.1
LYING_ASPECT = 1.0  # a lying person's box is wider than tall...
LYING_TORSO_DEG = 55.0  # ...and the shoulder->hip line is far from vertical
LYING_ASPECT_NO_POSE = 1.4  # without trusted joints, only a clearly flat box counts

RIDEABLE = frozenset({"bicycle", "motorcycle", "horse"})
# things nobody holds in a hand: vehicles, furniture, fixtures, large animals
NOT_HOLDABLE = frozenset({
    "person", "car", "bus", "truck", "train", "boat", "airplane", "traffic light", "fire hydrant",
    "stop sign", "parking meter", "bench", "bed", "dining table", "couch", "toilet", "refrigerator",
    "oven", "sink", "tv", "microwave", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
})
WRISTS = {9: "left wrist", 10: "right wrist"}
SHOULDERS, HIPS = (5, 6), (11, 12)


def _rel(subject: int, predicate: str, obj: int, score: float, evidence: str) -> Relation:
    """A Relation with plain Python types (numpy scalars would not serialise to JSON)."""
    return Relation(int(subject), predicate, int(obj), round(float(min(1.0, max(0.0, score))), 3), evidence)


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], np.float64)


def _area(box: np.ndarray) -> float:
    return max(0.0, float(box[2] - box[0])) * max(0.0, float(box[3] - box[1]))


def _intersection(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return float(w * h) if w > 0 and h > 0 else 0.0


def _inside(xy: np.ndarray, box: np.ndarray) -> bool:
    return bool(box[0] <= xy[0] <= box[2] and box[1] <= xy[1] <= box[3])


def _name(f: FrameEvidence, i: int) -> str:
    tid = int(f.track_ids[i])
    return f"{f.class_names[i]}#{tid}" if tid >= 0 else f.class_names[i]


def _mid(kps: np.ndarray, joints: tuple[int, int]) -> np.ndarray | None:
    good = [kps[j, :2] for j in joints if kps[j, 2] >= KP_MIN_SCORE]
    return np.mean(good, axis=0) if good else None


def _body_height(f: FrameEvidence, i: int, j: int) -> float:
    """Reference length of a pair: the people's mean box height (objects' only if no person)."""
    heights = [float(f.boxes[k, 3] - f.boxes[k, 1]) for k in (i, j) if f.class_ids[k] == COCO_PERSON_ID]
    if not heights:
        heights = [float(f.boxes[k, 3] - f.boxes[k, 1]) for k in (i, j)]
    return max(1.0, float(np.mean(heights)))


class _TrackHistory:
    """Per track id: (time_s, centre xy, box height) over the sampled frames."""

    def __init__(self, frames: Sequence[FrameEvidence]):
        self.points: dict[int, list[tuple[float, np.ndarray, float]]] = defaultdict(list)
        for f in frames:
            for i, tid in enumerate(f.track_ids):
                if tid >= 0:
                    self.points[int(tid)].append((f.time_s, _centre(f.boxes[i]),
                                                  max(1.0, float(f.boxes[i, 3] - f.boxes[i, 1]))))

    def window(self, tid: int, t: float) -> list[tuple[float, np.ndarray, float]]:
        return [p for p in self.points.get(int(tid), []) if t - TREND_WINDOW_S - 1e-6 <= p[0] <= t + 1e-6]


def _slope(times: list[float], values: list[float]) -> float:
    t = np.asarray(times) - times[0]
    v = np.asarray(values)
    return float(np.polyfit(t, v, 1)[0]) if t[-1] > 0 else 0.0


def _pair_relations(f: FrameEvidence, i: int, j: int) -> list[Relation]:
    """Static relations of entities i and j (at least one a person) in one frame."""
    out: list[Relation] = []
    bi, bj = f.boxes[i], f.boxes[j]
    pi, pj = f.class_ids[i] == COCO_PERSON_ID, f.class_ids[j] == COCO_PERSON_ID
    if not pi:  # subject is the person
        i, j, bi, bj, pi, pj = j, i, bj, bi, pj, pi
    specific = False

    if not pj:
        obj = f.class_names[j]
        # riding: person above a bike / motorbike / horse, sharing most of its width
        if obj in RIDEABLE:
            overlap_w = min(bi[2], bj[2]) - max(bi[0], bj[0])
            frac = overlap_w / max(1.0, bi[2] - bi[0])
            if frac >= 0.5 and bj[1] <= bi[3] <= bj[3] + 0.25 * (bj[3] - bj[1]) and \
                    (bi[1] + bi[3]) / 2 < (bj[1] + bj[3]) / 2:
                hips = _mid(f.keypoints[i], HIPS)
                on_it = hips is not None and _inside(hips, bj)
                score = min(1.0, frac) * (0.6 + 0.4 * on_it)
                why = f"{_name(f, i)} above {_name(f, j)}, sharing {frac:.0%} of its width"
                out.append(_rel(i, "riding", j, round(score, 3), why + (", hips on it" if on_it else "")))
                specific = True
        # holding: a trusted wrist inside the box of something hand-sized
        if obj not in NOT_HOLDABLE and _area(bj) <= _area(bi):
            best = None
            for k, wname in WRISTS.items():
                xy, s = f.keypoints[i, k, :2], float(f.keypoints[i, k, 2])
                if s >= KP_MIN_SCORE and _inside(xy, bj) and (best is None or s > best[0]):
                    best = (s, wname)
            if best is not None:
                score = best[0] * float(f.scores[j]) ** 0.5
                out.append(_rel(i, "holding", j, round(min(1.0, score), 3),
                                    f"{best[1]} of {_name(f, i)} inside the box of {_name(f, j)}"))
                specific = True

    inter = _intersection(bi, bj)
    if inter > 0 and not specific:
        frac = inter / max(1.0, min(_area(bi), _area(bj)))
        out.append(_rel(i, "touching", j, round(min(1.0, frac), 3),
                            f"boxes of {_name(f, i)} and {_name(f, j)} overlap ({frac:.0%} of the smaller)"))
    elif inter == 0:
        h = _body_height(f, i, j)
        d = float(np.linalg.norm(_centre(bi) - _centre(bj))) / h
        if d < NEAR_BODY_HEIGHTS:
            out.append(_rel(i, "near", j, round(1.0 - d / NEAR_BODY_HEIGHTS, 3),
                                f"{_name(f, i)} and {_name(f, j)} {d:.2f} body heights apart"))
    return out


def _trend_relation(f: FrameEvidence, i: int, j: int, hist: _TrackHistory) -> Relation | None:
    """approaching / moving_away of two tracked entities from their distance over the last 2 s."""
    ti, tj = int(f.track_ids[i]), int(f.track_ids[j])
    wi = {round(p[0], 4): p for p in hist.window(ti, f.time_s)}
    wj = {round(p[0], 4): p for p in hist.window(tj, f.time_s)}
    common = sorted(set(wi) & set(wj))
    if len(common) < TREND_MIN_POINTS:
        return None
    ref = _body_height(f, i, j)
    if float(np.linalg.norm(_centre(f.boxes[i]) - _centre(f.boxes[j]))) / ref > TREND_MAX_BODY_HEIGHTS:
        return None
    dists = [float(np.linalg.norm(wi[t][1] - wj[t][1])) / ref for t in common]
    rate = _slope(common, dists)  # body heights per second; < 0 closing
    if abs(rate) < TREND_MIN_RATE:
        return None
    # subject: whoever's own motion does more of the closing (or opening)
    t0, t1 = common[0], common[-1]
    toward_j = wj[t1][1] - wi[t1][1]
    toward_j /= max(1e-6, float(np.linalg.norm(toward_j)))
    move_i = float(np.dot(wi[t1][1] - wi[t0][1], toward_j))
    move_j = float(np.dot(wj[t1][1] - wj[t0][1], -toward_j))
    sign = 1.0 if rate < 0 else -1.0
    subj, obj = (i, j) if sign * move_i >= sign * move_j else (j, i)
    predicate = "approaching" if rate < 0 else "moving_away"
    score = min(1.0, abs(rate) / (2 * TREND_MIN_RATE))
    verb = "closing" if rate < 0 else "opening"
    return _rel(subj, predicate, obj, round(score, 3),
                    f"distance {verb} at {abs(rate):.2f} body heights/s over {t1 - t0:.1f} s "
                    f"({dists[0]:.1f} -> {dists[-1]:.1f})")


def _lying(f: FrameEvidence, i: int) -> Relation | None:
    box = f.boxes[i]
    w, h = float(box[2] - box[0]), max(1.0, float(box[3] - box[1]))
    aspect = w / h
    sh, hp = _mid(f.keypoints[i], SHOULDERS), _mid(f.keypoints[i], HIPS)
    s_aspect = float(np.clip((aspect - 0.8) / 1.0, 0, 1))
    if sh is not None and hp is not None and np.linalg.norm(hp - sh) > 2:
        dx, dy = hp - sh
        angle = math.degrees(math.atan2(abs(dx), abs(dy)))  # 0 = upright torso
        if aspect > LYING_ASPECT and angle > LYING_TORSO_DEG:
            score = 0.5 * s_aspect + 0.5 * float(np.clip((angle - 30) / 45, 0, 1))
            return _rel(i, "lying", i, round(score, 3),
                            f"box {aspect:.1f}x wider than tall and torso {angle:.0f} deg from vertical")
        return None
    if aspect > LYING_ASPECT_NO_POSE:
        return _rel(i, "lying", i, round(0.6 * s_aspect, 3),
                        f"box {aspect:.1f}x wider than tall (joints not visible)")
    return None


def _running(f: FrameEvidence, i: int, hist: _TrackHistory) -> Relation | None:
    tid = int(f.track_ids[i])
    if tid < 0:
        return None
    pts = [p for p in hist.window(tid, f.time_s) if p[0] >= f.time_s - 1.0 - 1e-6]  # the last second
    if len(pts) < 2 or pts[-1][0] - pts[0][0] <= 0:
        return None
    dt = pts[-1][0] - pts[0][0]
    height = float(np.mean([p[2] for p in pts]))
    speed = float(np.linalg.norm(pts[-1][1] - pts[0][1])) / dt / height
    if speed < RUN_SPEED:
        return None
    return _rel(i, "running", i, round(min(1.0, speed / (2 * RUN_SPEED)), 3),
                    f"moving {speed:.1f} body heights/s over {dt:.1f} s")


def frame_relations(frames: Sequence[FrameEvidence], k: int, hist: _TrackHistory | None = None) -> list[Relation]:
    """All relations of frames[k], using earlier frames for motion."""
    hist = hist or _TrackHistory(frames)
    f = frames[k]
    out: list[Relation] = []
    person = f.class_ids == COCO_PERSON_ID
    n = len(f)
    for i in range(n):
        for j in range(i + 1, n):
            if not (person[i] or person[j]):
                continue
            out.extend(_pair_relations(f, i, j))
            if f.track_ids[i] >= 0 and f.track_ids[j] >= 0:
                rel = _trend_relation(f, i, j, hist)
                if rel is not None:
                    out.append(rel)
    for i in np.flatnonzero(person):
        for rel in (_lying(f, int(i)), _running(f, int(i), hist)):
            if rel is not None:
                out.append(rel)
    return out


def build_relations(frames: Sequence[FrameEvidence]) -> None:
    """Fill ``relations`` of every frame (in place); motion uses only the past (causal)."""
    hist = _TrackHistory(frames)
    for k, f in enumerate(frames):
        f.relations = frame_relations(frames, k, hist)
