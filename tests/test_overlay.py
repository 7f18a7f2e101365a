"""uprm.overlay: each annotator draws what the evidence says and nothing else; H.264 renders."""
from __future__ import annotations

import numpy as np
import pytest

from uprm.evidence import NUM_JOINTS, FrameEvidence, Relation, VideoEvidence, VideoInfo
from uprm.overlay import (
    BoxOverlay, MaskOverlay, PoseOverlay, RelationOverlay, ThreatBanner, annotate_frame, build_overlays,
    render_overlay,
)
from uprm.video import write_h264

W, H = 320, 240


def frame(t: float = 0.0, index: int = 0, with_masks: bool = True) -> FrameEvidence:
    """A person (track 3) left, a handbag right, joints on the person, a relation between them."""
    kp = np.zeros((2, NUM_JOINTS, 3), np.float32)
    xs = np.linspace(60, 100, NUM_JOINTS)
    ys = np.linspace(50, 190, NUM_JOINTS)
    kp[0, :, 0], kp[0, :, 1], kp[0, :, 2] = xs, ys, 0.9
    kp[0, 16, 2] = 0.1  # right ankle unsure: not drawn
    masks = np.zeros((2, 60, 80), bool)
    masks[0, 15:45, 15:25] = True  # the person's silhouette on the 80x60 grid
    return FrameEvidence(
        time_s=t, frame_index=index, boxes=np.array([[50, 40, 110, 200], [220, 120, 280, 170]], np.float32),
        class_ids=np.array([1, 31]), class_names=["person", "handbag"], scores=np.array([0.9, 0.6], np.float32),
        track_ids=np.array([3, -1]), keypoints=kp,
        relations=[Relation(0, "near", 1, 0.8, "close"), Relation(0, "running", 0, 0.7, "fast"),
                   Relation(0, "touching", 1, 0.1, "weak: below the drawing threshold")],
        masks=masks if with_masks else None, mask_sources=["selfie_segmentation", ""] if with_masks else [],
    )


def blank() -> np.ndarray:
    return np.zeros((H, W, 3), np.uint8)


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a != b).any(axis=-1)


def test_pose_draws_trusted_joints_only():
    scene = PoseOverlay().annotate(blank(), frame())
    f = frame()
    x, y = f.keypoints[0, 0, :2].astype(int)  # nose
    assert scene[y, x].any()
    ax, ay = f.keypoints[0, 16, :2].astype(int)  # unsure ankle: no vertex drawn there
    assert not scene[ay - 1: ay + 2, ax + 2: ax + 5].any()
    assert not changed(PoseOverlay().annotate(blank(), FrameEvidence.empty(0, 0)), blank()).any()


def test_boxes_and_relation_edges():
    f = frame()
    scene = BoxOverlay().annotate(blank(), f)
    assert scene[120, 50].any() and scene[120, 110].any() and not scene[120, 80].any()  # outline only
    scene = RelationOverlay().annotate(blank(), f)
    a, b = np.array([80, 120]), np.array([250, 145])
    quarter = (a + (b - a) * 0.2).astype(int)  # on the line, away from the midpoint label
    assert scene[quarter[1], quarter[0]].any()
    assert scene[25:35, 60:100].any()  # "running" tag above the person's box
    weak_only = frame()
    weak_only.relations = [weak_only.relations[2]]
    assert not RelationOverlay().annotate(blank(), weak_only).any()


def test_masks_follow_the_silhouette_not_the_box():
    f = frame()
    before = np.full((H, W, 3), 90, np.uint8)
    scene = MaskOverlay().annotate(before.copy(), f)
    diff = changed(scene, before)
    assert diff[70:170, 66:94].mean() > 0.9  # the grid cells 15:45 x 15:25, scaled x4
    assert not diff[180:200, 50:60].any()  # inside the box but outside the mask
    assert not diff[125:165, 225:275].any()  # the handbag has no mask
    assert not changed(MaskOverlay().annotate(before.copy(), frame(with_masks=False)), before).any()


def test_banner_only_inside_a_threat_segment():
    banner = ThreatBanner([(1.0, 2.0, "fighting")])
    inside = annotate_frame(blank(), frame(t=1.5), [banner], (W, H))  # RGB out
    outside = annotate_frame(blank(), frame(t=2.5), [banner], (W, H))
    assert inside[:10].mean(axis=(0, 1))[0] > 150 and inside[:10].mean(axis=(0, 1))[2] < 60  # red band
    assert not outside[:20].any()
    assert outside[H - 25:].any()  # the clock is always there
    with pytest.raises(ValueError):
        ThreatBanner([(3.0, 1.0, "bad")])


def test_annotate_frame_scales_evidence_to_the_frame():
    small = annotate_frame(np.zeros((H // 2, W // 2, 3), np.uint8), frame(), [BoxOverlay()], (W, H))
    assert small.shape == (H // 2, W // 2, 3)
    assert small[60, 25].any() and not small[60, 40].any()  # box edge at x=50/2, inside clear


def test_unknown_layers_are_refused():
    with pytest.raises(ValueError, match="unknown overlay layers"):
        build_overlays({"pose", "heatmap"})


def _clip_and_evidence(tmp_path):
    frames = [np.full((H, W, 3), 40 + 5 * i, np.uint8) for i in range(30)]  # 3 s at 10 fps
    video = write_h264(frames, tmp_path / "clip.mp4", fps=10)
    info = VideoInfo(str(video), "0" * 64, 10.0, 30, 3.0, W, H, 0)
    ev = VideoEvidence(info, 2.0, [frame(t=k * 0.5, index=5 * k) for k in range(6)], mask_size=(80, 60))
    return video, ev


def test_render_at_the_sample_rate_is_h264(tmp_path):
    import av

    video, ev = _clip_and_evidence(tmp_path)
    seen = []
    out = render_overlay(video, ev, tmp_path / "overlay.mp4", segments=[(1.0, 2.0, "fight")],
                         progress=lambda stage, fraction: seen.append(fraction))
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"
        assert float(s.average_rate) == pytest.approx(2.0)
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
    assert len(decoded) == 6 and seen[-1] == 1.0
    red = lambda img: img[:8].mean(axis=(0, 1)) @ np.array([1.0, -0.5, -0.5])  # noqa: E731 R over G, B
    assert red(decoded[2]) > 100  # t = 1.0 s: inside the segment, red banner
    assert abs(red(decoded[5])) < 10  # t = 2.5 s: plain grey frame, no banner


def test_render_at_the_native_rate_holds_the_nearest_sample(tmp_path):
    import av

    video, ev = _clip_and_evidence(tmp_path)
    out = render_overlay(video, ev, tmp_path / "native.mp4", layers={"graph"}, rate="native")
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 30
    with pytest.raises(ValueError, match="rate"):
        render_overlay(video, ev, tmp_path / "x.mp4", rate="fast")


def test_evidence_of_another_video_is_refused(tmp_path):
    video, ev = _clip_and_evidence(tmp_path)
    ev.frames = [frame(t=100.0, index=1000)]
    with pytest.raises(ValueError, match="another video"):
        render_overlay(video, ev, tmp_path / "wrong.mp4")
    assert not (tmp_path / "wrong.mp4").exists()
