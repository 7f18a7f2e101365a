"""VideoEvidence (what the frozen front-ends saw) -> ExpertInputs (what the experts read), B = 1.

Deterministic: people and entities are ranked by detector score (ties keep the evidence order) and
capped at ``config.max_persons`` / ``config.max_entities``, of which up to ``config.max_scene_changes``
slots go to scene changes (so a crowd never crowds out the item left on the ground); relations
touching a dropped entity are dropped with it. Coordinates are normalised by the decoded frame size.
A step whose background or coarse vector is empty gets zeros there (and ``background_mask`` False).
"""
from __future__ import annotations

import numpy as np

from uprm.evidence import NUM_JOINTS, PREDICATES, SCENE_CHANGE_CLASS_ID, FrameEvidence, VideoEvidence
from uprm.model.config import UPRMConfig
from uprm.model.errors import InputError
from uprm.model.inputs import MOTION_FEATURES, TRACK_FEATURES, ExpertInputs

MOTION_LOOKBACK_S = 1.0  # velocity is the displacement over (up to) the last second of the track
STILL_RADIUS_H = 0.5  # "still" = within half its own height of where it is now
MAX_SPEED_HPS = 5.0  # clip: a tracker's id switch can fake any speed
# ages and still times are capped: a model trained on 10-16 s clips must read "8 s" and "80 s" alike,
# or a long video's old tracks (parked cars, people standing about) look like nothing it was trained on
MAX_DWELL_S = 8.0
WANDER_WINDOWS_S = (4.0, 8.0)  # wander_4s_h, wander_8s_h (see MOTION_FEATURES)
MAX_WANDER_H = 10.0  # body heights
ZONE_S = 8.0  # zone_dwell_8s: the share of the last 8 s in which some person stood within...
ZONE_RADIUS_H = 1.0  # ...one body height of where this entity's feet are now (tracks need not hold)

_PREDICATE_INDEX = {name: i for i, name in enumerate(PREDICATES)}


