"""Composition: plan events on a clip of real footage, paste their sprites frame by frame, write the
H.264 clip and its ActivityNet ground truth.

    from uprm.compose import compose
    path, gt = compose("vtest.avi", ["fall", "normal_walk"], seed=3, out="clip.mp4", clip_s=20)

Frames stream from the decoder through the paster into the encoder, one at a time (bounded memory).
The same source, events and seed give byte-identical ground truth and identical frames.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from uprm.compose.blend import Placement, paste
from uprm.compose.errors import ComposeError
from uprm.compose.events import (
    DRAWN_HARMLESS_KINDS, MIN_LEAD_S, PERSISTENT_KINDS, PLANNERS, THREAT_KINDS, TIMING_S, Actor, ComposedEvent,
    EventSpec, Scene,
)
from uprm.compose.plate import Plate, load_or_make_plate
from uprm.compose.source import iter_frames, probe
from uprm.compose.sprites import SpriteBank, load_or_harvest
from uprm.evidence import VideoInfo

GT_VERSION = "UPRM Studio composed ground truth v3"


@dataclass
class Footage:
    """A source video made ready for composing: metadata, clean plate and sprite bank (reusable)."""

    video: VideoInfo
    plate: Plate
    bank: SpriteBank


def prepare(source: str | Path, *, sprite_window_s: tuple[float, float] | None = None, use_cache: bool = True,
            progress: Callable[[float], None] | None = None) -> Footage:
    """Probe, plate and harvest a static-camera video (sprites from ``sprite_window_s``, default all).

    Harvesting is cached on disk by content hash, so the second call on the same footage is fast.
    """
    video = probe(source)
    plate = load_or_make_plate(video, use_cache)
    start, stop = 0, None
    if sprite_window_s is not None:
        start, stop = (int(round(t * video.fps)) for t in sprite_window_s)
        if not 0 <= start < stop:
            raise ComposeError(f"sprite window {sprite_window_s} s must satisfy 0 <= start < stop")
    bank = load_or_harvest(video, plate, start, stop, use_cache=use_cache, progress=progress)
    return Footage(video, plate, bank)


@dataclass
class ComposedVideo:
    """A written clip and its ground truth; unpacks as ``path, gt``."""

    path: Path
    gt: dict  # ActivityNet ground truth {"database": {video_id: {...}}}
    gt_path: Path | None
    video_id: str
    fps: float
    duration_s: float
    events: list[ComposedEvent] = field(default_factory=list)  # threats and harmless ones
    actors: list[Actor] = field(default_factory=list)  # where every pasted sprite is, frame by frame
    frames_per_s: float = 0.0  # composition speed (decode + paste + encode)

    def __iter__(self) -> Iterator:
        return iter((self.path, self.gt))


# ---------------------------------------------------------------------------------------------------
# planning


def _feasible_threats(scene: Scene) -> list[str]:
    clip_s = scene.n_frames / scene.fps
    kinds = [k for k in THREAT_KINDS if clip_s >= MIN_LEAD_S + TIMING_S[k][2] + 0.5]
    return [k for k in kinds if k != "left_object" or scene.bank.items]


def _draw_specs(scene: Scene, n_threats: int, n_harmless: int) -> list[EventSpec]:
    """Random event kinds: at most one threat that lasts to the clip's end, items only if there are any."""
    specs: list[EventSpec] = []
    for _ in range(n_threats):
        kinds = [k for k in _feasible_threats(scene)
                 if not (k in PERSISTENT_KINDS and any(s.kind in PERSISTENT_KINDS for s in specs))]
        if kinds:
            specs.append(EventSpec(str(scene.rng.choice(kinds))))
    harmless = [k for k in DRAWN_HARMLESS_KINDS if k != "carry_walk" or scene.bank.items]
    specs += [EventSpec(str(scene.rng.choice(harmless))) for _ in range(n_harmless)]
    return specs


def _windows(scene: Scene, specs: list[EventSpec], strict: bool) -> list[tuple[int, int]]:
    """Consecutive, disjoint frame windows, one per threat, each holding its lead-in and its segment,
    with random slack between them (so onsets are not always at the earliest possible moment).

    Windows are sized for typical lengths when the clip allows, else for the shortest acceptable.
    Persistent threats (to the clip's end) go last; threats with a given start_s get the whole clip.
    """
    for sizing in ("typical", "shortest"):
        need = []
        for spec in specs:
            (_, lead_hi), (dmin, _), shortest = TIMING_S[spec.kind]
            if spec.kind in PERSISTENT_KINDS:
                shortest = dmin  # a persistent threat always gets its dmin tail (events._threat_length)
            need.append(scene.frames(lead_hi) + scene.frames(dmin) if sizing == "typical"
                        else scene.frames(MIN_LEAD_S) + scene.frames(shortest))
        slack = scene.n_frames - sum(need)
        if slack >= 0:
            break
    else:
        if strict:
            raise ComposeError(
                f"the {scene.n_frames / scene.fps:.1f} s clip is too short for {', '.join(s.kind for s in specs)} "
                f"one after another (they need {sum(need) / scene.fps:.1f} s); use a longer clip or fewer events"
            )
        return []
    extra = scene.rng.dirichlet(np.ones(len(specs) + 1)) * slack
    windows, lo = [], 0
    for i in range(len(specs)):
        hi = lo + need[i] + int(extra[i])
        windows.append((lo, hi))
        lo = hi
    return windows


