"""Event compositor end to end on real footage (the bundled vtest sample) with the real bundled models:
sprites cut by selfie segmentation x background subtraction, composed clips checked pixel by pixel
against their ground truth.

Sprites come from the sample's first 6 s (harvested once per session into a temporary cache, so the
real harvest runs every time); clips are 8 s cut from 6-14 s, so no pasted person is a clone of
someone visible in the same clip.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from uprm.compose import ComposeError, EventSpec, compose, make_dataset, prepare
from uprm.compose.events import TIMING_S, Scene
from uprm.compose.compositor import plan

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "assets" / "sample_vtest_30s.mp4"
CLIP = {"start_s": 6.0, "clip_s": 8.0}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    if not SAMPLE.is_file():
        pytest.skip(f"{SAMPLE} is absent (rebuild it with python assets/make_sample.py)")
    mp = pytest.MonkeyPatch()
    mp.setenv("UPRM_CACHE_DIR", str(tmp_path_factory.mktemp("compose_cache")))
    try:
        yield prepare(SAMPLE, sprite_window_s=(0.0, 6.0))
    finally:
        mp.undo()


def _frames(path: Path, indices: set[int] | None = None) -> dict[int, np.ndarray]:
    import av

    out = {}
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if indices is None or i in indices:
                out[i] = f.to_ndarray(format="rgb24")
    return out


def _hashes(path: Path, indices: set[int]) -> dict[int, str]:
    return {i: hashlib.sha256(f.tobytes()).hexdigest() for i, f in _frames(path, indices).items()}


def test_bank_holds_clean_walk_cycles_and_a_rising_perspective(footage):
    bank = footage.bank
    assert len(bank.tracks) >= 2, "the sample's first 6 s hold several people walking in the open"
    persp = bank.perspective
    assert persp.slope > 0.1 and persp.height_px(500) > 1.5 * persp.height_px(200), "people nearer look taller"
    assert persp.n_people >= 50
    # the cut-outs agree with the fit: a sprite is about as tall as the fit says at its own feet
    ratios = [s.height_px / persp.height_px(s.source_foot_xy[1]) for t in bank.tracks for s in t.sprites]
    assert 0.8 < float(np.median(ratios)) < 1.3
    for track in bank.tracks:
        frames = [s.source_frame for s in track.sprites]
        assert frames == list(range(frames[0], frames[0] + len(frames) * bank.sample_step, bank.sample_step))


def test_real_sprites_have_feathered_edges(footage):
    for track in footage.bank.tracks:
        for sprite in track.sprites[::5]:
            a = sprite.alpha
            inside = a > 0.5
            border = inside & ~(np.roll(inside, 1, 0) & np.roll(inside, -1, 0) & np.roll(inside, 1, 1)
                                & np.roll(inside, -1, 1))
            assert np.mean((a[border] > 0) & (a[border] < 1)) > 0.95, "edge pixels must be partly transparent"
            assert a.max() > 0.99 and a[0].max() < 0.05 and a[-1].max() < 0.05, "opaque body, clear margin"


def test_same_seed_same_clip_other_seed_other_clip(footage, tmp_path):
    kinds = ["fall", "normal_walk"]
    a = compose(footage, kinds, seed=5, out=tmp_path / "a.mp4", video_id="clip", **CLIP)
    b = compose(footage, kinds, seed=5, out=tmp_path / "b.mp4", video_id="clip", **CLIP)
    c = compose(footage, kinds, seed=6, out=tmp_path / "c.mp4", video_id="clip", **CLIP)
    assert a.gt_path.read_bytes() == b.gt_path.read_bytes()
    assert a.gt_path.read_bytes() != c.gt_path.read_bytes()
    picks = {0, 35, 79}
    assert _hashes(a.path, picks) == _hashes(b.path, picks)
    assert _hashes(a.path, picks) != _hashes(c.path, picks)
    path, gt = a  # unpacks as (path, gt)
    assert path == a.path and gt == json.loads(a.gt_path.read_text())


def _pasted_box(composed: np.ndarray, source: np.ndarray, near: np.ndarray, h: float):
    """Bounding box and centroid of what differs from the source frame near a foot point."""
    import cv2

    x, y = near
    x1, y1 = int(max(0, x - 1.5 * h)), int(max(0, y - 1.5 * h))
    x2, y2 = int(min(source.shape[1], x + 1.5 * h)), int(min(source.shape[0], y + 0.5 * h))
    diff = np.abs(composed[y1:y2, x1:x2].astype(int) - source[y1:y2, x1:x2].astype(int)).max(axis=2) > 30
    diff = cv2.morphologyEx(diff.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0
    ys, xs = np.nonzero(diff)
    assert len(ys) > 20, "the pasted person must be visible in the composed frame"
    return (xs.max() - xs.min(), ys.max() - ys.min()), (xs.mean() + x1, ys.mean() + y1)


def test_fall_ground_truth_matches_the_pixels(footage, tmp_path):
    result = compose(footage, [EventSpec("fall", start_s=3.0)], seed=2, out=tmp_path / "fall.mp4", **CLIP)
    (event,) = result.events
    assert (event.start_s, event.end_s) == (3.0, 8.0)
    assert event.cause.startswith("The threat is attributed to a person who collapses")
    assert "at 3.0s" in event.cause
    fps = result.fps
    before, after = int(round((event.start_s - 0.2) * fps)), int(round((event.start_s + 1.0) * fps))
    late = result.gt["database"]["fall"]["duration"] * fps - 1
    composed = _frames(result.path, {before, after, int(late)})
    first = int(round(CLIP["start_s"] * fps))
    source = {i - first: f for i, f in _frames(SAMPLE, {first + before, first + after, first + int(late)}).items()}
    (actor,) = result.actors
    spot = actor.foot_xy[after - actor.first_frame]
    h = footage.bank.perspective.height_px(spot[1])
    (w0, h0), (_, cy0) = _pasted_box(composed[before], source[before], spot, h)
    (w1, h1), (_, cy1) = _pasted_box(composed[after], source[after], spot, h)
    (w2, h2), (_, cy2) = _pasted_box(composed[int(late)], source[int(late)], spot, h)
    assert h0 > w0 and h0 > 0.7 * h, "0.2 s before the onset the person still stands"
    assert w1 > h1 and h1 < 0.5 * h, "1 s after the onset the person lies on the ground"
    assert cy1 - cy0 > 0.2 * h, "the figure's centroid drops between start_s and start_s + 1 s"
    assert abs(cy2 - cy1) < 0.05 * h and w2 > h2, "and stays down without moving until the clip ends"


def test_harmless_events_have_no_segment_but_are_pasted_the_same_way(footage, tmp_path):
    from uprm.formats import read_activitynet_gt

    kinds = ["normal_walk", "pause_walk", "pass_by"]
    result = compose(footage, kinds, seed=1, out=tmp_path / "calm.mp4", **CLIP)
    segments, durations = read_activitynet_gt(result.gt_path)
    assert segments == [] and durations == {"calm": 8.0}
    entry = result.gt["database"]["calm"]
    assert [e["kind"] for e in entry["composition"]["harmless"]] == kinds
    assert not any(e.threat for e in result.events)
    # real pasting happened: the clip differs from the source where the harmless people walk
    fps = result.fps
    first = int(round(CLIP["start_s"] * fps))
    actor = result.actors[0]
    k = actor.first_frame + len(actor.sprites) // 2
    composed, source = _frames(result.path, {k})[k], _frames(SAMPLE, {first + k})[first + k]
    spot = actor.foot_xy[k - actor.first_frame]
    _pasted_box(composed, source, spot, footage.bank.perspective.height_px(spot[1]))


def test_output_is_h264_and_the_ground_truth_validates(footage, tmp_path):
    import av

    from uprm.formats import read_activitynet_gt

    result = compose(footage, [EventSpec("struggle", start_s=2.5, duration_s=3.0), "normal_walk"], seed=3,
                     out=tmp_path / "fight.mp4", **CLIP)
    with av.open(str(result.path)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert sum(1 for _ in c.decode(stream)) == 80
    segments, durations = read_activitynet_gt(result.gt_path)
    assert durations == {"fight": 8.0}
    (seg,) = segments
    assert (seg.start_s, seg.end_s, seg.label) == (2.5, 5.5, "struggle")
    assert seg.cause.startswith("The threat is attributed to two people who meet")
    ann = result.gt["database"]["fight"]["annotations"][0]
    assert {a["role"] for a in ann["actors"]} == {"grapples"} and len(ann["actors"]) == 2


def _scene(footage, n_frames: int, seed: int) -> Scene:
    v = footage.video
    return Scene(footage.bank, v.fps, n_frames, v.width, v.height, np.random.default_rng(seed), (60, 60 + n_frames))


def _speed(actor, lo: int, hi: int) -> float:
    feet = actor.foot_xy[max(0, lo - actor.first_frame):hi - actor.first_frame]
    return float(np.median(np.linalg.norm(np.diff(feet, axis=0), axis=1)))


def test_every_threat_script_acts_inside_its_segment(footage):
    """The scripted motion changes exactly at the ground-truth times (on the plans, no rendering)."""
    fps = footage.video.fps
    persp = footage.bank.perspective
    for kind, n_s in (("struggle", 12), ("crowd_run", 12), ("loiter", 20), ("left_object", 10)):
        scene = _scene(footage, int(n_s * fps), seed=4)
        actors, (event,) = plan(scene, [kind])
        s, e = int(round(event.start_s * fps)), int(round(event.end_s * fps))
        assert event.threat and 0 < event.start_s < event.end_s <= n_s
        people = [a for a in actors if a.kind == "person"]
        if kind == "struggle":
            a, b = people
            gap = np.linalg.norm(a.foot_xy[s - a.first_frame:e - a.first_frame]
                                 - b.foot_xy[s - b.first_frame:e - b.first_frame], axis=1)
            h = persp.height_px(a.foot_xy[s - a.first_frame, 1])
            assert gap.max() < 0.5 * h, "grappling: feet within half a body height all through the segment"
            assert np.abs(a.angle_deg[s - a.first_frame:e - a.first_frame]).mean() > 5, "leaning into each other"
        elif kind == "crowd_run":
            assert len(people) >= 3
            for p in people:
                assert _speed(p, s + 3, e) > 2.0 * _speed(p, p.first_frame, s), "running is much faster than walking"
        elif kind == "loiter":
            (p,) = people
            feet = p.foot_xy[s - p.first_frame:e - p.first_frame]
            h = persp.height_px(feet[:, 1].mean())
            assert np.ptp(feet[:, 0]) < 4 * h, "stays within a few body heights"
            assert e - s >= 8 * fps
        else:
            person, item = actors
            assert event.end_s == n_s, "an unattended item stays until the clip ends"
            rest = item.foot_xy[s - item.first_frame + int(fps):]
            assert np.allclose(rest, rest[0]), "the item does not move once it is down"
            assert person.end_frame < scene.n_frames, "the person leaves"
            assert np.linalg.norm(person.foot_xy[-1] - rest[0]) > 0.5 * persp.height_px(rest[0][1])


def test_a_chat_stands_close_and_still_for_seconds_then_walks_off_and_is_harmless(footage):
    """The hard negative: a pair close together and still (what a struggle's pair looks like, minus the
    grappling), never a threat, and never drawn at random (random plans keep their ground truth)."""
    from uprm.compose import compositor

    fps, persp = footage.video.fps, footage.bank.perspective
    scene = _scene(footage, int(12 * fps), seed=5)
    actors, (event,) = plan(scene, [EventSpec("chat", duration_s=10.0)])
    assert event.kind == "chat" and not event.threat and "stand talking" in event.cause
    a, b = actors
    assert a.first_frame == b.first_frame and len(a.sprites) == len(b.sprites) == int(10 * fps)
    gap = np.linalg.norm(a.foot_xy - b.foot_xy, axis=1)
    h = persp.height_px(a.foot_xy[len(a.sprites) // 2, 1])
    still = (np.linalg.norm(np.diff(a.foot_xy, axis=0), axis=1) < 1e-6).nonzero()[0]
    assert len(still) >= 4 * fps, "they stand still for seconds"
    assert gap[still].max() < 0.7 * h, "close together while they talk"
    assert np.abs(a.angle_deg[still]).max() <= 1.5 + 1e-6, "swaying a little, not grappling"
    va, vb = a.foot_xy[-1] - a.foot_xy[-5], b.foot_xy[-1] - b.foot_xy[-5]
    assert np.sign(va[0]) == np.sign(vb[0]) != 0, "they walk off the same way"
    assert "chat" not in compositor.DRAWN_HARMLESS_KINDS


def test_infeasible_requests_say_what_to_do(footage, tmp_path):
    with pytest.raises(ComposeError, match="too short"):
        compose(footage, ["loiter"], seed=0, out=tmp_path / "x.mp4", **CLIP)
    with pytest.raises(ComposeError, match="start_s=7.5"):
        compose(footage, [EventSpec("fall", start_s=7.5)], seed=0, out=tmp_path / "x.mp4", **CLIP)
    with pytest.raises(ComposeError, match="not inside"):
        compose(footage, 1, seed=0, out=tmp_path / "x.mp4", start_s=25.0, clip_s=10.0)


def test_dataset_builder_writes_clips_ground_truth_and_manifest(footage, tmp_path):
    from uprm.formats import read_activitynet_gt

    ds = make_dataset([footage], n_videos=2, seed=0, out_dir=tmp_path / "ds", clip_s=6.0)
    segments, durations = read_activitynet_gt(ds.gt_path)
    manifest = json.loads(ds.manifest_path.read_text())
    ids = [v["video_id"] for v in manifest["videos"]]
    assert sorted(durations) == sorted(ids) and len(ids) == 2
    for entry in manifest["videos"]:
        assert (ds.out_dir / entry["path"]).is_file()
        threats = [e for e in entry["events"] if e["threat"]]
        mine = sorted((s.start_s, s.end_s, s.label) for s in segments if s.video_id == entry["video_id"])
        assert mine == sorted((e["start_s"], e["end_s"], e["kind"]) for e in threats)
        assert len(threats) <= 2 and len(entry["events"]) - len(threats) <= 2


def test_drawn_threats_always_fit_the_windows_sized_for_them(footage):
    """Random draws (a number of threats, as the bootstrap sets use) size one window per threat from its
    timing: every threat given a window is composed, persistent ones (fall, left_object) included with
    their full tail; a clip too short for all of them together gets none. (A persistent threat once
    got a window sized for a shorter tail than it needs and failed the whole clip.)"""
    from uprm.compose import compositor

    fps = footage.video.fps
    rng = np.random.default_rng(0)
    persistent = 0
    for seed in range(60):
        n = int(rng.uniform(10.0, 16.0) * fps)
        specs = compositor._draw_specs(_scene(footage, n, seed), 2, 0)
        free = sorted((s for s in specs if s.threat), key=lambda s: s.kind in compositor.PERSISTENT_KINDS)
        n_windows = len(compositor._windows(_scene(footage, n, seed), free, strict=False))
        _, events = plan(_scene(footage, n, seed), 2, 0)
        assert [e.kind for e in events] == [s.kind for s in free[:n_windows]], f"seed {seed}"
        for e in events:
            if e.kind in compositor.PERSISTENT_KINDS:
                persistent += 1
                assert e.end_s == pytest.approx(n / fps) and e.end_s - e.start_s >= TIMING_S[e.kind][1][0] - 1e-6
    assert persistent >= 5, "the draws exercised falls and left items"
    with pytest.raises(ComposeError, match="too short"):  # named events must all fit
        plan(_scene(footage, int(6 * fps), seed=0), ["loiter"])
