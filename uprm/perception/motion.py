"""The motion front-end: how things moved between the 2-fps samples, and what changed in the scene and stayed.

The detector sees one frame every half second. Two kinds of evidence need every frame:

- **Entity flow.** Dense optical flow (OpenCV's DIS) between consecutive frames, at up to FLOW_FPS,
  read inside each detected entity's box over the last sample interval. The box is carried back
  frame by frame along its own flow, so a runner who crosses several box widths in half a second is
  still measured (the tracker, which matches boxes by overlap at 2 fps, loses exactly those people).
  Per entity: speed, velocity, how much the velocity flips back and forth (a scuffle's pushing and
  pulling, not a walk's steady stride), the moving fraction of the box and whether its top drops
  towards its feet (a fall), and over the last WANDER_S how far it went to and fro without getting
  anywhere. Speeds are in body heights per second, so they mean the same near and
  far from the camera. The camera's own motion (the median flow of the frame) is subtracted first.

- **Scene changes.** A pixel is *established* once it has looked the same for CHANGE_ESTABLISH_S.
  The first established look of each pixel is its background; later established looks that differ
  from it are changes that stayed: an item put down, someone lying where they fell. A passer-by never
  stays long enough to be established, so walking past leaves no change. While the camera moves or
  after a cut nothing is established, so a hand-held or panning camera shows no changes. Each
  connected change becomes an entity ("scene change", COCO id 0 = unknown) with its contrast against
  the ground around it now and before: something *added* contrasts now, a ghost left where something
  *went away* (a person who stood at the start and walked off) contrasted only before and is healed
  into the background; pixels that keep changing and coming back (a flapping tape) are
  restless and never count. Upright people and vehicles are the detector's to report: under their
  boxes no background is learnt and no change is reported (see REPORTED_S). Each change also says how
  long before it appeared a person last stood there: things people leave behind (an item, a person who
  fell) appear where someone just was.

Both run in a second decoding pass (``add_motion``) that reads the first pass's boxes; the pass is
cheap (DIS flow at 384 px, ~4 ms a frame; the change model at 768 px and CHANGE_FPS) and cached with
the evidence. Everything here is deterministic given the video and the first pass.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from uprm.evidence import (
    COCO_PERSON_ID, ENTITY_MOTION, NUM_JOINTS, SCENE_CHANGE_CLASS_ID, SCENE_CHANGE_NAME, FrameEvidence,
    VideoEvidence,
)

MOTION_VERSION = "motion-10"
FLOW_MAX_SIDE = 384  # flow is computed on frames downscaled to this longer side
FLOW_FPS = 10.0  # at most this many flow fields per second (a 30 fps video: every third frame)
MOVE_PX = 0.25  # flow (px at FLOW_MAX_SIDE, per processed frame) below this is noise, not motion
MIN_MOVING_PX = 3  # fewer moving pixels in a box: the box did not move
MAX_SPEED_HPS = 5.0  # body heights per second; above is a flow failure, not a person
WANDER_S = 2.0  # flow_wander_2s_h: path minus net displacement over this long (a scuffle sways to and fro)
WANDER_PIECE_S = 0.5  # ...measured over pieces this long
MAX_WANDER_H = 5.0

# the camera moved (a pan, a hand-held shake: median flow over a frame, or its drift since the change
# model last started) or the shot cut (mean grey step): the change model starts again
CAMERA_STEP_PX, CAMERA_DRIFT_PX, CUT_GREY = 0.5, 1.0, 25.0  # at FLOW_MAX_SIDE
CHANGE_MAX_SIDE = 768  # the change model runs at this longer side (a dropped item is a few px across)
CHANGE_FPS = 5.0
CHANGE_STABLE_TAU_S = 0.3  # short-term mean a frame is compared with to tell "still" from "moving"
CHANGE_STILL_GREY = 10.0  # |frame - short-term mean| above this (grey levels): the pixel is moving
CHANGE_ESTABLISH_S = 1.0  # still this long: the pixel's look is established
CHANGE_GREY = 22.0  # established look this far from the background (grey levels): a change...
CHANGE_REL = 0.15  # ...and this fraction of the background's grey (a camera's gain drifts brightest)...
CHANGE_NOISE_K = 6.0  # ...and this many times the pixel's own flicker when still (compression noise
CHANGE_NOISE_TAU_S = 3.0  # at edges, a flapping tape): the flicker's running mean
CHANGE_MIN_AREA_PX = 12  # at CHANGE_MAX_SIDE
CHANGE_MIN_THICK_PX = 4.5  # at CHANGE_MAX_SIDE: thinner changes are lines (see changes())
# a pixel whose look has changed and come back again and again lately is restless, not a thing that stayed:
# a tape flapping in the wind, the edge of a sign people keep passing behind (an item put down or a
# person who fell changes it once)
CHANGE_RESTLESS_EPISODES, CHANGE_RESTLESS_TAU_S, CHANGE_RESTLESS_REACH_PX = 2.0, 60.0, 9
CHANGE_RELEARN_FRACTION = 0.3  # more of the frame changed at once: light or camera changed, relearn
# What the detector reports is not a scene change: upright people (taller than wide: someone lying where
# they fell still is a change, and the detector's occasional box across half the frame is no person) and
# vehicles (a tailgate opened, a car parked or driven off). Under their boxes of the last REPORTED_S (a
# standing person is now and then missed for a sample), widened by REPORTED_PAD of their height, no
# background is learnt, so someone standing at the start leaves no ghost once they shift, and no change is
# reported, so someone standing still is not "a thing that appeared" (vtest.avi's chatting pair and its
# car's opened boot raised false alarms those ways). An item put down or a body that fell shows once
# the others stepped off it, and how long before a person stood there still says it was left.
REPORTED_S, REPORTED_PAD = 1.0, 0.05
VEHICLE_IDS = (2, 3, 4, 6, 7, 8, 9)  # COCO-91: bicycle, car, motorcycle, bus, train, truck, boat
MAX_CHANGES = 6  # largest changes kept per step
MAX_CHANGE_AGE_S = 8.0  # ages are capped (see uprm.featurize.MAX_DWELL_S)
PERSON_MEMORY_S = MAX_CHANGE_AGE_S + 4.0  # person boxes kept to tell who stood where a change appeared

_COL = {name: i for i, name in enumerate(ENTITY_MOTION)}
N_FLOW = sum(name.startswith("flow_") for name in ENTITY_MOTION)  # the flow columns come first


@dataclass(frozen=True)
class SceneChange:
    """One change that stayed, at one sample: its box (px of the original frame), its pixels (bool,
    at CHANGE scale, cropped to the box) and how it looks against the ground around it."""

    box_xyxy: tuple[float, float, float, float]
    mask: np.ndarray  # (h, w) bool at the change model's scale, the box's extent
    grey: float  # mean |established look - background| over its pixels, / 255: how much it changed
    contrast: float  # |median grey inside - median of the ring around it| now, / 255
    contrast_before: float  # the same in the background (before the change), / 255
    age_s: float  # since the change was first established

    @property
    def added(self) -> bool:
        """Something new that contrasts with its surroundings (not a ghost of something gone)."""
        return self.contrast > self.contrast_before


class SceneChangeModel:
    """Per-pixel established look vs background (see the module docstring); feed frames in time order."""

    def __init__(self, shape_hw: tuple[int, int]):
        self.shape = shape_hw
        self.mean = None  # short-term mean (float32)
        self.still_s = np.zeros(shape_hw, np.float32)
        self.flicker = np.full(shape_hw, 2.0, np.float32)  # running mean |frame - mean| while still
        self.look = np.zeros(shape_hw, np.float32)  # last established look
        self.background = np.zeros(shape_hw, np.float32)
        self.has_background = np.zeros(shape_hw, bool)
        self.changed_at = np.full(shape_hw, np.nan, np.float32)  # when the current change was first seen
        self.gain = 1.0  # the camera's exposure now relative to when the background was learnt
        self.episodes = np.zeros(shape_hw, np.float32)  # changes begun here lately (decaying count)
        self.time_s = None

    def update(self, grey: np.ndarray, time_s: float, view_changed: bool = False,
               reported: np.ndarray | None = None) -> None:
        """One frame. ``view_changed``: the camera moved or the shot cut since the last frame, so what was
        learnt no longer lines up with the picture: start again (nothing is a change until re-learnt).
        ``reported``: (h, w) bool, where the detector reports people and vehicles; no background is learnt
        there (see REPORTED_S)."""
        import cv2

        frame = cv2.GaussianBlur(grey.astype(np.float32), (3, 3), 0)
        if self.mean is None or view_changed:
            self.mean, self.time_s = frame, time_s
            self.still_s[:] = 0.0
            self.has_background[:] = False
            self.changed_at[:] = np.nan
            self.episodes[:] = 0.0
            self.gain = 1.0
            return
        dt = max(1e-3, time_s - self.time_s)
        self.time_s = time_s
        step = np.abs(frame - self.mean)
        moving = step > CHANGE_STILL_GREY
        self.flicker = np.where(moving, self.flicker, self.flicker + (1.0 - np.exp(-dt / CHANGE_NOISE_TAU_S))
                                * (step - self.flicker)).astype(np.float32)
        self.mean += (1.0 - np.exp(-dt / CHANGE_STABLE_TAU_S)) * (frame - self.mean)
        self.still_s = np.where(moving, 0.0, self.still_s + dt).astype(np.float32)
        established = self.still_s >= CHANGE_ESTABLISH_S
        self.look[established] = self.mean[established]
        learnable = established if reported is None else established & ~reported
        first = learnable & ~self.has_background
        self.background[first] = self.mean[first] / self.gain
        self.has_background |= first
        both = established & self.has_background
        if both.sum() > 100:  # exposure: the median ratio over what the camera sees steadily (a coarse grid)
            sample = both[::4, ::4]
            ratio = self.look[::4, ::4][sample] / np.maximum(self.background[::4, ::4][sample], 1.0)
            self.gain = float(np.clip(np.median(ratio), 0.5, 2.0))
        differs = self._differs()
        if differs.sum() > CHANGE_RELEARN_FRACTION * max(1, self.has_background.sum()):
            # the light or the camera changed, not the scene: start again from what is seen now
            self.background[learnable] = self.look[learnable] / self.gain
            self.has_background = learnable.copy()
            differs = self._differs()
        new = differs & np.isnan(self.changed_at)
        self.changed_at[new] = time_s
        self.changed_at[~differs] = np.nan
        self.episodes *= np.float32(np.exp(-dt / CHANGE_RESTLESS_TAU_S))
        self.episodes[new] += 1.0
        # where the look agrees with the background, the background follows it slowly (daylight drifts)
        agree = established & self.has_background & ~differs
        self.background[agree] += 0.05 * (self.look[agree] / self.gain - self.background[agree])

    def _differs(self) -> np.ndarray:
        bg = self.gain * self.background
        limit = np.maximum(np.maximum(CHANGE_GREY, CHANGE_REL * bg), CHANGE_NOISE_K * self.flicker)
        return self.has_background & (np.abs(self.look - bg) > limit)

    def changes(self, reported: np.ndarray | None = None) -> list[SceneChange]:
        """The changes established now (most salient first: area times how much they changed), ghosts of
        things gone healed into the background, nothing under ``reported`` ((h, w) bool)."""
        import cv2

        if self.mean is None:
            return []
        # a flapping tape, an edge people pass behind: here or a few pixels away (a tape lands a little
        # elsewhere each time), changes began again and again lately
        near = cv2.dilate(self.episodes, np.ones((CHANGE_RESTLESS_REACH_PX,) * 2, np.uint8))
        restless = near >= CHANGE_RESTLESS_EPISODES
        mask = self._differs() & (self.still_s >= CHANGE_ESTABLISH_S) & ~restless
        if reported is not None:
            mask &= ~reported
        mask = mask.astype(np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
        grown = cv2.dilate(mask, np.ones((3, 3), np.uint8)).astype(bool)
        h, w = self.shape
        out = []
        for i in range(1, n):
            x, y, bw, bh, area = (int(v) for v in stats[i])
            if area < CHANGE_MIN_AREA_PX:
                continue
            inside = labels[y:y + bh, x:x + bw] == i
            # thickness: twice the largest distance from inside to outside; a tape, a wire or an edge
            # that moved is a line, an item on the ground or a person lying has a body
            edged = np.pad(inside, 1).astype(np.uint8)
            if 2.0 * float(cv2.distanceTransform(edged, cv2.DIST_L2, 3).max()) < CHANGE_MIN_THICK_PX:
                continue
            pad = max(3, (max(bw, bh) + 1) // 2)
            x1, y1, x2, y2 = max(0, x - pad), max(0, y - pad), min(w, x + bw + pad), min(h, y + bh + pad)
            ring = ~grown[y1:y2, x1:x2]
            if ring.sum() < 5:
                continue
            look, bg = self.look[y1:y2, x1:x2], self.gain * self.background[y1:y2, x1:x2]
            full = np.zeros((y2 - y1, x2 - x1), bool)
            full[y - y1:y - y1 + bh, x - x1:x - x1 + bw] = inside
            if _shifted_edge(look, bg, full):
                continue
            sub = (slice(y, y + bh), slice(x, x + bw))
            contrast = abs(float(np.median(look[full])) - float(np.median(look[ring]))) / 255.0
            before = abs(float(np.median(bg[full])) - float(np.median(bg[ring]))) / 255.0
            if before > contrast:  # a ghost: whatever stood here has gone, and the ground is back
                self.background[sub][inside] = self.look[sub][inside] / self.gain
                self.changed_at[sub][inside] = np.nan
                continue
            grey = float(np.abs(self.look[sub] - self.gain * self.background[sub])[inside].mean()) / 255.0
            age = float(self.time_s - np.nanmedian(self.changed_at[sub][inside]))
            out.append(SceneChange((x, y, x + bw, y + bh), inside, grey, contrast, before, max(0.0, age)))
        out.sort(key=lambda c: -c.mask.sum() * c.grey)
        return out


def _shifted_edge(look: np.ndarray, background: np.ndarray, inside: np.ndarray, reach_px: int = 2) -> bool:
    """True when the background moved by a pixel or two explains the change (an edge of a sign swaying
    in the wind, a flapping tape): nothing new is there."""
    diff = float(np.abs(look - background)[inside].mean())
    h, w = inside.shape
    best = diff
    for dy in range(-reach_px, reach_px + 1):
        for dx in range(-reach_px, reach_px + 1):
            if dx or dy:
                shifted = np.roll(background, (dy, dx), axis=(0, 1))
                ok = inside.copy()  # ignore pixels that wrapped round the patch's border
                ok[:max(0, dy)], ok[h + min(0, dy):], ok[:, :max(0, dx)], ok[:, w + min(0, dx):] = False, False, False, False
                if ok.sum() >= max(3, inside.sum() // 2):
                    best = min(best, float(np.abs(look - shifted)[ok].mean()))
    return best < 0.5 * diff


@dataclass
class _Flow:
    time_s: float
    dt_s: float
    back: np.ndarray  # (h, w, 2) float32: where each pixel was one processed frame earlier, camera motion removed


def entity_flow(flows: list[_Flow], box_xyxy: np.ndarray, scale: float, interval_s: float) -> np.ndarray:
    """Flow features of one entity (the ENTITY_MOTION flow_* columns) from ``flows`` (oldest first, ending
    at the sample), its box carried back along its own flow: speed, velocity, flail, moving fraction and
    drop over the last ``interval_s``; wander over all of ``flows`` (WANDER_S). Zeros when nothing moved."""
    out = np.zeros(N_FLOW, np.float32)
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    height_px = max(y2 - y1, 1.0)
    box = np.array([x1, y1, x2, y2], np.float64) * scale
    now_s = flows[-1].time_s if flows else 0.0
    velocities, fractions, drops, recent = [], [], [], []
    for f in reversed(flows):
        h, w = f.back.shape[:2]
        bx1, by1 = int(np.clip(np.floor(box[0]), 0, w - 1)), int(np.clip(np.floor(box[1]), 0, h - 1))
        bx2, by2 = int(np.clip(np.ceil(box[2]), bx1 + 1, w)), int(np.clip(np.ceil(box[3]), by1 + 1, h))
        patch = f.back[by1:by2, bx1:bx2]  # (bh, bw, 2)
        moving = np.hypot(patch[..., 0], patch[..., 1]) > MOVE_PX
        recent.append(f.time_s > now_s - interval_s + 1e-6)
        fractions.append(float(moving.mean()))
        if moving.sum() < MIN_MOVING_PX:
            velocities.append((np.zeros(2), f.dt_s))
            drops.append(0.0)
            continue
        back = patch[moving].mean(axis=0)  # displacement to the earlier frame, px at flow scale
        velocities.append((-back / scale / f.dt_s, f.dt_s))  # px of the original frame per second
        half = moving.shape[0] // 2
        top, bottom = patch[:half][moving[:half]], patch[half:][moving[half:]]
        if len(top) >= MIN_MOVING_PX and len(bottom) >= MIN_MOVING_PX:  # + when the top comes down faster
            drops.append(float(-(top[:, 1].mean() - bottom[:, 1].mean()) / scale / f.dt_s))
        else:
            drops.append(0.0)
        box = box + np.array([back[0], back[1], back[0], back[1]])
    recent = np.array(recent, bool)
    if not recent.any():
        return out
    v = np.array([vel for vel, _ in velocities]) / height_px  # (n, 2) body heights per second
    dt = np.array([d for _, d in velocities])
    r = v[recent]
    mean = r.mean(axis=0)
    out[0] = min(float(np.linalg.norm(r, axis=1).mean()), MAX_SPEED_HPS)
    out[1:3] = np.clip(mean, -MAX_SPEED_HPS, MAX_SPEED_HPS)
    out[3] = min(float(np.linalg.norm(r - mean, axis=1).mean()), MAX_SPEED_HPS)
    out[4] = float(np.mean(np.array(fractions)[recent]))
    out[5] = float(np.clip(np.mean(np.array(drops)[recent]) / height_px, -MAX_SPEED_HPS, MAX_SPEED_HPS))
    # to and fro: displacements over half-second pieces (newest first), path minus net. Frame-to-frame
    # velocities carry flow noise that a path over 20 frames would add up into "wandering" for a walker.
    ages = now_s - np.array([f.time_s for f in reversed(flows)])[:len(v)]
    piece = np.minimum((ages / WANDER_PIECE_S).astype(int), int(round(WANDER_S / WANDER_PIECE_S)) - 1)
    moves = np.array([(v[piece == k] * dt[piece == k, None]).sum(axis=0) for k in np.unique(piece)])
    out[6] = min(float(np.linalg.norm(moves, axis=1).sum() - np.linalg.norm(moves.sum(axis=0))), MAX_WANDER_H)
    return out


class MotionAnalyzer:
    """Stateful: feed every decoded frame in order (``push``), read each sample's motion (``sample``)."""

    def __init__(self, frame_wh: tuple[int, int], sample_interval_s: float, num_threads: int = 2):
        import cv2

        cv2.setNumThreads(num_threads)
        w, h = frame_wh
        self.flow_scale = min(1.0, FLOW_MAX_SIDE / max(w, h))
        self.change_scale = min(1.0, CHANGE_MAX_SIDE / max(w, h))
        self.flow_size = (max(8, round(w * self.flow_scale)), max(8, round(h * self.flow_scale)))
        self.change_size = (max(8, round(w * self.change_scale)), max(8, round(h * self.change_scale)))
        self.interval_s = sample_interval_s
        self.keep_s = max(sample_interval_s, WANDER_S)
        # ultrafast's patches on a half-resolution grid (finest scale 1): a far pedestrian is a few cells
        # wide there, and on composed clips the speed it gives tracks the true one (r = 0.85, median ratio
        # 0.89; the "fast" preset's quarter-resolution grid gave 0.79 and 0.64) at ~4 ms a frame
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        self._dis.setFinestScale(1)
        self._prev: tuple[float, np.ndarray] | None = None
        self._flows: deque[_Flow] = deque()
        self._changes = SceneChangeModel((self.change_size[1], self.change_size[0]))
        self._last_change_s = -np.inf
        self._people: deque[tuple[float, np.ndarray]] = deque()  # (time, person boxes px) of recent samples
        self._reported: deque[tuple[float, np.ndarray]] = deque()  # (time, upright person and vehicle boxes px)
        self._drift_px = np.zeros(2)  # camera displacement since the change model last started (flow px)
        self._view_changed = False

    def push(self, time_s: float, rgb_at: Callable[[tuple[int, int]], np.ndarray], is_sample: bool) -> None:
        """One decoded frame: ``rgb_at((w, h))`` gives its pixels at that size (decoded lazily)."""
        import cv2

        if is_sample or self._prev is None or time_s - self._prev[0] >= 1.0 / FLOW_FPS - 1e-6:
            grey = cv2.cvtColor(rgb_at(self.flow_size), cv2.COLOR_RGB2GRAY)
            if self._prev is not None and time_s > self._prev[0]:
                back = self._dis.calc(grey, self._prev[1], None)  # (h, w, 2): this frame -> the previous one
                camera = np.median(back.reshape(-1, 2), axis=0)  # the camera's own motion
                back -= camera
                self._flows.append(_Flow(time_s, time_s - self._prev[0], back))
                self._drift_px += camera
                cut = float(np.abs(grey.astype(np.float32) - self._prev[1]).mean()) > CUT_GREY
                if cut or np.hypot(*camera) > CAMERA_STEP_PX or np.hypot(*self._drift_px) > CAMERA_DRIFT_PX:
                    self._view_changed, self._drift_px = True, np.zeros(2)
            self._prev = (time_s, grey)
            while self._flows and self._flows[0].time_s <= time_s - self.keep_s - 1e-6:
                self._flows.popleft()
        if is_sample or time_s - self._last_change_s >= 1.0 / CHANGE_FPS - 1e-6:
            self._changes.update(cv2.cvtColor(rgb_at(self.change_size), cv2.COLOR_RGB2GRAY), time_s,
                                 view_changed=self._view_changed, reported=self._reported_mask())
            self._last_change_s, self._view_changed = time_s, False

    def _reported_mask(self) -> np.ndarray | None:
        """Where the detector reported upright people or vehicles in the last REPORTED_S of samples (boxes
        widened by REPORTED_PAD), at change scale; None before any sample."""
        if not self._reported:
            return None
        h, w = self._changes.shape
        mask = np.zeros((h, w), bool)
        for x1, y1, x2, y2 in np.concatenate([b for _, b in self._reported]).reshape(-1, 4) * self.change_scale:
            pad = REPORTED_PAD * (y2 - y1)
            mask[max(0, int(y1 - pad)):min(h, int(np.ceil(y2 + pad))), max(0, int(x1 - pad)):min(w, int(np.ceil(x2 + pad)))] = True
        return mask

    def _since_person(self, box_px: np.ndarray, changed_at_s: float) -> float:
        """Seconds from the last sample at which a person stood at ``box_px`` (up to when the change was
        first established, plus one sample) to that moment; infinity when nobody did within memory."""
        for t, boxes in reversed(self._people):
            if t <= changed_at_s + self.interval_s + 1e-6 and _touches(boxes, box_px):
                return max(0.0, changed_at_s - t)
        return float("inf")

    def sample(self, frame: FrameEvidence, frame_wh: tuple[int, int], mask_wh: tuple[int, int]) -> FrameEvidence:
        """``frame`` with its entities' flow features and the scene changes appended as entities."""
        flows = [f for f in self._flows if f.time_s <= frame.time_s + 1e-6]
        n = len(frame)
        motion = np.zeros((n, len(ENTITY_MOTION)), np.float32)
        for i in range(n):
            motion[i, :N_FLOW] = entity_flow(flows, frame.boxes[i], self.flow_scale, self.interval_s)
        boxes = np.asarray(frame.boxes, np.float32).reshape(-1, 4)[frame.is_person]
        self._people.append((frame.time_s, boxes))
        while self._people[0][0] < frame.time_s - PERSON_MEMORY_S:
            self._people.popleft()
        all_boxes = np.asarray(frame.boxes, np.float32).reshape(-1, 4)
        upright = frame.is_person & (all_boxes[:, 3] - all_boxes[:, 1] >= all_boxes[:, 2] - all_boxes[:, 0])
        self._reported.append((frame.time_s, all_boxes[upright | np.isin(frame.class_ids, VEHICLE_IDS)]))
        while self._reported[0][0] < frame.time_s - REPORTED_S - 1e-6:
            self._reported.popleft()
        changes = self._changes.changes(self._reported_mask())[:MAX_CHANGES]
        people = boxes * self.change_scale
        rows = []
        for c in changes:
            x1, y1, x2, y2 = c.box_xyxy
            covered = np.zeros_like(c.mask)
            for px1, py1, px2, py2 in people:
                a1, b1 = int(max(0, np.floor(px1) - x1)), int(max(0, np.floor(py1) - y1))
                a2, b2 = int(min(x2 - x1, np.ceil(px2) - x1)), int(min(y2 - y1, np.ceil(py2) - y1))
                if a2 > a1 and b2 > b1:
                    covered[b1:b2, a1:a2] = True
            row = np.zeros(len(ENTITY_MOTION), np.float32)
            row[_COL["change_grey"]] = c.grey
            row[_COL["change_contrast"]] = c.contrast
            row[_COL["change_contrast_before"]] = c.contrast_before
            row[_COL["change_log_age_s"]] = np.log1p(min(c.age_s, MAX_CHANGE_AGE_S))
            row[_COL["change_person_overlap"]] = float((covered & c.mask).sum() / max(1, c.mask.sum()))
            since = self._since_person(np.array(c.box_xyxy, np.float32) / self.change_scale, frame.time_s - c.age_s)
            row[_COL["change_log_since_person_s"]] = np.log1p(min(since, MAX_CHANGE_AGE_S))
            rows.append(row)
        return _with_changes(frame, motion, changes, rows, self.change_scale, frame_wh, mask_wh)


