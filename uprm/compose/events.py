"""Event scripts: who does what, where and when in a composed clip, with each event's exact ground truth.

Every event is played by sprites from the bank (real people's walk cycles, real items) placed frame
by frame. Threat events and harmless ones are built from the same parts (the same walks, fades,
shadows and carried items), so the act of pasting never tells a threat from a harmless passer-by:
only what the pasted people do does.

All times inside are output frame indices; the ground truth is in seconds (frame / fps).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from uprm.compose.errors import ComposeError
from uprm.compose.sprites import Sprite, SpriteBank, SpriteTrack
from uprm.instructions import attribute_answer, format_time_s

THREAT_KINDS = ("fall", "struggle", "crowd_run", "loiter", "left_object")
# Kinds a random plan draws from. "chat" (people standing together: a struggle's and a loiterer's
# look-alike, a hard negative) is composed when asked for (an EventSpec, `compose clip --events chat`,
# bootstrap.compose_set(events=...)): drawing it too would re-plan every clip composed so far.
DRAWN_HARMLESS_KINDS = ("normal_walk", "pass_by", "pause_walk", "carry_walk")
HARMLESS_KINDS = DRAWN_HARMLESS_KINDS + ("chat",)
EVENT_KINDS = THREAT_KINDS + HARMLESS_KINDS
PERSISTENT_KINDS = ("fall", "left_object")  # the threat lasts until the clip ends

# Seconds: (lead-in before the onset, (min, max) length of the threat, shortest acceptable length).
# A persistent threat's length is "until the clip ends"; its range is the shortest tail it needs.
TIMING_S = {
    "fall": ((1.5, 3.0), (3.5, 3.5), 3.0),
    "struggle": ((1.5, 2.5), (3.0, 6.0), 2.5),
    "crowd_run": ((1.5, 2.5), (3.0, 5.0), 2.5),
    "loiter": ((1.5, 2.0), (10.0, 20.0), 8.0),
    "left_object": ((1.5, 3.0), (4.0, 4.0), 3.0),
}
HARMLESS_S = {"normal_walk": (3.0, 8.0), "pass_by": (4.0, 7.0), "pause_walk": (4.5, 8.0), "carry_walk": (3.0, 7.0),
              "chat": (7.0, 14.0)}
MIN_LEAD_S = 1.0
FADE_S = 0.2  # sprites fade in and out (all events alike) rather than pop
FALL_S = 0.5  # a fall: rotation to the ground about the feet
DROP_S = 0.5  # an item lowered from the hand to the ground
RUN_GAIT = 2.5  # running: the walk cycle played 2.5x faster...
# ...covering the ground at a runner's speed, in body heights per second (people here walk at 0.5-0.9;
# a run is 2-3 times that). Scaling each sprite's own walk instead made the slow walkers the bank
# prefers (long tracks) jog no faster than a brisk real walker.
RUN_SPEED_HPS = (1.4, 2.0)


@dataclass(frozen=True)
class EventSpec:
    """What to compose: an event kind and optionally when its key moment is and how long it lasts.

    ``start_s`` is the onset (the fall, the meeting, the start of the run, the arrival in the zone,
    the drop) and becomes the ground-truth start for threats; None lets the seed choose.
    """

    kind: str
    start_s: float | None = None
    duration_s: float | None = None  # threat length (ignored for persistent kinds) or harmless length
    n_people: int | None = None  # crowd_run only

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ComposeError(f"unknown event kind {self.kind!r}; choose from {', '.join(EVENT_KINDS)}")
        for name in ("start_s", "duration_s"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
                raise ComposeError(f"event {self.kind}: {name} must be a number of seconds >= 0, got {value!r}")
        if self.n_people is not None and not (self.kind == "crowd_run" and 2 <= self.n_people <= 8):
            raise ComposeError(f"event {self.kind}: n_people is for crowd_run only, between 2 and 8")

    @property
    def threat(self) -> bool:
        return self.kind in THREAT_KINDS

    @classmethod
    def parse(cls, value: EventSpec | dict | str) -> EventSpec:
        """From an EventSpec, a dict with the same fields, or a kind name."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, dict):
            unknown = set(value) - {"kind", "start_s", "duration_s", "n_people"}
            if unknown or "kind" not in value:
                raise ComposeError(f"event spec {value!r}: needs 'kind', may have start_s, duration_s, n_people")
            return cls(**value)
        raise ComposeError(f"event spec must be a kind name, a dict or an EventSpec, got {value!r}")


@dataclass
class Actor:
    """One pasted sprite over the output frames [first_frame, first_frame + n): per-frame arrays."""

    name: str
    kind: str  # "person" or "item"
    first_frame: int
    sprites: list[Sprite]
    foot_xy: np.ndarray  # (n, 2) frame px
    scale: np.ndarray  # (n,)
    angle_deg: np.ndarray  # (n,)
    mirror: np.ndarray  # (n,) bool
    opacity: np.ndarray  # (n,)
    shadow: np.ndarray  # (n,) bool
    z_bias: float = 0.0  # added to foot y for drawing order (a carried item is drawn over its carrier)
    source: str = ""

    def __post_init__(self) -> None:
        n = len(self.sprites)
        bad = {k: len(getattr(self, k)) for k in ("foot_xy", "scale", "angle_deg", "mirror", "opacity", "shadow")
               if len(getattr(self, k)) != n}
        if bad:
            raise ValueError(f"actor {self.name}: per-frame arrays must all have length {n}; got {bad}")

    @property
    def end_frame(self) -> int:
        return self.first_frame + len(self.sprites)

    def clip(self, n_frames: int) -> Actor | None:
        """The part of the actor inside [0, n_frames), or None when nothing is left."""
        lo, hi = max(0, -self.first_frame), min(len(self.sprites), n_frames - self.first_frame)
        if hi <= lo:
            return None
        return Actor(self.name, self.kind, self.first_frame + lo, self.sprites[lo:hi], self.foot_xy[lo:hi],
                     self.scale[lo:hi], self.angle_deg[lo:hi], self.mirror[lo:hi], self.opacity[lo:hi],
                     self.shadow[lo:hi], self.z_bias, self.source)


