"""Event compositor, the parts that need no model: specs, feathering, warping, relighting, perspective,
the static-camera check (on the real hand-held bikes.mp4) and the CLI's error path."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from uprm.compose.blend import Placement, affine, match_light, paste
from uprm.compose.errors import ComposeError
from uprm.compose.events import EVENT_KINDS, EventSpec
from uprm.compose.perspective import fit_perspective
from uprm.compose.plate import Plate
from uprm.compose.sprites import Sprite, feather


def _disk_sprite(h: int = 60, w: int = 30) -> Sprite:
    import cv2

    alpha = np.zeros((h, w), np.float32)
    cv2.ellipse(alpha, (w // 2, h // 2), (w // 2 - 3, h // 2 - 3), 0, 0, 360, 1.0, -1)
    rgb = np.full((h, w, 3), (40, 40, 160), np.uint8)
    return Sprite(rgb, feather(alpha, 1.0), (w / 2, h - 3.0), (100.0, 200.0), 0, (50.0, 0.0, 0.0))


def test_event_specs_are_validated():
    assert EventSpec.parse("fall") == EventSpec("fall")
    assert EventSpec.parse({"kind": "struggle", "start_s": 3, "duration_s": 4}).duration_s == 4
    with pytest.raises(ComposeError, match="unknown event kind 'explode'"):
        EventSpec("explode")
    with pytest.raises(ComposeError, match="start_s must be"):
        EventSpec("fall", start_s=-1.0)
    with pytest.raises(ComposeError, match="n_people is for crowd_run"):
        EventSpec("fall", n_people=3)
    with pytest.raises(ComposeError, match="needs 'kind'"):
        EventSpec.parse({"start_s": 1.0})
    assert set(EVENT_KINDS) >= {"fall", "struggle", "crowd_run", "loiter", "left_object", "normal_walk"}


def test_feathered_alpha_has_soft_edges():
    hard = np.zeros((40, 40), np.float32)
    hard[10:30, 12:28] = 1.0
    soft = feather(hard, sigma_px=1.0)
    edge = (hard > 0) & ~np.pad(hard[1:-1, 1:-1] > 0, 1)  # the hard mask's border pixels
    ring = soft[9:31, 11:29][np.pad(np.zeros((20, 16), bool), 1, constant_values=True)]  # just outside
    assert np.all((soft[edge] > 0) & (soft[edge] < 1)), "border pixels must be partly transparent"
    assert np.all(ring < 0.5) and np.all(ring >= 0)
    assert soft[20, 20] > 0.99  # the inside stays opaque


def test_rotation_about_the_feet_keeps_the_feet_in_place():
    sprite = _disk_sprite()
    for angle in (0.0, 45.0, 90.0, -90.0):
        m = affine(Placement(sprite, (200.0, 300.0), 1.5, angle))
        foot = m @ np.array([*sprite.foot_xy, 1.0])
        top = m @ np.array([sprite.foot_xy[0], 0.0, 1.0])
        assert np.allclose(foot, (200.0, 300.0))
        # the head ends 1.5 x (foot y) away, straight up at 0 degrees, to the right at +90
        expect = (200 + 1.5 * sprite.foot_xy[1] * np.sin(np.deg2rad(angle)),
                  300 - 1.5 * sprite.foot_xy[1] * np.cos(np.deg2rad(angle)))
        assert np.allclose(top, expect, atol=1e-6)


def test_paste_blends_softly_and_only_where_the_sprite_is():
    frame = np.full((200, 200, 3), 128, np.uint8)
    sprite = _disk_sprite()
    box = paste(frame, Placement(sprite, (100.0, 150.0), 1.0, shadow=False))
    assert box is not None
    x1, y1, x2, y2 = box
    changed = np.abs(frame.astype(int) - 128).max(axis=2) > 0
    assert changed[y1:y2, x1:x2].any() and not changed[:y1].any() and not changed[:, x2:].any()
    row = frame[120, x1:x2, 2].astype(int)  # the blue channel across the middle of the figure
    assert row.max() >= 155 and (np.logical_and(row > 130, row < 155)).any(), "soft edge: values in between"


def test_relighting_follows_the_ground_but_keeps_the_clothes():
    rgb = np.zeros((10, 10, 3), np.uint8)
    rgb[:, :5] = (30, 30, 30)  # a dark coat
    rgb[:, 5:] = (200, 40, 40)  # a red scarf
    brighter = match_light(rgb, np.array([50.0, 0, 0]), np.array([60.0, 0, 0]))
    darker = match_light(rgb, np.array([50.0, 0, 0]), np.array([40.0, 0, 0]))
    assert brighter.mean() > rgb.mean() > darker.mean()
    assert brighter[0, 0].max() < 80, "a dark coat on bright ground stays dark (no Reinhard repaint)"
    assert brighter[0, 9, 0] > 2 * brighter[0, 9, 1], "the scarf stays red"


def test_perspective_fit_is_robust_to_outliers():
    rng = np.random.default_rng(0)
    y = rng.uniform(150, 550, 200)
    h = 0.25 * y + 8 + rng.normal(0, 2, 200)
    h[:20] *= 2.0  # two people in one box
    fit = fit_perspective(y, h)
    assert abs(fit.slope - 0.25) < 0.02 and abs(fit.intercept_px - 8) < 4
    assert fit.height_px(500) > fit.height_px(200)
    with pytest.raises(ComposeError, match="only 3 people"):
        fit_perspective(y[:3], h[:3])


def test_ground_lab_is_the_mean_of_the_ring():
    import cv2

    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    plate = Plate(rgb, np.zeros((60, 80), np.float32), 0.0, 1)
    box = (30.0, 20.0, 40.0, 40.0)
    got = plate.ground_lab(box)
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    gx, gy = 10 + 4, 20 * 0.5 + 4
    ring = np.zeros((60, 80), bool)
    ring[int(20 - gy):int(40 + gy), int(30 - gx):int(40 + gx)] = True
    ring[20:40, 30:40] = False
    assert np.allclose(got, lab[ring].mean(axis=0), atol=1e-3)


def _cli(argv: list[str]) -> int:
    from uprm.compose import cli

    parser = argparse.ArgumentParser(prog="python -m uprm")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_help_has_examples():
    from uprm.compose import cli

    parser = argparse.ArgumentParser(prog="python -m uprm")
    cli.register(parser.add_subparsers(dest="command"))
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    text = sub.choices["compose"].format_help()
    assert "python -m uprm compose demo" in text and "--videos" in text


def test_moving_camera_is_refused_with_a_clear_message(shared_dir: Path, tmp_path: Path, capsys):
    bikes = shared_dir / "media" / "bikes.mp4"
    if not bikes.is_file():
        pytest.skip(f"{bikes} is absent")
    from uprm.compose.plate import clean_plate
    from uprm.compose.source import probe

    with pytest.raises(ComposeError, match="camera is not static"):
        clean_plate(probe(bikes))
    code = _cli(["compose", "--source", str(bikes), "--out", str(tmp_path / "ds"), "--videos", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "camera is not static" in err and "Traceback" not in err


def test_missing_source_is_a_clear_error(tmp_path: Path, capsys):
    code = _cli(["compose", "clip", "--source", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "c.mp4")])
    err = capsys.readouterr().err
    assert code == 2 and "nope.mp4" in err and "no such file" in err


def test_cached_plates_and_sprite_banks_are_keyed_by_the_code_that_made_them(monkeypatch):
    from uprm.compose import cache, sprites
    from uprm.evidence import VideoInfo

    fp = cache.code_fingerprint()
    assert len(fp) == 64 and cache.code_fingerprint() == fp  # computed once per process, stable
    video = VideoInfo(path="v.mp4", content_hash="ab" * 32, fps=10.0, frame_count=100, duration_s=10.0,
                      width=64, height=48)
    key = sprites._cache_key(video, 0, 50, 1.0)
    # other compositor code (or another av / OpenCV / numpy): another bank, not the one older code harvested
    monkeypatch.setattr(sprites, "code_fingerprint", lambda: "0" * 64)
    assert sprites._cache_key(video, 0, 50, 1.0) != key


def test_a_sprite_bank_read_back_from_the_cache_holds_exactly_the_harvested_sprites():
    from uprm.compose.sprites import _pack, _unpack

    rng = np.random.default_rng(0)
    sprites = [Sprite(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), rng.random((h, w), dtype=np.float32),
                      (w / 2, h - 1.0), (10.0 + h, 20.0), i, (50.0, 1.5, -2.0)) for i, (h, w) in enumerate([(5, 3), (7, 4)])]
    back = _unpack(_pack(sprites), "")
    for a, b in zip(sprites, back):
        assert np.array_equal(a.rgb, b.rgb) and a.alpha.dtype == b.alpha.dtype == np.float32
        assert np.array_equal(a.alpha, b.alpha)  # not rounded to 8 bits: cached banks compose the same pixels
        assert (a.foot_xy, a.source_foot_xy, a.source_frame, a.ground_lab) == (b.foot_xy, b.source_foot_xy,
                                                                               b.source_frame, b.ground_lab)