def _touches(boxes: np.ndarray, box: np.ndarray) -> bool:
    """Does any person box, widened by half its height either side and a fifth above and below (a body
    falls sideways, an item is put down beside the feet), meet ``box``? Boxes xyxy px."""
    if not len(boxes):
        return False
    h = boxes[:, 3] - boxes[:, 1]
    x1, y1, x2, y2 = boxes[:, 0] - 0.5 * h, boxes[:, 1] - 0.2 * h, boxes[:, 2] + 0.5 * h, boxes[:, 3] + 0.2 * h
    return bool(((x1 < box[2]) & (x2 > box[0]) & (y1 < box[3]) & (y2 > box[1])).any())


def _with_changes(frame: FrameEvidence, motion: np.ndarray, changes: list[SceneChange], rows: list[np.ndarray],
                  scale: float, frame_wh: tuple[int, int], mask_wh: tuple[int, int]) -> FrameEvidence:
    import cv2

    m = len(changes)
    if not m:
        return replace(frame, motion=motion)
    boxes = np.array([c.box_xyxy for c in changes], np.float32) / scale
    boxes = np.clip(boxes, 0, [frame_wh[0], frame_wh[1], frame_wh[0], frame_wh[1]]).astype(np.float32)
    masks, sources = frame.masks, list(frame.mask_sources)
    if masks is not None:
        mw, mh = mask_wh
        new = np.zeros((m, mh, mw), bool)
        for j, c in enumerate(changes):
            # the change's pixels on the mask grid (nearest cells), for overlays
            x1, y1, x2, y2 = (boxes[j] * np.array([mw / frame_wh[0], mh / frame_wh[1]] * 2)).round().astype(int)
            x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
            x1, y1, x2, y2 = max(0, x1), max(0, y1), min(mw, x2), min(mh, y2)
            if x2 > x1 and y2 > y1:
                cell = cv2.resize(c.mask.astype(np.uint8), (x2 - x1, y2 - y1), interpolation=cv2.INTER_NEAREST)
                new[j, y1:y2, x1:x2] = cell.astype(bool)
        masks = np.concatenate([masks, new]) if len(masks) else new
        sources += ["scene_change"] * m
    scores = np.array([min(1.0, 4.0 * c.grey) for c in changes], np.float32)
    return replace(
        frame,
        boxes=np.concatenate([np.asarray(frame.boxes, np.float32).reshape(-1, 4), boxes]),
        class_ids=np.concatenate([np.asarray(frame.class_ids, int), np.full(m, SCENE_CHANGE_CLASS_ID)]),
        class_names=list(frame.class_names) + [SCENE_CHANGE_NAME] * m,
        scores=np.concatenate([np.asarray(frame.scores, np.float32), scores]),
        track_ids=np.concatenate([np.asarray(frame.track_ids, int), np.full(m, -1)]),
        keypoints=np.concatenate([np.asarray(frame.keypoints, np.float32).reshape(-1, NUM_JOINTS, 3),
                                  np.zeros((m, NUM_JOINTS, 3), np.float32)]),
        masks=masks, mask_sources=sources if masks is not None else [],
        motion=np.concatenate([motion, np.stack(rows)]),
    )