@dataclass(frozen=True)
class ComposedEvent:
    """One composed event.

    For a threat, (start_s, end_s) is its ground-truth segment. A harmless event has no segment in
    the ground truth; its (start_s, end_s) is when its sprites are on screen, kept for the manifest.
    """

    kind: str
    threat: bool
    start_s: float
    end_s: float
    cause: str  # "The threat is attributed to ..." for threats; a plain description otherwise
    actors: tuple[dict, ...]

    @property
    def label(self) -> str:
        return self.kind

    def annotation(self) -> dict:
        """The ActivityNet ground-truth entry ('segment' and 'label' standard, the rest extra)."""
        return {"segment": [self.start_s, self.end_s], "label": self.label, "cause": self.cause,
                "actors": [dict(a) for a in self.actors]}

    def to_dict(self) -> dict:
        return {"kind": self.kind, "threat": self.threat, "start_s": self.start_s, "end_s": self.end_s,
                "cause": self.cause, "actors": [dict(a) for a in self.actors]}


# ---------------------------------------------------------------------------------------------------
# the stage: footage geometry, randomness and what is already placed


@dataclass
class Scene:
    """What event scripts need to know about the clip they are placed in."""

    bank: SpriteBank
    fps: float
    n_frames: int
    width: int
    height: int
    rng: np.random.Generator
    clip_source_frames: tuple[int, int]  # source frames the clip shows: tracks from elsewhere are preferred
    placed: list[Actor] = field(default_factory=list)
    used_tracks: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        import cv2

        # where people walk: a disk around every real foot position, radius 40% of a person's height there
        self.ground = np.zeros((self.height, self.width), np.uint8)
        for x, y in self.bank.foot_points:
            r = int(0.4 * float(self.bank.perspective.height_px(y)))
            cv2.circle(self.ground, (int(x), int(y)), max(2, r), 1, -1)
        self.ground = self.ground.astype(bool)
        ok = ((self.bank.foot_points[:, 0] > 0.05 * self.width) & (self.bank.foot_points[:, 0] < 0.95 * self.width)
              & (self.bank.foot_points[:, 1] < self.height - 2))
        self.spawn_points = self.bank.foot_points[ok] if ok.any() else self.bank.foot_points

    def frames(self, seconds: float) -> int:
        return int(round(seconds * self.fps))

    def seconds(self, frame: int) -> float:
        return round(frame / self.fps, 3)

    def height_px(self, y: float) -> float:
        return float(self.bank.perspective.height_px(y))

    def uniform(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi)) if hi > lo else float(lo)

    def ground_point(self) -> np.ndarray:
        x, y = self.spawn_points[int(self.rng.integers(len(self.spawn_points)))]
        h = self.height_px(y)
        return np.array([x, y]) + self.rng.normal(0, 0.15 * h, 2) * (1.0, 0.3)

    def pick_track(self, min_s: float, horizontal: bool = False) -> SpriteTrack:
        """A track long enough for ``min_s`` of walking, preferring ones not shown in the clip or used."""
        tracks = self.bank.tracks
        lo, hi = self.clip_source_frames

        def score(t: SpriteTrack) -> float:
            shown = lo <= t.sprites[0].source_frame < hi or lo <= t.sprites[-1].source_frame < hi
            dx, dy = t.step_px
            return (2.0 * (t.duration_s >= min_s) - 1.0 * shown - 1.5 * (t.track_id in self.used_tracks)
                    + (0.7 * (abs(dx) > abs(dy)) if horizontal else 0.0) + 0.01 * min(t.duration_s, 10))

        scores = np.array([score(t) for t in tracks])
        best = np.flatnonzero(scores >= scores.max() - 0.5)  # near-best ones, chosen at random
        track = tracks[int(self.rng.choice(best))]
        self.used_tracks.add(track.track_id)
        return track

    def zone(self, xy: np.ndarray) -> str:
        col = ("left", "centre", "right")[min(2, int(3 * xy[0] / self.width))]
        row = ("upper", "middle", "lower")[min(2, max(0, int(3 * xy[1] / self.height)))]
        return "centre" if (row, col) == ("middle", "centre") else f"{row} {col}"

    # --- checks used when searching for a place -------------------------------------------------

    def on_ground(self, actors: list[Actor]) -> float:
        """Fraction of person foot positions (inside the clip) that are on walked ground in the view."""
        feet = np.concatenate([a.foot_xy[max(0, -a.first_frame):max(0, self.n_frames - a.first_frame)]
                               for a in actors if a.kind == "person"] or [np.zeros((0, 2))])
        if not len(feet):
            return 0.0
        x, y = feet[:, 0].round().astype(int), feet[:, 1].round().astype(int)
        inside = (x >= 0) & (x < self.width) & (y >= 0) & (y < self.height)
        ok = np.zeros(len(feet), bool)
        ok[inside] = self.ground[y[inside], x[inside]]
        return float(ok.mean())

    def conflicts(self, actors: list[Actor]) -> int:
        """Frames in which a new person stands within 0.6 body heights of an already placed one."""
        count = 0
        for a in actors:
            for b in self.placed:
                lo, hi = max(a.first_frame, b.first_frame), min(a.end_frame, b.end_frame)
                if hi <= lo:
                    continue
                pa = a.foot_xy[lo - a.first_frame:hi - a.first_frame]
                pb = b.foot_xy[lo - b.first_frame:hi - b.first_frame]
                limit = 0.6 * self.bank.perspective.height_px(pa[:, 1])
                count += int((np.linalg.norm(pa - pb, axis=1) < limit).sum())
        return count

    def search(self, build: Callable[[np.ndarray], list[Actor]], tries: int = 30) -> list[Actor]:
        """Try random ground points until ``build(point)`` stays on the ground and clear of others."""
        best, best_score = None, -np.inf
        for _ in range(tries):
            actors = build(self.ground_point())
            ground, clash = self.on_ground(actors), self.conflicts(actors)
            if ground >= 0.9 and clash == 0:
                return actors
            score = ground - 0.01 * clash
            if score > best_score:
                best, best_score = actors, score
        return best


