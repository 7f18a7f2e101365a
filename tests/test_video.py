"""uprm.video: probing, streaming sampled decode, bad input, and H.264 writing."""
from __future__ import annotations

import hashlib
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

from uprm.video import (
    DEFAULT_SAMPLE_FPS, NearestSampler, VideoDecodeWarning, VideoError, iter_frames, iter_sampled_frames,
    probe, write_h264,
)

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "bad_media"))
from make_bad_media import CASES, build_corpus  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return build_corpus(tmp_path_factory.mktemp("bad_media"))


def test_probe_vtest_matches_the_decoded_file(vtest_path):
    info = probe(vtest_path)
    assert (info.fps, info.frame_count, info.width, info.height, info.rotation_deg) == (10.0, 795, 768, 576, 0)
    assert info.duration_s == pytest.approx(79.5)
    assert info.content_hash == hashlib.sha256(vtest_path.read_bytes()).hexdigest()
    assert sum(1 for _ in iter_frames(vtest_path)) == 795  # decoding agrees with the packet count


def test_sampled_frames_follow_the_time_grid_and_stream(vtest_path):
    frames = iter_sampled_frames(vtest_path, sample_fps=DEFAULT_SAMPLE_FPS)
    assert isinstance(frames, types.GeneratorType)  # streamed, never a list of the whole video
    first = [next(frames) for _ in range(6)]
    assert [f.frame_index for f in first] == [0, 5, 10, 15, 20, 25]
    assert [f.time_s for f in first] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    assert first[0].rgb.shape == (576, 768, 3) and first[0].rgb.dtype == np.uint8
    rest = sum(1 for _ in frames)
    assert 6 + rest == 159  # 0, 0.5, ..., 79.0 s: every grid time inside the 79.5 s clip


def test_sampled_frames_are_rgb_and_downscale_on_request(vtest_path):
    f = next(iter_sampled_frames(vtest_path, 1.0, max_side=384))
    assert f.rgb.shape == (288, 384, 3)
    # the campus lawn fills the lower part of the frame: green must dominate there (channel order)
    lower = f.rgb[200:].reshape(-1, 3).astype(int)
    assert (lower[:, 1] > lower[:, 0]).mean() > 0.6 and (lower[:, 1] > lower[:, 2]).mean() > 0.6


class _Frame:
    def __init__(self, t: float, i: int):
        self.time_s, self.frame_index = t, i


def _sample(times: list[float], fps: float) -> list[int]:
    s = NearestSampler(fps)
    out = [f.frame_index for t_i, t in enumerate(times) for f in s.push(_Frame(t, t_i))]
    return out + [f.frame_index for f in s.finish()]


def test_nearest_sampler_picks_nearest_and_never_repeats():
    # 25 fps video sampled at 2 fps: targets 0, 0.5, 1.0 -> frames 0, 12 or 13, 25
    picked = _sample([i / 25 for i in range(50)], 2.0)
    assert picked[0] == 0 and picked[1] in (12, 13) and picked[2] == 25 and len(picked) == 4
    # sampling faster than the video: every frame at most once
    picked = _sample([i / 5 for i in range(10)], 30.0)
    assert picked == list(range(10))
    # variable frame rate with a gap: the frame nearest each target; t=2 s still falls within the
    # last frame's display interval (1.6 s + its 0.58 s duration), t=3 s does not
    assert _sample([0.0, 0.1, 0.9, 1.02, 1.6], 1.0) == [0, 3, 4]
    with pytest.raises(ValueError):
        NearestSampler(0)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_media_gets_a_clear_outcome(corpus, case):
    path = corpus[case.name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if case.error is not None:
            with pytest.raises(VideoError) as err:
                probe(path)
                list(iter_sampled_frames(path))
            message = str(err.value)
            assert case.error in message, message
            assert path.name in message  # says which file
            assert isinstance(err.value, ValueError)
            return
        info = probe(path)
        frames = list(iter_sampled_frames(path, 2.0, max_side=1280))
    assert frames, "a readable file must yield frames"
    assert info.fps > 0 and info.frame_count >= len(frames)
    decode_warnings = [w for w in caught if issubclass(w.category, VideoDecodeWarning)]
    if case.warns:
        assert decode_warnings, f"{case.name}: damage must be reported"
        assert path.name in str(decode_warnings[0].message)
    else:
        assert not [w for w in decode_warnings if "damage" in str(w.message)]


def test_missing_and_directory_paths(tmp_path):
    with pytest.raises(VideoError, match="no such file"):
        probe(tmp_path / "nope.mp4")
    with pytest.raises(VideoError, match="directory"):
        probe(tmp_path)


def test_truncated_file_yields_what_was_read(corpus):
    path = corpus["truncated_tail.mp4"]
    with pytest.warns(VideoDecodeWarning, match="truncated"):
        n = sum(1 for _ in iter_frames(path))
    assert 5 <= n < 40  # the clip had 40 frames


def test_bogus_header_counts_are_replaced_by_real_ones(corpus):
    info = probe(corpus["bogus_frame_count.avi"])  # header says 1,000,000 frames
    assert info.frame_count == 40 and info.fps == 10.0 and info.duration_s == pytest.approx(4.0)


def test_huge_video_is_downscaled_for_processing(corpus):
    info = probe(corpus["huge_8k.mp4"])
    assert (info.width, info.height) == (7680, 4320)
    f = next(iter_sampled_frames(corpus["huge_8k.mp4"], 2.0, max_side=1280))
    assert f.rgb.shape == (720, 1280, 3)
    assert (f.rgb[:60, :60, 0] > 200).all() and (f.rgb[:60, :60, 2] < 60).all()  # red corner survives


def test_rotated_phone_video_is_shown_upright(corpus):
    info = probe(corpus["rotated_phone.mp4"])
    assert (info.width, info.height, info.rotation_deg) == (120, 160, 90)
    f = next(iter_sampled_frames(corpus["rotated_phone.mp4"]))
    assert f.rgb.shape == (160, 120, 3)
    # coded top-left red marker, rotated 90 degrees counter-clockwise for display -> bottom-left
    red = (f.rgb[..., 0] > 180) & (f.rgb[..., 1] < 80)
    ys, xs = np.nonzero(red)
    assert ys.mean() > 130 and xs.mean() < 20


def test_unicode_and_spaces_in_names(corpus):
    path = corpus["name with spaces ünïcødé 映像.mp4"]
    assert probe(path).frame_count == 40
    assert len(list(iter_sampled_frames(path, 2.0))) == 8


def test_write_h264_is_browser_playable(tmp_path):
    import av

    frames = [np.full((51, 67, 3), i * 20, np.uint8) for i in range(10)]  # odd size on purpose
    out = write_h264(frames, tmp_path / "clip.mp4", fps=2.0)
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"
        assert (s.width, s.height) == (66, 50)
        assert sum(1 for _ in c.decode(s)) == 10
    head = out.read_bytes()[:4096]
    assert head.find(b"moov") != -1 and head.find(b"moov") < max(head.find(b"mdat"), 4096)  # faststart
    with pytest.raises(ValueError, match="no frames"):
        write_h264([], tmp_path / "empty.mp4", fps=2.0)
    assert not list(tmp_path.glob("*.partial*"))