def _without_changes(frame: FrameEvidence) -> FrameEvidence:
    """The frame's detections only, without motion (scene changes are entities the motion layer added)."""
    keep = np.flatnonzero(np.asarray(frame.class_ids) != SCENE_CHANGE_CLASS_ID)
    if frame.motion is None and len(keep) == len(frame):
        return frame
    rows = set(keep.tolist())
    return replace(frame, boxes=np.asarray(frame.boxes)[keep], class_ids=np.asarray(frame.class_ids)[keep],
                   class_names=[frame.class_names[i] for i in keep], scores=np.asarray(frame.scores)[keep],
                   track_ids=np.asarray(frame.track_ids)[keep], keypoints=np.asarray(frame.keypoints)[keep],
                   masks=None if frame.masks is None else frame.masks[keep],
                   mask_sources=[frame.mask_sources[i] for i in keep] if frame.masks is not None else [],
                   relations=[r for r in frame.relations if r.subject in rows and r.object in rows], motion=None)


def add_motion(evidence: VideoEvidence, mask_wh: tuple[int, int] | None = None, num_threads: int = 2,
               progress: Callable[[float], None] | None = None) -> VideoEvidence:
    """The evidence with every frame's entity flow and scene changes (a second decoding pass)."""
    from uprm.video import iter_frames

    info = evidence.video
    frame_wh = (info.width, info.height)
    mask_wh = mask_wh or evidence.mask_size
    analyzer = MotionAnalyzer(frame_wh, 1.0 / evidence.sample_fps, num_threads)
    evidence = replace(evidence, frames=[_without_changes(f) for f in evidence.frames])  # run again: measured anew
    by_index = {f.frame_index: k for k, f in enumerate(evidence.frames)}
    out = list(evidence.frames)
    seen = 0
    for df in iter_frames(info.path, on_warning=lambda _msg: None):  # the first pass reported the warnings
        k = by_index.get(df.frame_index)
        analyzer.push(df.time_s, lambda size, df=df: df.rgb(size=size), k is not None)
        if k is not None:
            out[k] = analyzer.sample(evidence.frames[k], frame_wh, mask_wh)
            seen += 1
            if progress is not None:
                progress(seen / len(out))
    for k, f in enumerate(out):  # samples the second decoding did not reach: no motion measured
        if f.motion is None or len(f.motion) != len(f):
            out[k] = replace(f, motion=np.zeros((len(f), len(ENTITY_MOTION)), np.float32))
    return replace(evidence, frames=out)