# ---------------------------------------------------------------------------------------------------
# motion primitives


def _velocity(track: SpriteTrack) -> np.ndarray:
    """Per-sample foot velocity (n, 2) in source px, smoothed over ~1 s (the foot point bobs with gait)."""
    path = track.foot_path
    k = max(1, min(len(path), int(round(track.sample_fps))))
    padded = np.pad(path, ((k // 2, k - 1 - k // 2), (0, 0)), mode="edge")
    kernel = np.ones(k) / k
    smooth = np.stack([np.convolve(padded[:, i], kernel, mode="valid") for i in range(2)], 1)  # (n, 2)
    return np.gradient(smooth, axis=0) if len(smooth) > 1 else np.zeros_like(smooth)


def _walking_speed_hps(track: SpriteTrack, persp) -> float:
    """The real person's mean walking speed in body heights per second (their own height at each step)."""
    speed_px = np.linalg.norm(_velocity(track), axis=1) * track.sample_fps  # px per second
    return float(np.mean(speed_px / persp.height_px(track.foot_path[:, 1])))


def facing(track: SpriteTrack) -> float:
    """+1 when the real person walks towards +x, -1 towards -x."""
    return 1.0 if track.step_px[0] >= 0 else -1.0


@dataclass
class Path:
    """A person's per-frame sprites, feet, mirror flags and angles, built up piece by piece."""

    sprites: list[Sprite] = field(default_factory=list)
    feet: list[np.ndarray] = field(default_factory=list)
    mirror: list[bool] = field(default_factory=list)
    angle: list[float] = field(default_factory=list)

    @property
    def end(self) -> np.ndarray:
        return self.feet[-1]

    def __len__(self) -> int:
        return len(self.sprites)

    def walk(self, scene: Scene, track: SpriteTrack, start: np.ndarray, n: int, *, mirror: bool,
             reverse: bool = False, gait: float = 1.0, travel: float = 1.0, direction: np.ndarray | None = None,
             phase: float = 0.0) -> float:
        """Replay ``track``'s walk cycle for n frames from ``start``; returns the gait phase reached.

        The real foot motion is replayed scaled for perspective at the current spot; ``mirror`` flips
        sprite and motion in x, ``reverse`` walks the motion the other way with the sprite turned
        round, ``direction`` keeps the speed but imposes a heading (a run; the sprite is as ``mirror``).
        """
        vel = _velocity(track)
        rate = track.sample_fps / scene.fps * gait  # track samples per output frame
        pos = np.array(start, np.float64)
        persp = scene.bank.perspective
        for k in range(n):
            j = int(phase + k * rate) % len(track.sprites)
            sprite = track.sprites[j]
            self.sprites.append(sprite)
            self.feet.append(pos.copy())
            self.mirror.append(bool(mirror) != bool(reverse))  # walking back: the figure faces the other way
            self.angle.append(0.0)
            step = vel[j] * rate * travel * persp.scale(sprite.source_foot_xy[1], pos[1])
            if direction is not None:
                step = direction * np.linalg.norm(step)
            else:
                step = step * (-1.0 if mirror else 1.0, 1.0) * (-1.0 if reverse else 1.0)
            pos = pos + step
        return phase + n * rate

    def hold(self, n: int, fps: float, sway_deg: float = 0.0, rng: np.random.Generator | None = None) -> None:
        """Stand still n frames on the last sprite (a slight sway, so a pause is not a frozen statue)."""
        phi = float(rng.uniform(0, 2 * np.pi)) if rng is not None else 0.0
        angle = self.angle[-1]
        for k in range(n):
            self.sprites.append(self.sprites[-1])
            self.feet.append(self.feet[-1].copy())
            self.mirror.append(self.mirror[-1])
            self.angle.append(angle + sway_deg * float(np.sin(phi + 2 * np.pi * 0.4 * k / fps)))


def _fade(n: int, fade: int, fade_in: bool = True, fade_out: bool = True) -> np.ndarray:
    ramp = np.ones(n)
    k = np.arange(n)
    if fade_in:
        ramp = np.minimum(ramp, (k + 1) / (fade + 1))
    if fade_out:
        ramp = np.minimum(ramp, (n - k) / (fade + 1))
    return ramp


def person_actor(scene: Scene, name: str, first_frame: int, path: Path, *, fade_in: bool = True,
                 fade_out: bool = True, source: str = "") -> Actor:
    feet = np.array(path.feet, np.float64).reshape(-1, 2)
    persp = scene.bank.perspective
    scale = np.array([persp.scale(s.source_foot_xy[1], f[1]) for s, f in zip(path.sprites, feet)])
    n = len(path)
    # people on screen when the clip starts or still there when it ends were simply already there
    fade_in, fade_out = fade_in and first_frame > 0, fade_out and first_frame + n < scene.n_frames
    return Actor(name, "person", first_frame, list(path.sprites), feet, scale, np.array(path.angle, np.float64),
                 np.array(path.mirror, bool), _fade(n, scene.frames(FADE_S), fade_in, fade_out),
                 np.ones(n, bool), source=source)


def _source(track: SpriteTrack) -> dict:
    return {"track": track.track_id, "source_frames": [track.sprites[0].source_frame, track.sprites[-1].source_frame]}


# Words only one kind's cause uses (the templates below), so a cause's text says which kinds it names
CAUSE_MARKERS = {"fall": ("collapses", "stays down"), "struggle": ("grapple", "pushing and shoving"),
                 "crowd_run": ("break into a run", "keep running"), "loiter": ("lingers", "pacing"),
                 "left_object": ("puts an item down", "unattended")}


def kinds_named(text: str) -> set[str]:
    """The threat kinds whose cause wording (CAUSE_MARKERS) ``text`` uses: exactly its own kind for a
    composed cause; a generated cause may name none, or several."""
    low = text.lower()
    return {kind for kind, words in CAUSE_MARKERS.items() if any(w in low for w in words)}


def _describe(event: str, *parts: str) -> str:
    return attribute_answer(" ".join(parts)) if event in THREAT_KINDS else " ".join(parts)


# ---------------------------------------------------------------------------------------------------
# threat scripts: each returns its actors and its event, with the onset in [window[0], window[1]]


def _onset(scene: Scene, spec: EventSpec, window: tuple[int, int], lead: int, length: int) -> int:
    """The onset frame: the spec's, or a random one such that lead-in and event fit in the window
    (the lead-in may shrink to MIN_LEAD_S when the window is tight)."""
    hi = min(window[1], scene.n_frames) - length
    lo = max(window[0] + lead, scene.frames(MIN_LEAD_S))
    if lo > hi:  # tight window: a shorter lead-in
        lo = max(window[0] + scene.frames(MIN_LEAD_S), scene.frames(MIN_LEAD_S))
    if spec.start_s is not None:
        onset = scene.frames(spec.start_s)
        if not scene.frames(MIN_LEAD_S) <= onset <= scene.n_frames - length:
            raise ComposeError(
                f"{spec.kind} at start_s={spec.start_s:g}: needs {MIN_LEAD_S:g} s before it and "
                f"{length / scene.fps:.1f} s after it inside the {scene.n_frames / scene.fps:.1f} s clip"
            )
        return onset
    if hi < lo:
        raise ComposeError(
            f"{spec.kind}: needs {(length + max(lead, scene.frames(MIN_LEAD_S))) / scene.fps:.1f} s of clip; "
            f"only {(window[1] - window[0]) / scene.fps:.1f} s are free"
        )
    return int(scene.rng.integers(lo, hi + 1))


def _threat_length(scene: Scene, spec: EventSpec, window: tuple[int, int]) -> int:
    """Frames of threat: the spec's duration, or a random one that fits the window when it can."""
    (_, lead_hi), (dmin, dmax), shortest = TIMING_S[spec.kind]
    if spec.kind in PERSISTENT_KINDS:
        return scene.frames(dmin)  # the shortest tail it needs; it really lasts to the clip's end
    if spec.duration_s is not None:
        if spec.duration_s < shortest:
            raise ComposeError(f"{spec.kind}: duration_s must be at least {shortest:g} s to be recognisable")
        return scene.frames(spec.duration_s)
    room_s = (min(window[1], scene.n_frames) - max(window[0] + scene.frames(lead_hi), scene.frames(MIN_LEAD_S))
              ) / scene.fps  # what is left once a full lead-in is in
    if room_s < shortest:
        room_s = (min(window[1], scene.n_frames) - max(window[0], 0) - scene.frames(MIN_LEAD_S)) / scene.fps
    hi = min(dmax, room_s)
    if hi < shortest:
        return scene.frames(shortest)  # does not fit: _onset says so
    return scene.frames(scene.uniform(max(shortest, min(dmin, hi)), hi))


def plan_fall(scene: Scene, spec: EventSpec, window: tuple[int, int], tag: str) -> tuple[list[Actor], ComposedEvent]:
    lead = scene.frames(scene.uniform(*TIMING_S["fall"][0]))
    onset = _onset(scene, spec, (window[0], scene.n_frames), lead, _threat_length(scene, spec, window))
    lead = min(lead, onset)
    track = scene.pick_track(lead / scene.fps)
    mirror = bool(scene.rng.random() < 0.5)
    fall_n = scene.frames(FALL_S)

    def build(origin: np.ndarray) -> list[Actor]:
        path = Path()
        path.walk(scene, track, origin, lead, mirror=mirror)
        heading = np.sign(path.end[0] - path.feet[0][0]) or 1.0
        for k in range(1, fall_n + 1):  # accelerating, like a body toppling: angle ~ t^2
            path.sprites.append(path.sprites[-1])
            path.feet.append(path.end.copy())
            path.mirror.append(mirror)
            path.angle.append(float(heading * 88.0 * (k / fall_n) ** 2))
        path.hold(scene.n_frames - (onset - lead) - len(path), scene.fps)  # stays down, still, to the end
        return [person_actor(scene, f"{tag}.A", onset - lead, path, fade_out=False, source=f"track {track.track_id}")]

    actors = scene.search(build)
    spot = actors[0].foot_xy[lead]
    start_s, end_s = scene.seconds(onset), scene.seconds(scene.n_frames)
    cause = _describe("fall", f"a person who collapses onto the ground in the {scene.zone(spot)} of the view at",
                      f"{format_time_s(start_s)} and stays down without moving")
    return actors, ComposedEvent("fall", True, start_s, end_s, cause,
                                 ({"id": f"{tag}.A", "kind": "person", "role": "falls", **_source(track)},))


def _meeting(scene: Scene, track_a: SpriteTrack, track_b: SpriteTrack, meet: np.ndarray, approach: int,
             gap: float) -> tuple[Path, Path, bool, bool]:
    """A walks in from the left, B from the right, ending ``gap`` px either side of ``meet``."""
    mirror_a, mirror_b = facing(track_a) < 0, facing(track_b) > 0  # A faces +x, B faces -x
    a, b = Path(), Path()
    for path, track, mirror, end in ((a, track_a, mirror_a, meet - (gap, 0)), (b, track_b, mirror_b, meet + (gap, 0))):
        probe = Path()
        probe.walk(scene, track, end, approach + 1, mirror=mirror)
        start = end - (probe.end - probe.feet[0])  # start so that the walk ends at `end`
        path.walk(scene, track, start, approach, mirror=mirror)
    return a, b, mirror_a, mirror_b


def plan_struggle(scene: Scene, spec: EventSpec, window: tuple[int, int], tag: str):
    lead = scene.frames(scene.uniform(*TIMING_S["struggle"][0]))
    length = _threat_length(scene, spec, window)
    onset = _onset(scene, spec, window, lead, length)
    lead = min(lead, onset)
    leave = scene.frames(scene.uniform(1.5, 2.0))
    track_a, track_b = scene.pick_track(lead / scene.fps), scene.pick_track(lead / scene.fps)
    rng = scene.rng
    phases = rng.uniform(0, 2 * np.pi, 4)
    freqs = rng.uniform(0.3, 0.8, 2)

    def build(meet: np.ndarray) -> list[Actor]:
        h = scene.height_px(meet[1])
        a, b, mirror_a, mirror_b = _meeting(scene, track_a, track_b, meet, lead, 0.2 * h)
        def push(t: float) -> float:  # the pair sways back and forth together: one pushes, then the other
            return 0.25 * h * (0.6 * np.sin(2 * np.pi * freqs[0] * t + phases[0])
                               + 0.4 * np.sin(2 * np.pi * freqs[1] * t + phases[1]))

        for k in range(length):
            t = k / scene.fps
            gap = h * (0.14 + 0.04 * np.sin(2 * np.pi * 1.3 * t + phases[2]))  # closing in, pulling apart
            centre = meet + (push(t) - push(0.0), 0.0)  # starts where they met
            lean = 10.0 + 6.0 * np.sin(2 * np.pi * 1.1 * t + phases[3])
            for path, track, mirror, side in ((a, track_a, mirror_a, -1.0), (b, track_b, mirror_b, 1.0)):
                if k % 2 == 0:  # limbs flail: jump between poses of the walk cycle
                    sprite = track.sprites[int(rng.integers(len(track.sprites)))]
                else:
                    sprite = path.sprites[-1]
                jitter = rng.normal(0, (0.025 * h, 0.01 * h))
                path.sprites.append(sprite)
                path.feet.append(centre + (side * gap, 0.0) + jitter)
                path.mirror.append(mirror)
                path.angle.append(float(-side * (lean + rng.normal(0, 3.0))))  # each leans into the other
        for path, track, mirror in ((a, track_a, mirror_a), (b, track_b, mirror_b)):
            path.walk(scene, track, path.end, leave, mirror=mirror, reverse=True)  # back where they came from
        first = onset - lead
        return [person_actor(scene, f"{tag}.A", first, a, source=f"track {track_a.track_id}"),
                person_actor(scene, f"{tag}.B", first, b, source=f"track {track_b.track_id}")]

    actors = scene.search(build)
    spot = actors[0].foot_xy[lead]
    start_s, end_s = scene.seconds(onset), scene.seconds(onset + length)
    cause = _describe("struggle", f"two people who meet in the {scene.zone(spot)} of the view at",
                      f"{format_time_s(start_s)} and grapple, pushing and shoving each other for",
                      format_time_s(end_s - start_s))
    return actors, ComposedEvent("struggle", True, start_s, end_s, cause, (
        {"id": f"{tag}.A", "kind": "person", "role": "grapples", **_source(track_a)},
        {"id": f"{tag}.B", "kind": "person", "role": "grapples", **_source(track_b)}))


def plan_crowd_run(scene: Scene, spec: EventSpec, window: tuple[int, int], tag: str):
    lead = scene.frames(scene.uniform(*TIMING_S["crowd_run"][0]))
    length = _threat_length(scene, spec, window)
    onset = _onset(scene, spec, window, lead, length)
    lead = min(lead, onset)
    after = scene.frames(1.5)
    rng = scene.rng
    m = spec.n_people or int(rng.integers(3, 6))
    tracks = [scene.pick_track(lead / scene.fps) for _ in range(m)]
    mirrors = rng.random(m) < 0.5
    staggers = rng.integers(0, scene.frames(0.3) + 1, m)  # they react within a fraction of a second
    side = 1.0 if rng.random() < 0.5 else -1.0
    tilt = float(rng.uniform(-0.35, 0.35))
    speed_hps = float(rng.uniform(*RUN_SPEED_HPS))  # they run together, at one pace
    persp = scene.bank.perspective
    travels = [float(np.clip(speed_hps / (max(_walking_speed_hps(t, persp), 0.1) * RUN_GAIT), 1.0, 4.0))
               for t in tracks]

    def build(centre: np.ndarray) -> list[Actor]:
        h = scene.height_px(centre[1])
        spots: list[np.ndarray] = []
        for _ in range(200):  # a loose group, people at least half a body height apart
            p = centre + rng.uniform(-1.5, 1.5, 2) * (h, 0.5 * h)
            if all(np.linalg.norm(p - q) > 0.5 * h for q in spots):
                spots.append(p)
            if len(spots) == m:
                break
        while len(spots) < m:  # crowded: accept closer neighbours rather than fail
            spots.append(centre + rng.uniform(-1.5, 1.5, 2) * (h, 0.5 * h))
        best = None
        for heading in (side, -side):  # run along the walked ground if one way leaves it
            direction = np.array([heading, tilt]) / np.hypot(1.0, tilt)
            actors = []
            for i, (track, spot) in enumerate(zip(tracks, spots)):
                path = Path()
                walk_n = lead + int(staggers[i])
                phase = path.walk(scene, track, spot, walk_n, mirror=bool(mirrors[i]))
                run_mirror = (facing(track) * heading) < 0
                run_n = length - int(staggers[i])
                phase = path.walk(scene, track, path.end, run_n, mirror=run_mirror, gait=RUN_GAIT,
                                  travel=travels[i], direction=direction, phase=phase)
                path.walk(scene, track, path.end, after, mirror=run_mirror, direction=direction, phase=phase)
                actors.append(person_actor(scene, f"{tag}.{chr(65 + i)}", onset - lead, path,
                                           source=f"track {track.track_id}"))
            score = scene.on_ground(actors)
            if best is None or score > best[0] + 0.1:
                best = (score, actors, heading)
        return best[1]

    actors = scene.search(build)
    heading = np.sign(np.mean([a.foot_xy[-1, 0] - a.foot_xy[lead, 0] for a in actors])) or 1.0
    start_s, end_s = scene.seconds(onset), scene.seconds(onset + length)
    cause = _describe("crowd_run", f"{m} people who suddenly break into a run together towards the",
                      f"{'right' if heading > 0 else 'left'} of the view at {format_time_s(start_s)} and keep",
                      f"running for {format_time_s(end_s - start_s)}")
    return actors, ComposedEvent("crowd_run", True, start_s, end_s, cause, tuple(
        {"id": a.name, "kind": "person", "role": "runs", "speed_hps": round(speed_hps, 2), **_source(t)}
        for a, t in zip(actors, tracks)))


def _pace(scene: Scene, path: Path, track: SpriteTrack, n: int, mirror: bool, centre: np.ndarray) -> None:
    """Walk back and forth around ``centre`` with pauses until the path has n frames: legs of
    1.5-3 s, each heading back towards the centre, turning round between them."""
    rng, phase = scene.rng, 0.0
    axis = _velocity(track).mean(axis=0) * (-1.0 if mirror else 1.0, 1.0)  # the forward walking direction
    while len(path) < n:
        left = n - len(path)
        if rng.random() < 0.4:
            path.hold(min(left, scene.frames(rng.uniform(0.8, 2.0))), scene.fps, sway_deg=1.0, rng=rng)
            continue
        forward = float(np.dot(centre - path.end, axis)) >= 0
        leg = min(left, scene.frames(rng.uniform(1.5, 3.0)))
        phase = path.walk(scene, track, path.end, leg, mirror=mirror, reverse=not forward, phase=phase)


def plan_loiter(scene: Scene, spec: EventSpec, window: tuple[int, int], tag: str):
    lead = scene.frames(scene.uniform(*TIMING_S["loiter"][0]))
    length = _threat_length(scene, spec, window)
    onset = _onset(scene, spec, window, lead, length)
    lead = min(lead, onset)
    leave = scene.frames(scene.uniform(1.5, 2.0))
    track = scene.pick_track(lead / scene.fps, horizontal=True)
    mirror = bool(scene.rng.random() < 0.5)

    def build(zone: np.ndarray) -> list[Actor]:
        probe = Path()
        probe.walk(scene, track, zone, lead + 1, mirror=mirror)
        path = Path()
        path.walk(scene, track, zone - (probe.end - probe.feet[0]), lead, mirror=mirror)
        _pace(scene, path, track, lead + length, mirror, zone)
        path.walk(scene, track, path.end, leave, mirror=mirror)  # and finally moves on
        return [person_actor(scene, f"{tag}.A", onset - lead, path, source=f"track {track.track_id}")]

    actors = scene.search(build)
    spot = actors[0].foot_xy[lead:lead + length].mean(0)
    start_s, end_s = scene.seconds(onset), scene.seconds(onset + length)
    cause = _describe("loiter", f"a person who lingers in the {scene.zone(spot)} of the view for",
                      f"{format_time_s(end_s - start_s)} from {format_time_s(start_s)}, pacing back and forth",
                      "and stopping instead of passing through")
    return actors, ComposedEvent("loiter", True, start_s, end_s, cause,
                                 ({"id": f"{tag}.A", "kind": "person", "role": "loiters", **_source(track)},))


def _carried_item(scene: Scene, name: str, carrier: Actor, item: Sprite, drop_at: int | None) -> Actor:
    """An item held at the carrier's side; from ``drop_at`` on, lowered to the ground and left there."""
    persp = scene.bank.perspective
    rel = item.height_px / persp.height_px(item.source_foot_xy[1])  # its size relative to a person
    size = min(1.0, 0.3 / rel)  # carried things are at most a third of a person tall
    n_total = len(carrier.sprites) if drop_at is None else scene.n_frames - carrier.first_frame
    feet, scales, shadow = np.zeros((n_total, 2)), np.zeros(n_total), np.zeros(n_total, bool)
    drop_n = scene.frames(DROP_S)
    rest = None
    for k in range(n_total):
        foot = carrier.foot_xy[min(k, len(carrier.sprites) - 1)]
        h = persp.height_px(foot[1])
        side = -1.0 if carrier.mirror[min(k, len(carrier.sprites) - 1)] else 1.0
        hand = foot + (0.16 * h * side, -0.3 * h)
        ground_y = foot[1]
        if drop_at is None or k < drop_at:
            feet[k] = hand
        else:
            if rest is None:
                rest = foot + (0.22 * h * side, 0.0)  # beside the feet of whoever put it down
            u = min(1.0, (k - drop_at + 1) / drop_n)
            feet[k] = hand + u * (rest - hand)
            shadow[k] = u >= 1.0
            ground_y = rest[1]
        scales[k] = persp.scale(item.source_foot_xy[1], ground_y) * size
    opacity = np.ones(n_total)  # once put down, the item stays
    held = n_total if drop_at is None else drop_at
    opacity[:held] = carrier.opacity[:held]  # while carried it fades in and out with its carrier
    return Actor(name, "item", carrier.first_frame, [item] * n_total, feet, scales, np.zeros(n_total),
                 np.zeros(n_total, bool), opacity, shadow, z_bias=0.5, source="item from the plate")


def _pick_item(scene: Scene, kind: str) -> Sprite:
    if not scene.bank.items:
        raise ComposeError(
            f"{kind}: no item to carry was found in this footage (an isolated object lying on plain ground "
            "in the background plate); choose other event kinds"
        )
    return scene.bank.items[int(scene.rng.integers(len(scene.bank.items)))]


def plan_left_object(scene: Scene, spec: EventSpec, window: tuple[int, int], tag: str):
    item = _pick_item(scene, "left_object")
    lead = scene.frames(scene.uniform(*TIMING_S["left_object"][0]))
    onset = _onset(scene, spec, (window[0], scene.n_frames), lead, _threat_length(scene, spec, window))
    lead = min(lead, onset)
    pause, leave = scene.frames(1.0), scene.frames(scene.uniform(2.0, 3.0))
    track = scene.pick_track((lead + leave) / scene.fps)
    mirror = bool(scene.rng.random() < 0.5)

    def build(origin: np.ndarray) -> list[Actor]:
        path = Path()
        phase = path.walk(scene, track, origin, lead, mirror=mirror)
        path.hold(pause, scene.fps)  # stops to put it down
        path.walk(scene, track, path.end, leave, mirror=mirror, phase=phase)
        person = person_actor(scene, f"{tag}.A", onset - lead, path, source=f"track {track.track_id}")
        return [person, _carried_item(scene, f"{tag}.item", person, item, drop_at=lead)]

    actors = scene.search(build)
    spot = actors[1].foot_xy[-1]
    start_s, end_s = scene.seconds(onset), scene.seconds(scene.n_frames)
    cause = _describe("left_object", f"a person who puts an item down on the ground in the {scene.zone(spot)}",
                      f"of the view at {format_time_s(start_s)} and walks away, leaving it unattended")
    return actors, ComposedEvent("left_object", True, start_s, end_s, cause, (
        {"id": f"{tag}.A", "kind": "person", "role": "leaves the item", **_source(track)},
        {"id": f"{tag}.item", "kind": "item", "role": "left unattended",
         "source_foot_xy": [round(float(v), 1) for v in item.source_foot_xy]}))


# ---------------------------------------------------------------------------------------------------
# harmless scripts: the same parts, nothing happens


def _harmless_span(scene: Scene, spec: EventSpec) -> tuple[int, int]:
    lo, hi = HARMLESS_S[spec.kind]
    n = scene.frames(spec.duration_s if spec.duration_s is not None else scene.uniform(lo, hi))
    n = max(scene.frames(1.0), min(n, scene.n_frames))
    if spec.start_s is not None:
        first = scene.frames(spec.start_s)
        if first >= scene.n_frames:
            raise ComposeError(f"{spec.kind} at start_s={spec.start_s:g} is after the clip's end")
        return first, min(n, scene.n_frames - first)
    return int(scene.rng.integers(0, scene.n_frames - n + 1)), n


def plan_normal_walk(scene: Scene, spec: EventSpec, window: tuple[int, int], tag: str):
    first, n = _harmless_span(scene, spec)
    track = scene.pick_track(n / scene.fps)
    mirror = bool(scene.rng.random() < 0.5)

    def build(origin: np.ndarray) -> list[Actor]:
        path = Path()
        path.walk(scene, track, origin, n, mirror=mirror)
        return [person_actor(scene, f"{tag}.A", first, path, source=f"track {track.track_id}")]

    actors = scene.search(build)
    text = f"a person walks through the {scene.zone(actors[0].foot_xy[n // 2])} of the view"
    return actors, ComposedEvent("normal_walk", False, scene.seconds(first), scene.seconds(first + n), text,
                                 ({"id": f"{tag}.A", "kind": "person", "role": "walks", **_source(track)},))


def plan_pause_walk(scene: Scene, spec: EventSpec, window: tuple[int, int], tag: str):
    first, n = _harmless_span(scene, spec)
    pause = min(scene.frames(scene.uniform(1.5, 3.0)), n // 2)
    walk_a = (n - pause) // 2
    track = scene.pick_track(n / scene.fps)
    mirror = bool(scene.rng.random() < 0.5)

    def build(origin: np.ndarray) -> list[Actor]:
        path = Path()
        phase = path.walk(scene, track, origin, walk_a, mirror=mirror)
        path.hold(pause, scene.fps, sway_deg=1.0, rng=scene.rng)
        path.walk(scene, track, path.end, n - walk_a - pause, mirror=mirror, phase=phase)
        return [person_actor(scene, f"{tag}.A", first, path, source=f"track {track.track_id}")]

    actors = scene.search(build)
    text = (f"a person walks through the {scene.zone(actors[0].foot_xy[n // 2])} of the view, pausing for "
            f"{format_time_s(pause / scene.fps)}")
    return actors, ComposedEvent("pause_walk", False, scene.seconds(first), scene.seconds(first + n), text,
                                 ({"id": f"{tag}.A", "kind": "person", "role": "walks and pauses", **_source(track)},))


def plan_pass_by(scene: Scene, spec: EventSpec, window: tuple[int, int], tag: str):
    first, n = _harmless_span(scene, spec)
    half = n // 2
    track_a, track_b = scene.pick_track(n / scene.fps), scene.pick_track(n / scene.fps)

    def build(meet: np.ndarray) -> list[Actor]:
        h = scene.height_px(meet[1])
        a, b, mirror_a, mirror_b = _meeting(scene, track_a, track_b, meet, half, 0.0)
        a.feet = [f - (0.0, 0.12 * h) for f in a.feet]  # one a little further away: they pass side by side
        a.walk(scene, track_a, a.end, n - half, mirror=mirror_a)
        b.walk(scene, track_b, b.end, n - half, mirror=mirror_b)
        return [person_actor(scene, f"{tag}.A", first, a, source=f"track {track_a.track_id}"),
                person_actor(scene, f"{tag}.B", first, b, source=f"track {track_b.track_id}")]

    actors = scene.search(build)
    text = f"two people pass each other in the {scene.zone(actors[0].foot_xy[half])} of the view"
    return actors, ComposedEvent("pass_by", False, scene.seconds(first), scene.seconds(first + n), text, (
        {"id": f"{tag}.A", "kind": "person", "role": "walks past", **_source(track_a)},
        {"id": f"{tag}.B", "kind": "person", "role": "walks past", **_source(track_b)}))


def plan_carry_walk(scene: Scene, spec: EventSpec, window: tuple[int, int], tag: str):
    item = _pick_item(scene, "carry_walk")
    first, n = _harmless_span(scene, spec)
    track = scene.pick_track(n / scene.fps)
    mirror = bool(scene.rng.random() < 0.5)

    def build(origin: np.ndarray) -> list[Actor]:
        path = Path()
        path.walk(scene, track, origin, n, mirror=mirror)
        person = person_actor(scene, f"{tag}.A", first, path, source=f"track {track.track_id}")
        return [person, _carried_item(scene, f"{tag}.item", person, item, drop_at=None)]

    actors = scene.search(build)
    text = f"a person carrying an item walks through the {scene.zone(actors[0].foot_xy[n // 2])} of the view"
    return actors, ComposedEvent("carry_walk", False, scene.seconds(first), scene.seconds(first + n), text,
                                 ({"id": f"{tag}.A", "kind": "person", "role": "carries an item", **_source(track)},))


def plan_chat(scene: Scene, spec: EventSpec, window: tuple[int, int], tag: str):
    """Two people walk up to each other, stand and talk (swaying a little) and walk off together: close
    and still for seconds like a struggle's pair or a loiterer, and nothing happens."""
    first, n = _harmless_span(scene, spec)
    approach, leave = (min(scene.frames(scene.uniform(1.0, 2.0)), n // 4) for _ in range(2))
    talk = n - approach - leave
    track_a, track_b = scene.pick_track(n / scene.fps), scene.pick_track(n / scene.fps)
    rng = scene.rng

    def build(meet: np.ndarray) -> list[Actor]:
        h = scene.height_px(meet[1])
        a, b, mirror_a, mirror_b = _meeting(scene, track_a, track_b, meet, approach, float(rng.uniform(0.2, 0.3)) * h)
        for path in (a, b):
            path.hold(talk, scene.fps, sway_deg=1.5, rng=rng)
        a.walk(scene, track_a, a.end, leave, mirror=mirror_a)  # A walks on; B turns round and goes along
        b.walk(scene, track_b, b.end, leave, mirror=mirror_b, reverse=True)
        return [person_actor(scene, f"{tag}.A", first, a, source=f"track {track_a.track_id}"),
                person_actor(scene, f"{tag}.B", first, b, source=f"track {track_b.track_id}")]

    actors = scene.search(build)
    text = (f"two people meet in the {scene.zone(actors[0].foot_xy[approach])} of the view and stand talking "
            f"for {format_time_s(talk / scene.fps)}, then walk off together")
    return actors, ComposedEvent("chat", False, scene.seconds(first), scene.seconds(first + n), text, (
        {"id": f"{tag}.A", "kind": "person", "role": "talks", **_source(track_a)},
        {"id": f"{tag}.B", "kind": "person", "role": "talks", **_source(track_b)}))


PLANNERS = {
    "fall": plan_fall, "struggle": plan_struggle, "crowd_run": plan_crowd_run, "loiter": plan_loiter,
    "left_object": plan_left_object, "normal_walk": plan_normal_walk, "pass_by": plan_pass_by,
    "pause_walk": plan_pause_walk, "carry_walk": plan_carry_walk, "chat": plan_chat,
}