def featurize(evidence: VideoEvidence, config: UPRMConfig) -> ExpertInputs:
    """One video's evidence as batched tensors (B = 1, T = number of evidence frames)."""
    import torch

    frames = evidence.frames
    if not frames:
        raise InputError(f"the evidence of {evidence.video.path!r} has no frames: nothing to featurize "
                         "(was the video decoded? see evidence.warnings)")
    width, height = evidence.video.width, evidence.video.height
    if width <= 0 or height <= 0:
        raise InputError(f"video size {width}x{height} is not positive: cannot normalise coordinates")
    t, p, k, r = len(frames), config.max_persons, config.max_entities, len(PREDICATES)
    pose = np.zeros((t, p, NUM_JOINTS, 3), np.float32)
    person_mask = np.zeros((t, p), bool)
    object_class = np.zeros((t, k), np.int64)
    object_box = np.zeros((t, k, 4), np.float32)
    object_score = np.zeros((t, k), np.float32)
    object_mask = np.zeros((t, k), bool)
    relations = np.zeros((t, r, k, k), np.float32)
    background = np.zeros((t, config.d_bg), np.float32)
    background_mask = np.zeros(t, bool)
    coarse = np.zeros((t, config.d_coarse), np.float32)
    object_motion = np.zeros((t, k, len(MOTION_FEATURES)), np.float32)
    scale = np.array([width, height, width, height], np.float32)
    motion = entity_motion(frames, width, height)

    for i, frame in enumerate(frames):
        order = np.argsort(-np.asarray(frame.scores, np.float64), kind="stable")

        has_pose = frame.is_person & (np.asarray(frame.keypoints)[:, :, 2] > 0).any(axis=1)  # (N,)
        people = [j for j in order if has_pose[j]][:p]
        for slot, j in enumerate(people):
            kp = np.asarray(frame.keypoints[j], np.float32)
            score = np.clip(kp[:, 2], 0.0, 1.0)
            xy = np.clip(kp[:, :2] / scale[:2], 0.0, 1.0) * (score > 0)[:, None]  # undetected joints: zeros
            pose[i, slot] = np.concatenate([xy, score[:, None]], axis=1)
            person_mask[i, slot] = True

        is_change = np.asarray(frame.class_ids) == SCENE_CHANGE_CLASS_ID
        changes = [j for j in order if is_change[j]][:min(config.max_scene_changes, k)]
        kept = [j for j in order if not is_change[j]][:k - len(changes)] + changes
        ids = np.asarray(frame.class_ids, np.int64)[kept] if kept else np.zeros(0, np.int64)
        bad = ids[(ids < 0) | (ids >= config.num_object_classes)]
        if bad.size:
            raise InputError(f"frame {frame.frame_index} ({frame.time_s:.2f} s) has class id(s) "
                             f"{sorted(set(bad.tolist()))} outside COCO-91 ids 0..{config.num_object_classes - 1}: map them to COCO-91 "
                             "(0 = unknown) in perception")
        n = len(kept)
        object_class[i, :n] = ids
        object_box[i, :n] = np.clip(np.asarray(frame.boxes, np.float32)[kept] / scale, 0.0, 1.0)
        object_score[i, :n] = np.clip(np.asarray(frame.scores, np.float32)[kept], 0.0, 1.0)
        object_mask[i, :n] = True
        object_motion[i, :n, :len(TRACK_FEATURES)] = motion[i][kept]
        if frame.motion is not None and n:
            object_motion[i, :n, len(TRACK_FEATURES):] = np.asarray(frame.motion, np.float32)[kept]
        slot_of = {int(j): s for s, j in enumerate(kept)}
        for rel in frame.relations:
            s, o = slot_of.get(rel.subject), slot_of.get(rel.object)
            if s is None or o is None:
                continue
            q = _PREDICATE_INDEX[rel.predicate]
            relations[i, q, s, o] = max(relations[i, q, s, o], float(np.clip(rel.score, 0.0, 1.0)))

        bg = _vector(frame, "background", config.d_bg)
        if bg is not None:
            background[i], background_mask[i] = bg, True
        cv = _vector(frame, "coarse", config.d_coarse)
        if cv is not None:
            coarse[i] = cv

    def one(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).unsqueeze(0)  # (...) -> (1, ...)

    return ExpertInputs(
        pose=one(pose), person_mask=one(person_mask), object_class=one(object_class), object_box=one(object_box),
        object_score=one(object_score), object_mask=one(object_mask), relations=one(relations),
        background=one(background), background_mask=one(background_mask), coarse=one(coarse),
        step_mask=torch.ones(1, t, dtype=torch.bool),
        times_s=one(np.array([f.time_s for f in frames], np.float32)),
        object_motion=one(object_motion),
    )