def plan(scene: Scene, events: Sequence[EventSpec | dict | str] | int, n_harmless: int | None = None
         ) -> tuple[list[Actor], list[ComposedEvent]]:
    """Actors and events of one clip. ``events``: specs, or a number of random threats."""
    if isinstance(events, (int, np.integer)) and not isinstance(events, bool):
        if not 0 <= events <= 3:
            raise ComposeError(f"number of threat events must be 0..3, got {events}")
        harmless = int(scene.rng.integers(0, 3)) if n_harmless is None else n_harmless
        specs, strict = _draw_specs(scene, int(events), harmless), False
    else:
        specs, strict = [EventSpec.parse(e) for e in events], True
        if sum(s.kind in PERSISTENT_KINDS and s.start_s is None for s in specs) > 1:
            raise ComposeError("at most one fall or left_object without start_s per clip (both last to the end)")
    timed = [s for s in specs if s.threat and s.start_s is not None]
    free = sorted((s for s in specs if s.threat and s.start_s is None), key=lambda s: s.kind in PERSISTENT_KINDS)
    windows = _windows(scene, free, strict) if free else []
    if not strict:
        free = free[:len(windows)]  # a clip too short for all drawn threats together gets none (it stays threat-free)
    ordered = [(s, (0, scene.n_frames)) for s in timed] + list(zip(free, windows))
    ordered += [(s, (0, scene.n_frames)) for s in specs if not s.threat]
    actors: list[Actor] = []
    composed: list[ComposedEvent] = []
    for i, (spec, window) in enumerate(ordered):
        new_actors, event = PLANNERS[spec.kind](scene, spec, window, f"e{i + 1}")
        new_actors = [c for c in (a.clip(scene.n_frames) for a in new_actors) if c is not None]
        scene.placed.extend(new_actors)
        actors.extend(new_actors)
        composed.append(event)
    return actors, composed


# ---------------------------------------------------------------------------------------------------
# rendering


def _placements(footage: Footage, actors: list[Actor], k: int) -> list[Placement]:
    persp = footage.bank.perspective
    active = []
    for actor in actors:
        if actor.first_frame <= k < actor.end_frame:
            i = k - actor.first_frame
            x, y = actor.foot_xy[i]
            h = float(persp.height_px(y))
            # light and tint of the ground where the sprite now stands (static plate, not the live frame)
            ground = footage.plate.ground_lab((x - 0.25 * h, y - h, x + 0.25 * h, y + 2))
            active.append((y + actor.z_bias, Placement(
                actor.sprites[i], (float(x), float(y)), float(actor.scale[i]), float(actor.angle_deg[i]),
                bool(actor.mirror[i]), float(actor.opacity[i]), bool(actor.shadow[i]), ground)))
    active.sort(key=lambda t: t[0])  # far (small y) first, near last: nearer figures cover farther ones
    return [p for _, p in active]


def render(footage: Footage, actors: list[Actor], start_frame: int, n_frames: int,
           label_events: list[ComposedEvent] | None = None) -> Iterator[np.ndarray]:
    """Composited RGB frames of the clip, streamed. ``label_events``: write "SYNTHETIC EVENT" (demo only)."""
    for k, (_, rgb) in enumerate(iter_frames(footage.video.path, start_frame, start_frame + n_frames)):
        frame = rgb.copy()
        for placement in _placements(footage, actors, k):
            paste(frame, placement, partial(_nearer_people, frame, footage, placement))
        if label_events is not None:
            _label(frame, label_events, k / footage.video.fps)
        yield frame


def _nearer_people(frame: np.ndarray, footage: Footage, p: Placement, box: tuple[int, int, int, int]) -> np.ndarray:
    """Soft (h, w) mask of real people in ``box`` who stand nearer the camera than the sprite's feet.

    Whatever differs from the clean plate is someone (or their shadow); a blob whose lowest pixel is
    below the sprite's feet, or runs out of the box's bottom, stands in front and keeps its pixels.
    """
    import cv2

    from uprm.compose.plate import foreground

    x1, y1, x2, y2 = box
    h = float(footage.bank.perspective.height_px(p.foot_xy[1]))
    y3 = min(frame.shape[0], int(y2 + 0.5 * h))  # look below the box: a nearer person's feet are lower
    fg = foreground(frame[y1:y3, x1:x2], footage.plate, window=(x1, y1, x2, y3)) > 0.5
    fg = cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg)
    bottoms = stats[:, cv2.CC_STAT_TOP] + stats[:, cv2.CC_STAT_HEIGHT] + y1  # frame y of each blob's lowest row
    near = (bottoms > p.foot_xy[1] + 0.04 * h) & (stats[:, cv2.CC_STAT_AREA] >= 0.02 * h * h)
    near[0] = False  # label 0 is the background
    mask = near[labels[: y2 - y1]].astype(np.float32)
    return cv2.GaussianBlur(mask, (0, 0), sigmaX=0.8) if mask.any() else mask


