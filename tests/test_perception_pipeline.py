"""perceive() end to end on an 8 s vtest excerpt (perceived once per session), cache, resume, CLI."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.test_perception_units import assert_same_evidence
from uprm.evidence import PREDICATES, VideoEvidence
from uprm.perception import BACKGROUND_DIM, COARSE_DIM, PerceptionSettings, perceive
from uprm.perception.pipeline import Perceiver
from uprm.video import VideoError, iter_frames, write_h264

EXCERPT_FRAMES = (100, 180)  # 10.0-18.0 s of vtest: 6-9 people walking, several crossing paths


@pytest.fixture(scope="session")
def excerpt(vtest_path, tmp_path_factory) -> Path:
    lo, hi = EXCERPT_FRAMES
    frames = (f.rgb() for f in iter_frames(vtest_path) if lo <= f.frame_index < hi)
    return write_h264(frames, tmp_path_factory.mktemp("excerpt") / "vtest 10-18s.mp4", fps=10)


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("evidence_cache")


@pytest.fixture(scope="session")
def evidence(excerpt, cache_root) -> VideoEvidence:
    stages = []
    ev = perceive(excerpt, progress=lambda stage, fraction: stages.append((stage, fraction)), cache_dir=cache_root)
    assert ("front-ends", 1.0) in stages and all(0.0 <= f <= 1.0 for _, f in stages)
    return ev


def _centre(box):
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


@pytest.mark.slow
def test_excerpt_evidence_has_every_layer(evidence):
    assert len(evidence.frames) == 16 and evidence.sample_fps == 2.0
    assert evidence.times_s == pytest.approx(np.arange(16) * 0.5)
    assert evidence.video.frame_count == 80 and evidence.video.fps == 10.0
    assert evidence.mask_size == (160, 120)
    assert {"detector", "pose", "tracker", "masks", "fight", "scene", "relations"} <= set(evidence.versions)
    for f in evidence.frames:
        assert f.coarse.shape == (COARSE_DIM,) and f.background.shape == (BACKGROUND_DIM,)
        assert f.fight_prob == pytest.approx(float(f.coarse[-1]), abs=1e-4) and 0 <= f.fight_prob <= 1
        assert np.isfinite(f.coarse).all() and np.isfinite(f.background).all()
        assert f.masks is not None and f.masks.shape == (len(f), 120, 160)
        people = f.is_person
        assert all(f.mask_sources[i] == "selfie_segmentation" for i in np.flatnonzero(people))
        assert set(f.mask_sources) <= {"selfie_segmentation", "bg_subtraction", ""}
        assert (f.keypoints[~people] == 0).all() and (f.keypoints[people, :, 2] > 0).any()
        occupancy = f.background[-64:]
        assert 0 <= occupancy.min() and occupancy.max() <= 1 and (occupancy.sum() > 0) == bool(f.masks[people].any())
        assert len(f.scene_labels) == 5
    assert 6 <= max(int(f.is_person.sum()) for f in evidence.frames) <= 10


@pytest.mark.slow
def test_the_motion_layer_measures_every_entity(evidence):
    from uprm.evidence import ENTITY_MOTION, SCENE_CHANGE_CLASS_ID

    assert "motion" in evidence.versions
    speed = ENTITY_MOTION.index("flow_speed_hps")
    walking = []
    for f in evidence.frames:
        assert f.motion is not None and f.motion.shape == (len(f), len(ENTITY_MOTION))
        changes = f.class_ids == SCENE_CHANGE_CLASS_ID
        assert not f.motion[changes, :speed + 1].any()  # a scene change does not move
        if f.time_s >= 1.0:
            walking += list(f.motion[f.is_person, speed])
    # people walking through vtest: most measurably moving, at walking pace (under a body height a second)
    assert np.median(walking) == pytest.approx(0.35, abs=0.2) and np.percentile(walking, 90) < 1.0


@pytest.mark.slow
def test_a_new_motion_version_reuses_the_first_pass(excerpt, cache_root, monkeypatch):
    from uprm.perception import motion, pipeline

    monkeypatch.setattr(motion, "MOTION_VERSION", "motion-test")
    monkeypatch.setattr(pipeline, "_PERCEIVERS", {})
    stages = []
    again = perceive(excerpt, progress=lambda stage, fraction: stages.append(stage), cache_dir=cache_root)
    assert "motion" in stages and "front-ends" not in stages  # only the second pass ran
    assert again.versions["motion"].startswith("motion-test") and all(f.motion is not None for f in again.frames)


@pytest.mark.slow
def test_track_ids_persist_for_walking_people(evidence):
    runs: dict[int, list[tuple[float, np.ndarray, float]]] = {}
    for f in evidence.frames:
        for i in np.flatnonzero(f.is_person & (f.track_ids >= 0)):
            runs.setdefault(int(f.track_ids[i]), []).append((f.time_s, _centre(f.boxes[i]), f.boxes[i, 3] - f.boxes[i, 1]))
    long_walks = []
    kept = total = 0
    for tid, points in runs.items():
        for (t0, c0, h0), (t1, c1, _) in zip(points, points[1:]):
            # nobody on a campus walkway covers more than a body height in half a second
            assert np.linalg.norm(c1 - c0) < h0 * (t1 - t0) / 0.5, f"track {tid} jumps at {t1} s"
            kept += t1 - t0 == pytest.approx(0.5)
        total += len(points) - 1
        moved = np.linalg.norm(points[-1][1] - points[0][1])
        if len(points) >= 6 and points[-1][0] - points[0][0] >= 3.0 and moved > 10:
            long_walks.append(tid)
    assert len(long_walks) >= 3, f"walking people should keep one id over 3 s, got {runs.keys()}"
    assert kept / total > 0.75  # a sighting is mostly followed by one in the very next sample
    # one id per person per frame
    for f in evidence.frames:
        ids = f.track_ids[f.track_ids >= 0]
        assert len(ids) == len(set(ids.tolist()))


@pytest.mark.slow
def test_relations_agree_with_the_geometry(evidence):
    seen = set()
    for f in evidence.frames:
        for r in f.relations:
            seen.add(r.predicate)
            assert r.predicate in PREDICATES and 0 <= r.score <= 1 and r.evidence
            a, b = f.boxes[r.subject], f.boxes[r.object]
            overlap = min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])
            if r.predicate == "touching":
                assert overlap
            elif r.predicate == "near":
                assert not overlap
                heights = [f.boxes[k, 3] - f.boxes[k, 1] for k in (r.subject, r.object) if f.is_person[k]]
                assert np.linalg.norm(_centre(a) - _centre(b)) < np.mean(heights)
            elif r.predicate in ("approaching", "moving_away"):
                assert f.track_ids[r.subject] >= 0 and f.track_ids[r.object] >= 0
            elif r.predicate in ("lying", "running"):
                assert r.subject == r.object and f.is_person[r.subject]
            elif r.predicate == "holding":
                wrists = f.keypoints[r.subject, 9:11]
                assert any(b[0] <= x <= b[2] and b[1] <= y <= b[3] for x, y, s in wrists if s >= 0.3)
    # a walkway with people passing each other: proximity and its trends are there
    assert {"near", "approaching"} <= seen or {"near", "moving_away"} <= seen, seen


@pytest.mark.slow
def test_cache_round_trip_equals_the_original(evidence, excerpt, cache_root):
    stages = []
    again = perceive(excerpt, progress=lambda stage, fraction: stages.append(stage), cache_dir=cache_root)
    assert "loaded from cache" in stages and "front-ends" not in stages
    assert_same_evidence(evidence, again)
    renamed = excerpt.with_name("same bytes, other name.mp4")
    renamed.write_bytes(excerpt.read_bytes())
    moved = perceive(renamed, cache_dir=cache_root)  # keyed by content, not by name
    assert moved.video.path == str(renamed) and len(moved.frames) == len(evidence.frames)


class _Stop(Exception):
    pass


@pytest.mark.slow
def test_an_interrupted_run_resumes_where_it_stopped(evidence, excerpt, tmp_path, monkeypatch):
    from uprm.perception import cache

    real_save = cache.save_chunk
    saved = []

    def crash_after_two_chunks(folder, *args):  # the process dies while saving the third chunk
        if len(saved) == 2:
            raise _Stop
        saved.append(real_save(folder, *args))
        return saved[-1]

    perceiver = Perceiver(PerceptionSettings(), chunk_samples=4, clip_block=16)
    monkeypatch.setattr(cache, "save_chunk", crash_after_two_chunks)
    with pytest.raises(_Stop):
        perceiver.run(excerpt, cache_dir=tmp_path)
    monkeypatch.setattr(cache, "save_chunk", real_save)
    chunks = sorted(p.name for p in tmp_path.glob("*.partial-c4/chunk_*"))
    assert chunks == ["chunk_00000", "chunk_00001"]
    resumed = perceiver.run(excerpt, cache_dir=tmp_path)
    assert perceiver.last_timings_s.get("resume_replay", 0) > 0
    assert not list(tmp_path.glob("*.partial*"))  # cleaned once the evidence is saved
    assert len(resumed.frames) == len(evidence.frames)
    for a, b in zip(evidence.frames, resumed.frames):
        assert a.frame_index == b.frame_index
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
        np.testing.assert_array_equal(a.track_ids, b.track_ids)
        np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)
        np.testing.assert_array_equal(a.masks, b.masks)
        # bf16 trunk blocks of another length round differently: equal to bf16 precision
        np.testing.assert_allclose(a.coarse[:-1], b.coarse[:-1], atol=0.05, rtol=0.05)
        assert [r.predicate for r in a.relations] == [r.predicate for r in b.relations]


@pytest.mark.slow
def test_cli_writes_evidence_and_an_h264_preview(evidence, excerpt, cache_root, tmp_path, capsys):
    import av

    from uprm.__main__ import main
    from uprm.perception.cache import load_evidence

    out = tmp_path / "run out"
    assert main(["perceive", str(excerpt), "--out", str(out), "--cache-dir", str(cache_root)]) == 0
    assert '"samples": 16' in capsys.readouterr().out
    assert_same_evidence(evidence, load_evidence(out))
    with av.open(str(out / "preview.mp4")) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert sum(1 for _ in c.decode(stream)) == 16  # one frame per sample
    assert main(["perceive", str(tmp_path / "missing.mp4"), "--out", str(out)]) == 1
    assert "no such file" in capsys.readouterr().err


def test_perceive_refuses_bad_input_clearly(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    with pytest.raises(VideoError, match="cannot be read as a video"):
        perceive(bad, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="sample_fps"):
        perceive(bad, PerceptionSettings(sample_fps=-1), cache_dir=tmp_path)


@pytest.mark.slow
def test_sam2_masks_through_the_pipeline(excerpt, tmp_path):
    pytest.importorskip("sam2")
    from uprm.perception.masks import Sam2Masker

    short = write_h264((f.rgb() for f in iter_frames(excerpt) if f.frame_index < 15), tmp_path / "short.mp4", 10)
    perceiver = Perceiver(PerceptionSettings(layers={"masks"}))
    # random weights (no checkpoint offline): checks prompts, windows and mask plumbing, not quality
    perceiver.set_sam2(Sam2Masker(None, config="configs/sam2.1/sam2.1_hiera_t.yaml", image_size=128,
                                  window=2, num_threads=1))
    ev = perceiver.run(short, cache_dir=tmp_path)
    assert len(ev.frames) == 3 and "sam2" in ev.versions["masks"]
    for f in ev.frames:
        assert f.masks.shape == (len(f), 120, 160) and f.mask_sources == ["sam2"] * len(f)
        assert f.coarse.shape == (0,) and f.background.shape == (0,)  # layers off: empty, not zeros
    assert perceiver.last_timings_s["masks_sam2"] > 0
