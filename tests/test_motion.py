"""The motion front-end on synthetic scenes whose answer is known: scene changes and entity flow."""
from __future__ import annotations

import numpy as np
import pytest

from uprm.evidence import ENTITY_MOTION, NUM_JOINTS, SCENE_CHANGE_CLASS_ID, FrameEvidence
from uprm.perception.motion import MotionAnalyzer, SceneChangeModel

FPS = 5.0
H, W = 120, 160
COL = {name: i for i, name in enumerate(ENTITY_MOTION)}


def ground(seed: int = 0) -> np.ndarray:
    """A textured grey ground (like asphalt), float32."""
    rng = np.random.default_rng(seed)
    import cv2

    return cv2.GaussianBlur(rng.uniform(90, 140, (H, W)).astype(np.float32), (5, 5), 0)


def noisy(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(frame + rng.normal(0, 2.0, frame.shape), 0, 255).astype(np.uint8)


def run(frames: list[np.ndarray], fps: float = FPS) -> tuple[SceneChangeModel, list[list]]:
    model = SceneChangeModel((H, W))
    seen = []
    for k, f in enumerate(frames):
        model.update(f, k / fps)
        seen.append(model.changes())
    return model, seen


def test_an_item_put_down_becomes_a_change_that_stays_and_ages():
    rng, g = np.random.default_rng(1), ground()
    frames = []
    for k in range(int(8 * FPS)):
        f = g.copy()
        if k >= 3 * FPS:  # put down at 3 s: a bright 6 x 10 px item
            f[60:66, 70:80] = 220
        frames.append(noisy(f, rng))
    _, seen = run(frames)
    assert all(not s for s in seen[:int(3 * FPS)])  # nothing before
    late = seen[-1]
    assert len(late) == 1
    c = late[0]
    assert c.box_xyxy == pytest.approx((70, 60, 80, 66), abs=2) and c.added
    # how much it changed: the item's step over the ground, less where the 3x3 blur softens its border
    assert 0.2 < c.grey <= (220 - 90) / 255 and c.contrast > c.contrast_before
    # established once still for a second after the short-term mean has settled (~0.5 s), then it ages
    assert c.age_s == pytest.approx((8 - 1 / FPS) - (3.0 + 1.5), abs=0.5)


def test_a_passer_by_leaves_no_change():
    rng, g = np.random.default_rng(2), ground()
    frames = []
    for k in range(int(10 * FPS)):
        f = g.copy()
        x = 5 + 4 * k  # a dark walker crossing at 20 px/s, never still for a second
        if x + 8 < W:
            f[40:70, x:x + 8] = 30
        frames.append(noisy(f, rng))
    _, seen = run(frames)
    assert not any(seen)


def test_a_ghost_of_something_gone_is_healed_not_reported():
    rng, g = np.random.default_rng(3), ground()
    frames = []
    for k in range(int(8 * FPS)):
        f = g.copy()
        if k < 3 * FPS:  # someone stands there when the video starts, then leaves
            f[40:70, 60:70] = 30
        frames.append(noisy(f, rng))
    model, seen = run(frames)
    assert not any(seen)
    # the background now holds the ground where the person stood
    assert np.abs(model.background[45:65, 62:68] * model.gain - g[45:65, 62:68]).mean() < 8


def test_exposure_drift_and_a_swaying_edge_are_not_changes():
    rng, g = np.random.default_rng(4), ground()
    g[:, 100:] = 230  # a bright sign whose edge sways by a pixel
    frames = []
    for k in range(int(10 * FPS)):
        f = g * (1.0 + 0.15 * min(1.0, k / (6 * FPS)))  # the camera brightens 15 % over 6 s
        if k >= 4 * FPS:  # the sign's edge moves one pixel to the right
            f = np.concatenate([f[:, :1], f[:, :-1]], axis=1)
        frames.append(noisy(f, rng))
    _, seen = run(frames)
    assert not any(seen)


# --- entity flow through MotionAnalyzer ------------------------------------------------------------

def textured_square(size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (size, size)).astype(np.float32)


def person_frame(t: float, boxes: list[tuple[float, float, float, float]]) -> FrameEvidence:
    n = len(boxes)
    return FrameEvidence(time_s=t, frame_index=int(round(t * 10)), boxes=np.array(boxes, np.float32).reshape(n, 4),
                         class_ids=np.ones(n, int), class_names=["person"] * n, scores=np.full(n, 0.9, np.float32),
                         track_ids=np.arange(n), keypoints=np.zeros((n, NUM_JOINTS, 3), np.float32))


def flow_of(path_px, fps: float = 10.0, seconds: float = 3.0, size: int = 24) -> np.ndarray:
    """ENTITY_MOTION row of a textured square whose top-left follows path_px(t), read at the last frame."""
    import cv2

    bg = cv2.GaussianBlur(np.random.default_rng(7).uniform(60, 200, (H, W)).astype(np.float32), (3, 3), 0)
    sq = textured_square(size, 8)
    analyzer = MotionAnalyzer((W, H), sample_interval_s=0.5)
    n = int(seconds * fps)
    for k in range(n):
        t = k / fps
        x, y = path_px(t)
        f = bg.copy()
        f[int(round(y)):int(round(y)) + size, int(round(x)):int(round(x)) + size] = sq
        rgb = np.repeat(f.clip(0, 255).astype(np.uint8)[..., None], 3, axis=2)
        analyzer.push(t, lambda wh, rgb=rgb: cv2.resize(rgb, wh, interpolation=cv2.INTER_AREA), k == n - 1)
    x, y = path_px((n - 1) / fps)
    out = analyzer.sample(person_frame((n - 1) / fps, [(x, y, x + size, y + size)]), (W, H), (40, 30))
    assert out.motion.shape == (1, len(ENTITY_MOTION))
    return out.motion[0]


def test_flow_speed_is_in_body_heights_per_second():
    row = flow_of(lambda t: (10 + 24 * t, 40))  # 24 px/s = one body (box) height per second, to the right
    assert row[COL["flow_speed_hps"]] == pytest.approx(1.0, rel=0.25)
    assert row[COL["flow_vx_hps"]] == pytest.approx(1.0, rel=0.25) and abs(row[COL["flow_vy_hps"]]) < 0.2
    assert row[COL["flow_flail_hps"]] < 0.3 and row[COL["flow_wander_2s_h"]] < 0.3
    assert row[COL["flow_moving_frac"]] > 0.3


def test_a_still_entity_does_not_move_and_a_swaying_one_wanders():
    still = flow_of(lambda t: (60, 40))
    assert still[COL["flow_speed_hps"]] < 0.05 and still[COL["flow_wander_2s_h"]] < 0.05
    # to and fro at 0.5 Hz, +-10 px (0.4 body heights), like a scuffle's pushing: over the last 2 s in half
    # seconds the box moved 1.6 body heights back and forth and got nowhere
    sway = flow_of(lambda t: (60 + 10 * np.sin(2 * np.pi * 0.5 * t), 40))
    assert sway[COL["flow_wander_2s_h"]] == pytest.approx(1.59, abs=0.3)
    assert sway[COL["flow_flail_hps"]] > 0.3


def test_scene_changes_become_entities_after_the_detections():
    import cv2

    rng, g = np.random.default_rng(5), ground()
    analyzer = MotionAnalyzer((W, H), sample_interval_s=0.5)
    n = int(6 * 10)
    for k in range(n):
        f = g.copy()
        if k >= 20:
            f[80:88, 20:34] = 230  # an item from 2 s on
        rgb = np.repeat(noisy(f, rng)[..., None], 3, axis=2)
        analyzer.push(k / 10, lambda wh, rgb=rgb: cv2.resize(rgb, wh, interpolation=cv2.INTER_AREA), k == n - 1)
    frame = person_frame((n - 1) / 10, [(100, 20, 120, 70)])
    frame.masks, frame.mask_sources = np.zeros((1, 30, 40), bool), ["selfie_segmentation"]
    out = analyzer.sample(frame, (W, H), (40, 30))
    assert len(out) == 2 and list(out.class_ids) == [1, SCENE_CHANGE_CLASS_ID]
    assert out.class_names[1] == "scene change" and out.track_ids[1] == -1 and out.mask_sources[1] == "scene_change"
    assert out.boxes[1] == pytest.approx([20, 80, 34, 88], abs=2)
    assert out.masks.shape == (2, 30, 40) and out.masks[1].any() and not out.masks[1][:15].any()
    row = out.motion[1]
    assert row[COL["change_person_overlap"]] == 0 and row[COL["change_contrast"]] > row[COL["change_contrast_before"]]
    assert not row[:COL["change_grey"]].any()  # no flow columns for a change
    assert row[COL["change_log_since_person_s"]] == pytest.approx(np.log1p(8.0))  # nobody was near: the cap


def test_a_change_says_how_long_before_it_a_person_stood_there():
    """An item appears at 2 s beside where a person stood until 1.5 s (samples every 0.5 s)."""
    import cv2

    rng, g = np.random.default_rng(8), ground()
    analyzer = MotionAnalyzer((W, H), sample_interval_s=0.5)
    out = None
    for k in range(60):
        t = k / 10
        f = g.copy()
        if k >= 20:
            f[80:88, 20:34] = 230
        rgb = np.repeat(noisy(f, rng)[..., None], 3, axis=2)
        analyzer.push(t, lambda wh, rgb=rgb: cv2.resize(rgb, wh, interpolation=cv2.INTER_AREA), k % 5 == 0)
        if k % 5 == 0:
            people = [(36, 40, 52, 88)] if t <= 1.5 else []  # 48 px tall, feet beside the item's spot
            out = analyzer.sample(person_frame(t, people), (W, H), (40, 30))
    changes = np.flatnonzero(out.class_ids == SCENE_CHANGE_CLASS_ID)
    assert len(changes) == 1
    row = out.motion[changes[0]]
    since = np.expm1(row[COL["change_log_since_person_s"]])
    established = 5.5 - np.expm1(row[COL["change_log_age_s"]])
    assert since == pytest.approx(established - 1.5, abs=0.01) and since < 3.0


def changes_with_detections(paint, detections, seconds: float = 8.0, seed: int = 9) -> list:
    """Scene-change entities at the last sample of a scene drawn by ``paint(f, t)``, with the detector's
    boxes at each 0.5-s sample given by ``detections(t) -> [(class_id, (x1, y1, x2, y2))]``."""
    import cv2

    rng, g = np.random.default_rng(seed), ground()
    analyzer = MotionAnalyzer((W, H), sample_interval_s=0.5)
    out, n = None, int(seconds * 10)
    for k in range(n):
        t = k / 10
        f = g.copy()
        paint(f, t)
        rgb = np.repeat(noisy(f, rng)[..., None], 3, axis=2)
        analyzer.push(t, lambda wh, rgb=rgb: cv2.resize(rgb, wh, interpolation=cv2.INTER_AREA), k % 5 == 0)
        if k % 5 == 0:
            dets = detections(t)
            frame = person_frame(t, [b for _, b in dets])
            frame.class_ids[:] = [c for c, _ in dets]
            out = analyzer.sample(frame, (W, H), (40, 30))
    return [out.boxes[i] for i in np.flatnonzero(out.class_ids == SCENE_CHANGE_CLASS_ID)]


def test_someone_standing_still_is_the_detectors_not_a_change_and_leaves_no_ghost():
    """A dark upright figure walks in at 1 s and stands still at (60, 40) from 2 s, detected at every sample
    but one: it is no change while there (its box says who it is), and after it steps 30 px right at 5 s
    the ground it stood on shows no ghost."""
    def paint(f, t):
        x = 60 if t < 5 else 90
        if t >= 2:
            f[40:80, x:x + 14] = 30
        elif t >= 1:
            f[40:80, int(10 + 50 * (t - 1)):int(10 + 50 * (t - 1)) + 14] = 30

    def detections(t):
        x = 60 if t < 5 else 90
        missed = t == 3.5  # the detector misses a standing person now and then
        return [] if t < 2 or missed else [(1, (x, 40, x + 14, 80))]

    assert changes_with_detections(paint, detections) == []
    assert changes_with_detections(paint, lambda t: []), "without the boxes the still figure is a change"


def test_someone_lying_where_they_fell_and_an_item_beside_a_stander_are_changes():
    """A lying figure (wider than tall: not upright) stays a change under its own box; an item put down
    at a standing person's feet shows once they have stepped off it."""
    lying = changes_with_detections(lambda f, t: f.__setitem__((slice(80, 92), slice(40, 80)), 40) if t >= 2 else None,
                                    lambda t: [(1, (40, 80, 80, 92))] if t >= 2 else [])
    assert len(lying) == 1 and lying[0] == pytest.approx([40, 80, 80, 92], abs=2)

    def paint(f, t):
        if t >= 2:
            f[72:80, 76:88] = 230  # the item, beside the feet
        if t < 4:
            f[30:80, 60:74] = 30  # the person, until they walk off at 4 s

    left = changes_with_detections(paint, lambda t: [(1, (60, 30, 74, 80))] if t < 4 else [])
    assert len(left) == 1 and left[0] == pytest.approx([76, 72, 88, 80], abs=2)


def test_a_parked_vehicle_changing_is_not_a_change():
    """A car's boot opens at 3 s (a bright patch inside the car's box): the vehicle is the detector's."""
    def paint(f, t):
        f[20:50, 100:150] = 70  # the car
        if t >= 3:
            f[22:34, 130:150] = 200

    car = lambda t: [(3, (100, 20, 150, 50))]  # noqa: E731
    assert changes_with_detections(paint, car) == []
    assert changes_with_detections(paint, lambda t: []), "without the car's box the opened boot is a change"


def test_add_motion_reads_a_video_and_running_it_again_measures_anew(tmp_path):
    """A written clip (10 fps, 5 s) where an item is put down at 1.5 s and the shot cuts at 4 s: the item
    is a scene change at 3.5 s (established) and gone after the cut (the view changed)."""
    from uprm.evidence import VideoEvidence
    from uprm.perception.motion import add_motion
    from uprm.video import probe, write_h264

    rng, g = np.random.default_rng(6), ground()
    other = ground(seed=9) * 0.6  # another shot

    def frames():
        for k in range(50):
            f = (g if k < 40 else other).copy()
            if 15 <= k < 40:
                f[80:90, 20:36] = 230
            yield np.repeat(noisy(f, rng)[..., None], 3, axis=2)

    path = write_h264(frames(), tmp_path / "item then cut.mp4", fps=10)
    info = probe(path)
    samples = [FrameEvidence.empty(k * 0.5, k * 5) for k in range(10)]
    ev = VideoEvidence(info, 2.0, samples, mask_size=(40, 30))
    once = add_motion(ev)
    twice = add_motion(once)
    counts = [int((f.class_ids == SCENE_CHANGE_CLASS_ID).sum()) for f in once.frames]
    assert counts[:4] == [0] * 4 and counts[7] == 1 and counts[9] == 0  # before, established, after the cut
    assert [len(f) for f in twice.frames] == [len(f) for f in once.frames]
    for a, b in zip(once.frames, twice.frames):
        np.testing.assert_array_equal(a.motion, b.motion)
        np.testing.assert_array_equal(a.boxes, b.boxes)