def _label(frame: np.ndarray, events: list[ComposedEvent], t_s: float) -> None:
    """Demo clips only: a corner banner saying the events are synthetic, naming the one under way."""
    import supervision as sv

    now = [e.kind for e in events if e.threat and e.start_s <= t_s < e.end_s]
    text = "SYNTHETIC EVENT: " + ", ".join(now) if now else "SYNTHETIC EVENTS (composited)"
    # supervision draws on BGR images and our frames are RGB: colours are given channel-swapped
    sv.draw_text(frame, text, sv.Point(12 + 7 * len(text) // 2, 18), text_color=sv.Color(255, 255, 255),
                 text_scale=0.5, text_thickness=1, text_padding=6,
                 background_color=sv.Color(30, 30, 200) if now else sv.Color(60, 60, 60))


# ---------------------------------------------------------------------------------------------------
# the entry point


def ground_truth(video_id: str, duration_s: float, fps: float, events: list[ComposedEvent], footage: Footage,
                 source_start_s: float, seed: int) -> dict:
    """ActivityNet ground truth of one clip; harmless events are recorded beside it, never as segments."""
    return {"version": GT_VERSION, "database": {video_id: {
        "subset": "validation",
        "duration": round(duration_s, 3),
        "fps": fps,
        "annotations": [e.annotation() for e in events if e.threat],
        "composition": {
            "source": Path(footage.video.path).name,
            "source_sha256": footage.video.content_hash,
            "source_start_s": round(source_start_s, 3),
            "seed": seed,
            "harmless": [e.to_dict() for e in events if not e.threat],
        },
    }}}


def write_gt(gt: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(gt, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _plan_clip(footage: Footage, events, seed: int, start_s: float, clip_s: float | None, n_harmless: int | None
               ) -> tuple[int, int, list[Actor], list[ComposedEvent]]:
    """(first frame, frame count, actors, events) of a clip: everything but the pixels."""
    video = footage.video
    first = int(round(start_s * video.fps))
    n = video.frame_count - first if clip_s is None else int(round(clip_s * video.fps))
    if not 0 <= first < video.frame_count or n < 2 or first + n > video.frame_count:
        raise ComposeError(
            f"clip [{start_s:g} s, {start_s + n / video.fps:g} s) is not inside {Path(video.path).name} "
            f"(0 to {video.duration_s:g} s); choose start_s and clip_s within it"
        )
    scene = Scene(footage.bank, video.fps, n, video.width, video.height, np.random.default_rng(seed),
                  (first, first + n))
    actors, composed = plan(scene, events, n_harmless)
    return first, n, actors, composed


def compose(source: str | Path | Footage, events: Sequence[EventSpec | dict | str] | int = 1, seed: int = 0,
            out: str | Path = "composed.mp4", *, start_s: float = 0.0, clip_s: float | None = None,
            n_harmless: int | None = None, video_id: str | None = None, gt_path: str | Path | None = None,
            label: bool = False) -> ComposedVideo:
    """Compose events onto [start_s, start_s + clip_s) of a static-camera video.

    ``events`` is a list of event specs (``EventSpec``, dicts with its fields, or kind names) or a
    number of random threat events (then ``n_harmless`` harmless ones, 0-2 by the seed if None).
    Writes ``out`` (H.264) and the ground truth JSON beside it (``gt_path``, default ``out`` with
    .json; pass False-y "" to skip). ``label`` burns a "SYNTHETIC EVENT" banner in: demo clips only.
    """
    import time

    from uprm.video import write_h264

    footage = source if isinstance(source, Footage) else prepare(source)
    video = footage.video
    out = Path(out)
    video_id = video_id or out.stem
    first, n, actors, composed = _plan_clip(footage, events, seed, start_s, clip_s, n_harmless)
    gt = ground_truth(video_id, n / video.fps, video.fps, composed, footage, start_s, seed)

    t0 = time.perf_counter()
    write_h264(render(footage, actors, first, n, composed if label else None), out, video.fps)
    speed = n / (time.perf_counter() - t0)
    written_gt = None
    if gt_path is None or gt_path:
        written_gt = write_gt(gt, out.with_suffix(".json") if gt_path is None else gt_path)
    return ComposedVideo(out, gt, written_gt, video_id, video.fps, n / video.fps, composed, actors, speed)
