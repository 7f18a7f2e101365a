"""Evidence drawn over the video with supervision annotators, written as browser-playable H.264.

Each overlay is a small class with one ``annotate(scene, frame_evidence) -> scene`` method, style in
``__init__``, like supervision's annotators (which do the drawing). Scenes are BGR uint8 (OpenCV and
supervision's convention); ``frame_evidence`` must already be in the scene's pixel coordinates (see
:func:`scale_evidence`).

Layers: "pose" (skeletons + track ids), "graph" (entity boxes with labels + relation edges labelled
with their predicate), "masks" (masks coloured and labelled by what produced them), "banner" (threat
banner while the time lies inside a given threat segment, plus a clock).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from uprm.evidence import ENTITY_MOTION, SCENE_CHANGE_CLASS_ID, SKELETON_EDGES, FrameEvidence, VideoEvidence

OVERLAY_LAYERS = ("pose", "graph", "masks", "banner")
KP_VISIBLE = 0.3  # joints below this MoveNet score are not drawn
MASK_SOURCES = ("selfie_segmentation", "bg_subtraction", "sam2", "scene_change")

Segment3 = tuple[float, float, str]  # (start_s, end_s, label)


def scale_evidence(f: FrameEvidence, sx: float, sy: float) -> FrameEvidence:
    """A copy of f with boxes and keypoints in a frame scaled by (sx, sy)."""
    if sx == 1.0 and sy == 1.0:
        return f
    kp = f.keypoints.copy()
    kp[..., 0] *= sx
    kp[..., 1] *= sy
    return replace(f, boxes=f.boxes * np.array([sx, sy, sx, sy], np.float32), keypoints=kp)


def _detections(f: FrameEvidence, rows: np.ndarray | None = None):
    import supervision as sv

    rows = np.arange(len(f)) if rows is None else rows
    return sv.Detections(
        xyxy=np.asarray(f.boxes, np.float32)[rows].reshape(-1, 4),
        confidence=np.asarray(f.scores, np.float32)[rows],
        class_id=np.asarray(f.class_ids, int)[rows],
        tracker_id=np.asarray(f.track_ids, int)[rows],
    )


def _name(f: FrameEvidence, i: int) -> str:
    tid = int(f.track_ids[i])
    if f.class_ids[i] == SCENE_CHANGE_CLASS_ID and f.motion is not None:  # how long it has been there
        return f"{f.class_names[i]} {np.expm1(f.motion[i, ENTITY_MOTION.index('change_log_age_s')]):.0f}s"
    return f"{f.class_names[i]}#{tid}" if tid >= 0 else f.class_names[i]


class PoseOverlay:
    """Skeletons (sv.EdgeAnnotator + sv.VertexAnnotator on sv.KeyPoints) and track ids of people."""

    def __init__(self, thickness: int = 2, radius: int = 3):
        import supervision as sv

        edges = [(a + 1, b + 1) for a, b in SKELETON_EDGES]  # supervision numbers joints from 1
        self.edges = sv.EdgeAnnotator(color=sv.Color.from_hex("#00E5FF"), thickness=thickness, edges=edges)
        self.vertices = sv.VertexAnnotator(color=sv.Color.from_hex("#FF4081"), radius=radius)
        self.labels = sv.LabelAnnotator(color=sv.Color.from_hex("#00E5FF"), text_color=sv.Color.BLACK,
                                        text_scale=0.4, text_padding=3, text_position=sv.Position.BOTTOM_CENTER)

    def annotate(self, scene: np.ndarray, frame_evidence: FrameEvidence) -> np.ndarray:
        import supervision as sv

        people = np.flatnonzero(frame_evidence.is_person)
        if len(people) == 0:
            return scene
        kp = frame_evidence.keypoints[people]  # (P, 17, 3)
        points = sv.KeyPoints(xy=kp[..., :2].astype(np.float32), keypoint_confidence=kp[..., 2].astype(np.float32),
                              visible=kp[..., 2] >= KP_VISIBLE)
        scene = self.edges.annotate(scene, points)
        scene = self.vertices.annotate(scene, points)
        tracked = people[frame_evidence.track_ids[people] >= 0]
        if len(tracked):
            scene = self.labels.annotate(scene, _detections(frame_evidence, tracked),
                                         labels=[f"#{int(frame_evidence.track_ids[i])}" for i in tracked])
        return scene


class BoxOverlay:
    """Entity boxes coloured by track, labelled "class#track score" (sv.BoxAnnotator + LabelAnnotator)."""

    def __init__(self, thickness: int = 2):
        import supervision as sv

        self.boxes = sv.BoxAnnotator(thickness=thickness, color_lookup=sv.ColorLookup.CLASS)
        self.labels = sv.LabelAnnotator(text_scale=0.4, text_padding=3, color_lookup=sv.ColorLookup.CLASS)

    def annotate(self, scene: np.ndarray, frame_evidence: FrameEvidence) -> np.ndarray:
        if len(frame_evidence) == 0:
            return scene
        det = _detections(frame_evidence)
        scene = self.boxes.annotate(scene, det)
        labels = [f"{_name(frame_evidence, i)} {frame_evidence.scores[i]:.2f}" for i in range(len(frame_evidence))]
        return self.labels.annotate(scene, det, labels=labels)


class RelationOverlay:
    """Scene-graph edges as lines between entity centres labelled with the predicate; unary states
    (lying, running) as a tag above the entity. supervision has no graph annotator: this draws with
    its sv.draw_line / sv.draw_text primitives."""

    def __init__(self, min_score: float = 0.3, thickness: int = 2, text_scale: float = 0.4):
        import supervision as sv

        self.min_score = min_score
        self.thickness = thickness
        self.text_scale = text_scale
        self.line_color = sv.Color.from_hex("#FFD600")
        self.unary_color = sv.Color.from_hex("#FF1744")

    def annotate(self, scene: np.ndarray, frame_evidence: FrameEvidence) -> np.ndarray:
        import supervision as sv

        f = frame_evidence
        centres = np.stack([(f.boxes[:, 0] + f.boxes[:, 2]) / 2, (f.boxes[:, 1] + f.boxes[:, 3]) / 2], 1) \
            if len(f) else np.zeros((0, 2))
        tags: dict[int, list[str]] = {}
        for r in f.relations:
            if r.score < self.min_score:
                continue
            if r.subject == r.object:
                tags.setdefault(r.subject, []).append(r.predicate)
                continue
            a, b = centres[r.subject], centres[r.object]
            sv.draw_line(scene, sv.Point(float(a[0]), float(a[1])), sv.Point(float(b[0]), float(b[1])),
                         color=self.line_color, thickness=self.thickness)
            mid = (a + b) / 2
            sv.draw_text(scene, r.predicate, sv.Point(float(mid[0]), float(mid[1])),
                         text_color=sv.Color.BLACK, text_scale=self.text_scale, text_padding=2,
                         background_color=self.line_color)
        for i, words in tags.items():
            x = float((f.boxes[i, 0] + f.boxes[i, 2]) / 2)
            y = float(max(8.0, f.boxes[i, 1] - 14))
            sv.draw_text(scene, " ".join(sorted(set(words))), sv.Point(x, y), text_color=sv.Color.WHITE,
                         text_scale=self.text_scale, text_padding=2, background_color=self.unary_color)
        return scene


class MaskOverlay:
    """Masks upscaled to the scene, coloured by source and labelled with it (sv.MaskAnnotator)."""

    def __init__(self, opacity: float = 0.45):
        import supervision as sv

        palette = sv.ColorPalette.from_hex(["#76FF03", "#FF9100", "#D500F9", "#FF1744"])  # one colour per source
        self.masks = sv.MaskAnnotator(color=palette, opacity=opacity, color_lookup=sv.ColorLookup.CLASS)
        self.labels = sv.LabelAnnotator(color=palette, text_scale=0.35, text_padding=2,
                                        color_lookup=sv.ColorLookup.CLASS,
                                        text_position=sv.Position.CENTER_OF_MASS)

    def annotate(self, scene: np.ndarray, frame_evidence: FrameEvidence) -> np.ndarray:
        import cv2
        import supervision as sv

        f = frame_evidence
        if f.masks is None or len(f) == 0:
            return scene
        rows = [i for i in range(len(f)) if f.mask_sources[i] and f.masks[i].any()]
        if not rows:
            return scene
        h, w = scene.shape[:2]
        # upscale the low-resolution grid smoothly, then threshold: no blocky staircase edges
        masks = np.stack([cv2.resize(f.masks[i].astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) > 0.5
                          for i in rows])
        sources = [f.mask_sources[i] for i in rows]
        det = sv.Detections(
            xyxy=np.asarray(f.boxes, np.float32)[rows], mask=masks,
            class_id=np.array([MASK_SOURCES.index(s) if s in MASK_SOURCES else 0 for s in sources]),
        )
        scene = self.masks.annotate(scene, det)
        return self.labels.annotate(scene, det, labels=sources)


class ThreatBanner:
    """A red banner naming the threat while the time lies inside one of the segments; a clock always."""

    def __init__(self, segments: Iterable[Segment3] = ()):
        self.segments = [(float(s), float(e), str(label)) for s, e, label in segments]
        for s, e, _ in self.segments:
            if not 0 <= s <= e:
                raise ValueError(f"threat segment ({s}, {e}) must have 0 <= start_s <= end_s")

    def annotate(self, scene: np.ndarray, frame_evidence: FrameEvidence) -> np.ndarray:
        import supervision as sv

        t = frame_evidence.time_s
        h, w = scene.shape[:2]
        active = [seg for seg in self.segments if seg[0] <= t <= seg[1]]
        if active:
            s, e, label = active[0]
            band = max(22, h // 14)
            sv.draw_filled_rectangle(scene, sv.Rect(0, 0, w, band), color=sv.Color.from_hex("#D50000"),
                                     opacity=0.85)
            sv.draw_text(scene, f"THREAT: {label}  ({s:.1f}-{e:.1f} s)", sv.Point(w / 2, band / 2),
                         text_color=sv.Color.WHITE, text_scale=max(0.5, band / 40), text_thickness=2,
                         text_padding=0)
        sv.draw_text(scene, f"{t:6.2f} s", sv.Point(48, h - 14), text_color=sv.Color.WHITE,
                     text_scale=0.45, text_padding=3, background_color=sv.Color.BLACK)
        return scene


def build_overlays(layers: Iterable[str], segments: Sequence[Segment3] = ()) -> list:
    """Overlay objects for the layer names, in drawing order (masks under boxes under pose)."""
    layers = set(layers)
    unknown = layers - set(OVERLAY_LAYERS)
    if unknown:
        raise ValueError(f"unknown overlay layers {sorted(unknown)}; choose from {OVERLAY_LAYERS}")
    out = []
    if "masks" in layers:
        out.append(MaskOverlay())
    if "graph" in layers:
        out += [BoxOverlay(), RelationOverlay()]
    if "pose" in layers:
        out.append(PoseOverlay())
    if "banner" in layers:
        out.append(ThreatBanner(segments))
    return out


def annotate_frame(rgb: np.ndarray, f: FrameEvidence, overlays: Sequence, video_wh: tuple[int, int]) -> np.ndarray:
    """Draw every overlay of f (in original-video pixels) on an RGB frame of any size; returns RGB."""
    import cv2

    h, w = rgb.shape[:2]
    scaled = scale_evidence(f, w / video_wh[0], h / video_wh[1])
    scene = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)  # supervision draws in BGR
    for overlay in overlays:
        scene = overlay.annotate(scene, scaled)
    return cv2.cvtColor(scene, cv2.COLOR_BGR2RGB)


def render_overlay(
    video_path: str | Path,
    evidence: VideoEvidence,
    out_path: str | Path,
    layers: Iterable[str] = frozenset({"pose", "graph", "masks", "banner"}),
    segments: Sequence[Segment3] = (),
    progress: Callable[[str, float], None] | None = None,
    rate: str = "sample",
    max_side: int | None = 1280,
) -> Path:
    """Write the video with the evidence drawn on it as H.264 MP4 (uprm.video.write_h264).

    rate="sample" (default) writes only the sampled frames, at the sample rate: each output frame is
    exactly the frame the front-ends saw, so boxes and skeletons sit on the people (between samples
    a walking person moves up to a body width away from held evidence), and encoding is 5-15x
    cheaper. rate="native" writes every frame at the video's rate, each with the evidence of the
    nearest sample held. ``segments`` are (start_s, end_s, label) threat segments for the banner.
    """
    from uprm.video import iter_frames, write_h264

    if rate not in ("sample", "native"):
        raise ValueError(f"rate must be 'sample' or 'native', got {rate!r}")
    if not evidence.frames:
        raise ValueError("evidence has no frames to draw")
    overlays = build_overlays(layers, segments)
    report = progress or (lambda stage, fraction: None)
    by_index = {f.frame_index: f for f in evidence.frames}
    times = evidence.times_s
    video_wh = (evidence.video.width, evidence.video.height)
    duration = max(evidence.video.duration_s, 1e-6)

    def frames():
        drawn = 0
        for df in iter_frames(video_path, on_warning=lambda message: None):
            if rate == "sample":
                f = by_index.get(df.frame_index)
                if f is None:
                    continue
            else:
                f = evidence.frames[int(np.argmin(np.abs(times - df.time_s)))]
                f = replace(f, time_s=df.time_s)  # the banner and clock follow the shown frame
            rgb = df.rgb(max_side=max_side)
            drawn += 1
            if drawn % 10 == 0:
                report("drawing overlays", min(0.99, df.time_s / duration))
            yield annotate_frame(rgb, f, overlays, video_wh)
        if drawn == 0:
            raise ValueError(f"none of the evidence's frames are in {Path(video_path).name}: "
                             "the evidence belongs to another video")

    fps = evidence.sample_fps if rate == "sample" else evidence.video.fps
    out = write_h264(frames(), out_path, fps=fps)
    report("drawing overlays", 1.0)
    return out