def entity_motion(frames: list[FrameEvidence], width: int, height: int) -> list[np.ndarray]:
    """Per frame, (N, len(TRACK_FEATURES)) kinematics of each entity from its track's past (causal: only
    earlier frames are used, so a streaming analysis would compute the same). Untracked entities (track
    id < 0) get zeros.

    Tracks already there in the first frame have an unknown past (the video was cut from a longer one):
    they count as MAX_DWELL_S old, and as still that long if they do not move. Counting them as new
    would make every age grow with the time since the video began, and a model trained on short clips
    would learn "late in the video" instead of "has been here long"."""
    history: dict[tuple[int, int], list[tuple[float, float, float, float]]] = {}  # (class, track) -> t, cx, cy, h
    censored: set[tuple[int, int]] = set()  # tracks present in the first frame
    feet = [_person_feet(f) for f in frames]  # (P, 2) foot points of each frame's people
    times = np.array([f.time_s for f in frames], np.float64)
    zone_col = TRACK_FEATURES.index("zone_dwell_8s")
    out = []
    for k, frame in enumerate(frames):
        m = np.zeros((len(frame), len(TRACK_FEATURES)), np.float32)
        boxes = np.asarray(frame.boxes, np.float64).reshape(-1, 4)
        past = range(int(np.searchsorted(times, times[k] - ZONE_S - 1e-6)), k)  # frames are in time order
        for j in np.flatnonzero(frame.is_person) if past else ():
            x1, y1, x2, y2 = boxes[j]
            foot, h = np.array([(x1 + x2) / 2, y2]), max(y2 - y1, 1.0)
            near = sum(bool(len(feet[q])) and bool((np.linalg.norm(feet[q] - foot, axis=1) <= ZONE_RADIUS_H * h).any())
                       for q in past)
            m[j, zone_col] = near / len(past)
        for j, tid in enumerate(np.asarray(frame.track_ids).reshape(-1)):
            if tid < 0:
                continue
            x1, y1, x2, y2 = boxes[j]
            now = (float(frame.time_s), (x1 + x2) / 2, (y1 + y2) / 2, max(y2 - y1, 1.0))
            key = (int(frame.class_ids[j]), int(tid))
            if k == 0:
                censored.add(key)
            hist = history.setdefault(key, [])
            hist.append(now)
            t, cx, cy, h = now
            past = [p for p in hist[:-1] if t - p[0] <= MOTION_LOOKBACK_S + 1e-6]
            if past:
                t0, x0, y0, _ = past[0]
                dt = max(t - t0, 1e-6)
                vx, vy = (cx - x0) / dt, (cy - y0) / dt
                h_mean = float(np.mean([p[3] for p in past] + [h]))
                m[j, 0] = min(np.hypot(vx, vy) / h_mean, MAX_SPEED_HPS)
                m[j, 1] = np.clip(vx / width, -2.0, 2.0)
                m[j, 2] = np.clip(vy / height, -2.0, 2.0)
            born = hist[0][0] - (MAX_DWELL_S if key in censored else 0.0)
            still_since = t
            for p in reversed(hist[:-1]):
                if np.hypot(p[1] - cx, p[2] - cy) > STILL_RADIUS_H * h:
                    break
                still_since = p[0]
            if still_since == hist[0][0]:
                still_since = born  # still since before we first saw it
            m[j, 3] = np.log1p(min(t - born, MAX_DWELL_S))
            m[j, 4] = np.log1p(min(t - still_since, MAX_DWELL_S))
            for col, window_s in enumerate(WANDER_WINDOWS_S, start=5):
                pts = np.array([(p[1], p[2], p[3]) for p in hist if t - p[0] <= window_s + 1e-6])
                if len(pts) >= 3:  # a direction change needs three points
                    path = np.linalg.norm(np.diff(pts[:, :2], axis=0), axis=1).sum()
                    net = np.linalg.norm(pts[-1, :2] - pts[0, :2])
                    m[j, col] = min((path - net) / pts[:, 2].mean(), MAX_WANDER_H)
        out.append(m)
    return out


def _person_feet(frame: FrameEvidence) -> np.ndarray:
    boxes = np.asarray(frame.boxes, np.float64).reshape(-1, 4)[frame.is_person]
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, boxes[:, 3]], axis=1)


def _vector(frame: FrameEvidence, name: str, dim: int) -> np.ndarray | None:
    """The frame's background/coarse vector, None when empty; a wrong size or NaN is an error."""
    v = np.asarray(getattr(frame, name), np.float32).reshape(-1)
    if v.size == 0:
        return None
    if v.size != dim:
        raise InputError(f"frame {frame.frame_index} ({frame.time_s:.2f} s) has a {name} vector of size {v.size} "
                         f"but the model expects {dim} (UPRMConfig.d_{'bg' if name == 'background' else 'coarse'}): "
                         "build the model with the perception's sizes or re-run perception")
    if not np.isfinite(v).all():
        raise InputError(f"frame {frame.frame_index} ({frame.time_s:.2f} s) has NaN/inf in its {name} vector")
    return v
