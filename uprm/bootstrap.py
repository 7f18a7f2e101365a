"""The bootstrap `small` checkpoint: composed training / held-out sets, perception, training, evaluation.

    from uprm.bootstrap import SourceWindow, compose_set, perceive_set, write_instructions
    train = compose_set("train", [SourceWindow("vtest.avi", 30.0, 79.5)], 28, seed=1000, out_dir="data/train")
    perceive_set(train)                                   # evidence cached per clip (content hash)
    write_instructions(train, "data/train/instructions.json")   # the three DeepSVU turns per clip

Training and held-out sets never share footage or seeds: the training set is composed only from
vtest.avi after its first 30 s, the held-out set from the first 30 s (the studio's sample) and from
other footage. Everything here is deterministic given the sources and seeds.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from uprm.analysis import DecisionRule, cut_segments

THREATS_PER_CLIP_P = (0.25, 0.45, 0.30)  # P(0), P(1), P(2) threat events per composed clip
CHECKPOINT_VERSION = "uprm-small-bootstrap-v11"
Say = Callable[[str], None]


class BootstrapError(ValueError):
    """A bootstrap step cannot run with what it was given (the message says what to change)."""


@dataclass(frozen=True)
class SourceWindow:
    """The part [start_s, end_s) of a static-camera video that clips may be cut from."""

    path: str
    start_s: float = 0.0
    end_s: float | None = None  # None: to the end of the video


@dataclass(frozen=True)
class ClipRecord:
    """One composed clip and its ground truth (seconds; causes as the compositor wrote them)."""

    video_id: str
    path: str
    duration_s: float
    fps: float
    source: str
    source_start_s: float
    seed: int
    segments_s: tuple[tuple[float, float], ...]
    labels: tuple[str, ...]
    causes: tuple[str, ...]
    harmless: tuple[str, ...]


@dataclass
class ComposedSet:
    name: str
    out_dir: Path
    seed: int
    clips: list[ClipRecord] = field(default_factory=list)
    compose_s: float = 0.0

    @property
    def gt_path(self) -> Path:
        return self.out_dir / "ground_truth.json"

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / "manifest.json"

    def joined(self, other: "ComposedSet") -> "ComposedSet":
        """This set with ``other``'s clips after its own, to be scored and tuned on as one (each clip's
        files stay where its set wrote them)."""
        return ComposedSet(self.name, self.out_dir, self.seed, self.clips + other.clips, self.compose_s + other.compose_s)

    def summary(self) -> dict:
        kinds: dict[str, int] = {}
        for c in self.clips:
            for k in c.labels:
                kinds[k] = kinds.get(k, 0) + 1
        return {"name": self.name, "clips": len(self.clips), "seconds": round(sum(c.duration_s for c in self.clips), 1),
                "clips_with_threat": sum(bool(c.segments_s) for c in self.clips),
                "threat_events": sum(len(c.segments_s) for c in self.clips), "events_by_kind": kinds,
                "harmless_events": sum(len(c.harmless) for c in self.clips),
                "harmless_by_kind": dict(sorted(Counter(k for c in self.clips for k in c.harmless).items())),
                "sources": sorted({c.source for c in self.clips})}

    def fingerprint(self) -> str:
        """sha256 over the clips' ids and file bytes: two builds composed the same pixels iff these agree
        (the plans can agree while the pixels do not, e.g. clips kept from older compositor code)."""
        from uprm.video import file_sha256

        digest = hashlib.sha256()
        for c in self.clips:
            digest.update(f"{c.video_id}:{file_sha256(c.path)}\n".encode())
        return digest.hexdigest()


def _noop(_msg: str) -> None:
    pass


# ------------------------------------------------------------------------------------------ composing


def compose_set(name: str, windows: Sequence[SourceWindow], n_clips: int, seed: int, out_dir: str | Path,
                clip_s_range: tuple[float, float] = (10.0, 16.0), *, events: Sequence[str] | None = None,
                progress: Say | None = None) -> ComposedSet:
    """Compose ``n_clips`` clips cut from ``windows`` (sources chosen in turn), each with 0-2 threats and
    0-2 harmless pasted walkers (at least one when there is no threat, so pasting is never a cue), or,
    given ``events`` (kind names), exactly those events in every clip (placed by each clip's seed).

    Sprites are harvested from each window only, so the people acting in a set come from its footage.
    Clips already written with the same plan are reused (each clip's JSON records its plan, which names the
    compositor's code fingerprint: a clip older code composed is composed again).
    """
    from uprm.compose import compose, prepare
    from uprm.compose.cache import code_fingerprint
    from uprm.compose.compositor import GT_VERSION, write_gt
    from uprm.compose.source import probe

    if n_clips < 1:
        raise BootstrapError(f"{name}: n_clips must be at least 1, got {n_clips}")
    if not windows:
        raise BootstrapError(f"{name}: give at least one SourceWindow to cut clips from")
    lo_s, hi_s = clip_s_range
    if not 5.0 <= lo_s <= hi_s:
        raise BootstrapError(f"{name}: clip_s_range must satisfy 5 <= low <= high, got {clip_s_range}")
    say = progress or _noop
    out_dir = Path(out_dir)
    footages = []
    for w in windows:
        if not Path(w.path).is_file():
            raise BootstrapError(f"{name}: source video {w.path} does not exist")
        say(f"{name}: preparing {Path(w.path).name} [{w.start_s:g}, {w.end_s if w.end_s is not None else 'end'}) s")
        video = probe(w.path)
        end_s = video.duration_s if w.end_s is None else min(w.end_s, video.duration_s)
        if end_s - w.start_s < lo_s:
            raise BootstrapError(f"{name}: window [{w.start_s:g}, {end_s:g}) s of {w.path} is shorter than a "
                                 f"{lo_s:g} s clip")
        # the plate comes from the whole video (cached); sprites only from the window
        whole = w.start_s <= 0 and end_s >= video.duration_s
        footage = prepare(w.path) if whole else prepare(w.path, sprite_window_s=(w.start_s, end_s))
        footages.append((footage, w.start_s, end_s))

    rng = np.random.default_rng(seed)
    database: dict[str, dict] = {}
    clips: list[ClipRecord] = []
    t0 = time.perf_counter()
    for i in range(n_clips):
        footage, w_lo, w_hi = footages[i % len(footages)]
        fps = footage.video.fps
        length_s = min(w_hi - w_lo, float(rng.uniform(lo_s, hi_s)))
        length_s = int(length_s * fps) / fps  # whole frames
        start_s = int(rng.uniform(w_lo, w_hi - length_s) * fps) / fps
        n_threats = int(rng.choice(3, p=THREATS_PER_CLIP_P))
        n_harmless = int(rng.integers(0 if n_threats else 1, 3))
        clip_seed = int(rng.integers(2**31))
        what = list(events) if events is not None else n_threats  # compose(): kinds, or a number drawn
        video_id = f"{name}_s{seed}_{i:03d}"
        path = out_dir / "videos" / f"{video_id}.mp4"
        gt_file = path.with_suffix(".json")
        plan = {"version": GT_VERSION, "code": code_fingerprint(), "source_sha256": footage.video.content_hash,
                "start_s": start_s, "clip_s": length_s,
                **({"n_threats": n_threats, "n_harmless": n_harmless} if events is None else {"events": what}),
                "seed": clip_seed}
        cached = _cached_clip(path, gt_file, plan)
        if cached is None:
            result = compose(footage, what, clip_seed, path, start_s=start_s, clip_s=length_s,
                             n_harmless=n_harmless, video_id=video_id, gt_path=gt_file)
            gt = result.gt
            gt["plan"] = plan
            write_gt(gt, gt_file)
        else:
            gt = cached
        entry = gt["database"][video_id]
        database[video_id] = entry
        anns = sorted(entry["annotations"], key=lambda a: a["segment"][0])
        clip = ClipRecord(
            video_id=video_id, path=str(path.resolve()), duration_s=float(entry["duration"]), fps=float(entry["fps"]),
            source=Path(footage.video.path).name, source_start_s=start_s, seed=clip_seed,
            segments_s=tuple((float(a["segment"][0]), float(a["segment"][1])) for a in anns),
            labels=tuple(a["label"] for a in anns), causes=tuple(a.get("cause", "") for a in anns),
            harmless=tuple(h["kind"] for h in entry["composition"]["harmless"]))
        clips.append(clip)
        say(f"{name} [{i + 1}/{n_clips}] {video_id}: {length_s:g} s of {clip.source} from {start_s:g} s: "
            f"{', '.join(clip.labels) or 'no threat'}; harmless: {', '.join(clip.harmless) or 'none'}"
            f"{' (reused)' if cached is not None else ''}")
    out = ComposedSet(name, out_dir, seed, clips, time.perf_counter() - t0)
    write_gt({"version": GT_VERSION, "database": database}, out.gt_path)
    out.manifest_path.write_text(json.dumps({"name": name, "seed": seed, "windows": [asdict(w) for w in windows],
                                             "clips": [asdict(c) for c in clips]}, indent=1) + "\n")
    return out


def _cached_clip(path: Path, gt_file: Path, plan: dict) -> dict | None:
    """The ground truth of a clip already written with ``plan``, or None."""
    if not (path.is_file() and gt_file.is_file()):
        return None
    try:
        gt = json.loads(gt_file.read_text())
    except json.JSONDecodeError:
        return None
    return gt if gt.get("plan") == plan else None


def load_set(out_dir: str | Path) -> ComposedSet:
    """A set written by ``compose_set`` (its manifest), without composing anything."""
    out_dir = Path(out_dir)
    manifest = out_dir / "manifest.json"
    if not manifest.is_file():
        raise BootstrapError(f"{out_dir} holds no manifest.json: compose the set first (compose_set)")
    data = json.loads(manifest.read_text())
    clips = []
    for c in data["clips"]:
        c = dict(c)
        for k in ("labels", "causes", "harmless"):
            c[k] = tuple(c[k])
        c["segments_s"] = tuple(tuple(s) for s in c["segments_s"])
        clips.append(ClipRecord(**c))
    return ComposedSet(data["name"], out_dir, int(data["seed"]), clips)


# ----------------------------------------------------------------------------------------- perception


def perceive_all(paths: Sequence[str | Path], settings=None, cache_dir: str | Path | None = None,
                 progress: Say | None = None) -> tuple[dict[str, object], float]:
    """Evidence of every video (cached on disk per content hash) and the wall time spent, in seconds."""
    from uprm.perception import perceive

    say = progress or _noop
    out: dict[str, object] = {}
    t0 = time.perf_counter()
    for i, p in enumerate(paths):
        t1 = time.perf_counter()
        out[str(p)] = perceive(p, settings, cache_dir=cache_dir)
        say(f"perceived [{i + 1}/{len(paths)}] {Path(p).name} in {time.perf_counter() - t1:.1f} s")
    return out, time.perf_counter() - t0


def perceive_set(composed: ComposedSet, settings=None, cache_dir: str | Path | None = None,
                 progress: Say | None = None) -> tuple[dict[str, object], float]:
    """``perceive_all`` over a composed set's clips, keyed by clip path."""
    return perceive_all([c.path for c in composed.clips], settings, cache_dir, progress)


# ------------------------------------------------------------------------------------ instruction data


def joined_cause(causes: Sequence[str]) -> str:
    """All causes of a clip as one clause list, without the answer's own "The threat is attributed to"
    (``attribute_answer`` puts it in front once): "a person who falls ...; two people who ..."."""
    prefix = "the threat is attributed to "
    parts = []
    for c in causes:
        c = c.strip().rstrip(".").strip()
        parts.append(c[len(prefix):].strip() if c.lower().startswith(prefix) else c)
    return "; ".join(dict.fromkeys(p for p in parts if p))


def instruction_entries(composed: ComposedSet) -> list[dict]:
    """LLaVA conversation entries (the shape ``python -m uprm train`` reads): identify, locate and, for
    clips with a threat, attribute; plus "segments" so the per-step threat targets come from the GT."""
    from uprm.instructions import ATTRIBUTE, IDENTIFY, LOCATE, attribute_answer, identify_answer, locate_answer

    entries = []
    for c in composed.clips:
        turns = [("human", "<video>\n" + IDENTIFY), ("gpt", identify_answer(bool(c.segments_s))),
                 ("human", LOCATE), ("gpt", locate_answer(list(c.segments_s)))]
        cause = joined_cause(c.causes)
        if c.segments_s and cause:
            turns += [("human", ATTRIBUTE), ("gpt", attribute_answer(cause))]
        entries.append({"id": c.video_id, "video": c.path, "segments": [list(s) for s in c.segments_s],
                        "conversations": [{"from": w, "value": v} for w, v in turns]})
    return entries


def write_instructions(composed: ComposedSet, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(instruction_entries(composed), indent=1, ensure_ascii=False) + "\n")
    return path


# ------------------------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainRecipe:
    """Arguments of one ``python -m uprm train`` run (stage 2 unless said otherwise)."""

    lr: float = 2e-5
    epochs: int = 1
    batch_size: int = 8
    alpha: float | None = None  # None: the config's 0.05
    ablation: tuple[str, ...] = ()
    expert_dropout: float | None = None  # None: the config's (0 = off)
    augment: float = 0.0  # evidence augmentation strength (--augment; 0 = off)
    seed: int = 0
    max_steps: int | None = None
    warmup_ratio: float = 0.03
    stage: int = 2
    weight_decay: float = 0.0
    fusion_lr: float | None = None  # UPRM's own modules' lr (None: lr); see TrainSettings.fusion_lr
    threat_only: bool = False  # per-step threat targets only, the language model not run (--threat-only)

    def cli_args(self, data: Sequence[str | Path], out_dir: str | Path, init: str | Path = "small-untrained",
                 num_threads: int | None = None) -> list[str]:
        """The exact argv of ``python -m uprm train`` for this recipe."""
        init = str(init)
        args = ["train", "--stage", str(self.stage), "--data", *map(str, data), "--out", str(out_dir),
                "--lr", repr(self.lr), "--epochs", str(self.epochs), "--batch-size", str(self.batch_size),
                "--warmup-ratio", repr(self.warmup_ratio), "--seed", str(self.seed), "--log-every", "5",
                "--checkpoint-every", "1000"]
        args += ["--init", init] if Path(init).is_dir() else ["--config", init]
        if self.alpha is not None:
            args += ["--alpha", repr(self.alpha)]
        if self.ablation:
            args += ["--ablation", *self.ablation]
        if self.expert_dropout is not None:
            args += ["--expert-dropout", repr(self.expert_dropout)]
        if self.augment:
            args += ["--augment", repr(self.augment)]
        if self.max_steps is not None:
            args += ["--max-steps", str(self.max_steps)]
        if self.weight_decay:
            args += ["--weight-decay", repr(self.weight_decay)]
        if self.fusion_lr is not None:
            args += ["--fusion-lr", repr(self.fusion_lr)]
        if self.threat_only:
            args += ["--threat-only"]
        if num_threads:
            args += ["--num-threads", str(num_threads)]
        return args


@dataclass
class TrainRun:
    out_dir: Path
    argv: list[str]
    elapsed_s: float
    log: dict  # summary of train_log.jsonl (loss_summary)


RUN_KEY_FILE = "bootstrap_run.json"  # what a finished run was made from (see run_key)


def perception_versions() -> dict[str, str]:
    """The front-ends' versions the training data's evidence comes from (default perception settings)."""
    from uprm.perception import PerceptionSettings, Perceiver

    return Perceiver(PerceptionSettings()).versions()


def run_key(what: Sequence[str], inputs: Sequence[str | Path] = (), init: str | Path | None = None) -> str:
    """A fingerprint of a run: its command (or call), the bytes of its input files and of the initial
    weights (a retrained warm-up invalidates what was trained from it; a random start from a preset is its
    config, so a new preset default invalidates the runs begun from the old one) and the perception
    versions its evidence comes from (a new front-end invalidates the runs on the old one's evidence).
    Other model code is not in it: after changing it, rebuild with --fresh."""
    from uprm.model.io import SMALL_CHECKPOINT

    h = hashlib.sha256(json.dumps([list(what), perception_versions()]).encode())
    files = [Path(p) for p in inputs]
    if str(init) == "small" and SMALL_CHECKPOINT.is_dir():  # "small" is the shipped checkpoint when there is one
        init = SMALL_CHECKPOINT
    if init is not None and Path(init).is_dir():
        files += sorted(Path(init).glob("*.safetensors"))
    elif init is not None:
        h.update(json.dumps(preset_config(str(init)), sort_keys=True).encode())
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes() if f.is_file() else b"absent")
    return h.hexdigest()


def preset_config(name: str, **overrides) -> dict | None:
    """The config a random start named ``name`` ("small-untrained", "tiny", ...) is built from, with
    ``overrides`` (e.g. seed), as a dict without the fields set after training (the decision rule's,
    ``DecisionRule.config_fields``, and ``event_kinds``, whose head is fitted on the trained model): they
    change no weight the training learns, so a new one must not retrain; None when ``name`` is no preset."""
    from uprm.model import UPRMConfig
    from uprm.model.io import PRESETS, UNTRAINED_SMALL

    preset = "small" if name == UNTRAINED_SMALL else name
    if preset not in PRESETS:
        return None
    after_training = {*DecisionRule(0.5).config_fields(), "event_kinds"}
    return {k: v for k, v in getattr(UPRMConfig, preset)(**overrides).to_dict().items() if k not in after_training}


def finished_run(out_dir: str | Path, argv: list[str], key: str | None = None) -> TrainRun | None:
    """A run already completed in ``out_dir`` (final model and summary written) from the same ``key``
    (``run_key``), or None."""
    from uprm.training.trainer import SUMMARY_FILE

    out_dir = Path(out_dir)
    summary = out_dir / SUMMARY_FILE
    if not (summary.is_file() and (out_dir / "config.json").is_file()):
        return None
    if key is not None:
        stored = out_dir / RUN_KEY_FILE
        if not stored.is_file() or json.loads(stored.read_text()).get("key") != key:
            return None
    return TrainRun(out_dir, argv, float(json.loads(summary.read_text())["elapsed_s"]), loss_summary(out_dir))


def _clear_stale_run(out_dir: str | Path) -> None:
    """Remove a run folder before training into it again (stale: other inputs, or --fresh); a folder
    that holds anything but a run is left alone, and the trainer then says so."""
    import shutil

    from uprm.training.trainer import LOG_FILE, SUMMARY_FILE, checkpoint_dirs

    out_dir = Path(out_dir)
    if out_dir.is_dir() and ((out_dir / LOG_FILE).is_file() or (out_dir / SUMMARY_FILE).is_file()
                             or checkpoint_dirs(out_dir)):
        shutil.rmtree(out_dir)


def _record_key(out_dir: str | Path, what: Sequence[str], key: str) -> None:
    (Path(out_dir) / RUN_KEY_FILE).write_text(json.dumps({"what": list(what), "key": key}, indent=1) + "\n")


def run_training(recipe: TrainRecipe, data: Sequence[str | Path], out_dir: str | Path,
                 init: str | Path = "small-untrained", num_threads: int | None = None, *,
                 reuse: bool = False) -> TrainRun:
    """Run the project's training command in this process (``python -m uprm train ...``); with ``reuse``,
    a run already finished in ``out_dir`` from the same command, data and initial weights is returned
    as it is."""
    from uprm.__main__ import main

    argv = recipe.cli_args(data, out_dir, init, num_threads)
    what = ["python", "-m", "uprm", *argv]
    key = run_key(recipe.cli_args(data, out_dir, init), data, init)  # threads do not change the result
    if reuse and (done := finished_run(out_dir, what, key)) is not None:
        return done
    _clear_stale_run(out_dir)
    code = main(argv)
    done = finished_run(out_dir, what)  # elapsed_s: the trainer's own clock
    if code != 0 or done is None:
        raise BootstrapError(f"`python -m uprm {' '.join(argv)}` failed with exit code {code} (see its message above)")
    _record_key(out_dir, what, key)
    return done


def loss_summary(run_dir: str | Path, n_points: int = 8) -> dict:
    """The loss curve of a run (``train_log.jsonl``) in a few numbers: mean of each term over the first and
    last 10% of steps, and the total loss at ``n_points`` evenly spaced steps."""
    from uprm.training.trainer import LOG_FILE

    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        raise BootstrapError(f"{run_dir} holds no {LOG_FILE}: was it written by `python -m uprm train`?")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "loss" in r]
    if not rows:
        raise BootstrapError(f"{path} holds no logged step")
    k = max(1, len(rows) // 10)
    keys = [key for key in ("loss", "loss_ce", "loss_z", "loss_threat") if any(key in r for r in rows)]

    def mean(part: list[dict], key: str) -> float | None:
        vals = [r[key] for r in part if r.get(key) is not None]
        return round(float(np.mean(vals)), 4) if vals else None

    idx = np.linspace(0, len(rows) - 1, min(n_points, len(rows))).round().astype(int)
    return {"steps": len(rows), "first": {key: mean(rows[:k], key) for key in keys},
            "last": {key: mean(rows[-k:], key) for key in keys},
            "curve": [[int(rows[i].get("step", i + 1)), round(float(rows[i]["loss"]), 4)] for i in idx],
            "gates_last": {key: mean(rows[-k:], key) for key in ("gate_hpe", "gate_ore", "gate_vbe", "gate_coarse")}}


def ship_checkpoint(run_dir: str | Path, dest: str | Path, model_id: str, *, fp16: bool = True,
                    shared_adapter: str | Path | None = None, config_overrides: dict | None = None) -> dict:
    """Copy a run's final model into ``dest`` as config.json + uprm.safetensors (+ lora_adapter/), in
    float16 when ``fp16`` (the loader casts back to float32), named ``model_id``.

    ``shared_adapter``: instead of a copy, ``dest/lora_adapter`` becomes a relative symlink to this
    adapter folder, which must hold exactly the run's adapter (checked tensor by tensor); when the folder
    does not exist yet, this run's adapter is copied there first (the first of several sharing it).
    ``config_overrides``: config fields to record (e.g. the tuned decision rule, ``DecisionRule.config_fields``).
    Returns {file: bytes} of what was written.
    """
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from uprm.model.io import ADAPTER_DIR, WEIGHTS_FILE, build_model, save_model

    model = build_model(str(run_dir))
    if config_overrides:
        model.config = model.config.with_overrides(**config_overrides)
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(model, tmp, model_id=model_id)
    adapter_file = "adapter_model.safetensors"
    files = [tmp / WEIGHTS_FILE, tmp / ADAPTER_DIR / adapter_file]
    if fp16:
        from safetensors import safe_open

        for f in files:
            with safe_open(str(f), framework="pt") as fh:
                meta = fh.metadata() or {}
            state = {k: (v.half() if v.is_floating_point() else v) for k, v in load_file(str(f)).items()}
            save_file(state, str(f), metadata=meta)
    for extra in (tmp / ADAPTER_DIR).iterdir():  # peft's README.md: the model card is ours
        if extra.name not in (adapter_file, "adapter_config.json"):
            extra.unlink()
    if shared_adapter is not None:
        shared = Path(shared_adapter)
        if not shared.exists():
            shared.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(tmp / ADAPTER_DIR, shared)
        mine, theirs = load_file(str(tmp / ADAPTER_DIR / adapter_file)), load_file(str(shared / adapter_file))
        if set(mine) != set(theirs) or any(not torch.equal(mine[k], theirs[k]) for k in mine):
            raise BootstrapError(f"the adapter of {run_dir} differs from {shared}: it cannot be shared")
        shutil.rmtree(tmp / ADAPTER_DIR)
        (tmp / ADAPTER_DIR).symlink_to(Path(_relpath(shared.resolve(), dest.resolve())), target_is_directory=True)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return {str(p.relative_to(dest)): p.stat().st_size for p in sorted(dest.rglob("*")) if p.is_file()}


def _relpath(target: Path, start: Path) -> str:
    import os

    return os.path.relpath(target, start)


# ----------------------------------------------------------------------------------------- evaluation

ABLATION_ROWS = (("full", ()), ("w/o HPE", ("no_hpe",)), ("w/o ORE", ("no_ore",)), ("w/o VBE", ("no_vbe",)),
                 ("w/o UPE", ("no_upe",)))
CUVA_TIOUS = (0.1, 0.3, 0.5)


@dataclass
class Scored:
    """Per-step model output on one video (steps at their centre times, seconds)."""

    video_id: str
    duration_s: float
    step_s: float
    times_s: np.ndarray  # (T,)
    prob: np.ndarray  # (T,)
    gates: np.ndarray  # (T, 4): R_hpe, R_ore, R_vbe, 1 - G
    kind_prob: np.ndarray | None = None  # (T, K) over the model's event_kinds; None without a kind head


def score_video(model, evidence, video_id: str, ablation: tuple[str, ...] = ()) -> Scored:
    """One fusion forward (no text) with exactly the ablation switches given."""
    from uprm.analysis import ablated, run_model

    with ablated(model, ablation):
        run = run_model(model, evidence)
    return Scored(video_id, float(evidence.video.duration_s), 1.0 / evidence.sample_fps,
                  np.asarray(evidence.times_s, dtype=np.float64), run.prob.astype(np.float64),
                  run.gates.astype(np.float64), None if run.kind_prob is None else run.kind_prob.astype(np.float64))


def predicted_cuts(scored: Scored, rule: DecisionRule | float) -> list[tuple[object, list[int]]]:
    """(segment, its steps) exactly as ``uprm.analysis`` cuts them from the per-step probabilities: the
    steps are the ones the analysis names, explains and summarises the segment from."""
    from uprm.segments import Segment

    return [(Segment(scored.video_id, s, e, "threat", float(scored.prob[first:last + 1].max())),
             list(range(first, last + 1)))
            for first, last, s, e in cut_segments(scored.times_s, scored.prob, scored.step_s, scored.duration_s,
                                                  DecisionRule.of(rule))]


def predicted_segments(scored: Scored, rule: DecisionRule | float):
    """Segments exactly as ``uprm.analysis`` cuts them from the per-step probabilities."""
    return [seg for seg, _ in predicted_cuts(scored, rule)]


def gt_segments(composed: ComposedSet):
    from uprm.segments import Segment

    return [Segment(c.video_id, s, e, label, None, cause)
            for c in composed.clips for (s, e), label, cause in zip(c.segments_s, c.labels, c.causes)]


def detection_scores(composed: ComposedSet, scored: Sequence[Scored], rule: DecisionRule | float,
                     fps: float = 10.0) -> dict:
    """Frame FNR / F2, class-agnostic mAP at tIoU 0.1/0.3/0.5 (fractions), per event kind how many GT events
    some prediction overlaps at tIoU >= 0.5, and how many of the threat-free clips raise an alarm at all
    (``silent_share``: the share that do not; NaN without threat-free clips), under one decision rule."""
    from uprm.metrics import frame_level, temporal_map
    from uprm.segments import tiou

    rule = DecisionRule.of(rule)
    gt = gt_segments(composed)
    pred = [seg for s in scored for seg in predicted_segments(s, rule)]
    durations = {c.video_id: c.duration_s for c in composed.clips}
    fl = frame_level(gt, pred, durations, fps=fps)
    dm = temporal_map(gt, pred, CUVA_TIOUS, class_agnostic=True)  # GT labels are the event kinds
    by_kind: dict[str, list[int]] = {}
    for g in gt:
        best = max((tiou((g.start_s, g.end_s), (p.start_s, p.end_s)) for p in pred if p.video_id == g.video_id),
                   default=0.0)
        hit = by_kind.setdefault(g.label, [0, 0])
        hit[0] += best >= 0.5
        hit[1] += 1
    alarmed, seen = {p.video_id for p in pred}, {s.video_id for s in scored}
    free = [c.video_id for c in composed.clips if not c.segments_s and c.video_id in seen]
    flagged = sum(v in alarmed for v in free)
    return {"threshold": rule.threshold, "rule": asdict(rule), "fnr": fl.fnr, "f2": fl.f2,
            "precision": fl.precision, "recall": fl.recall,
            "map": {f"{t:g}": dm.map_at[t] for t in CUVA_TIOUS}, "map_avg": dm.average_map,
            "n_gt": dm.n_gt, "n_pred": dm.n_pred, "hits_at_0.5_by_kind": dict(sorted(by_kind.items())),
            "threat_free_clips": len(free), "threat_free_flagged": flagged,
            "silent_share": 1.0 - flagged / len(free) if free else float("nan")}


def localisation(composed: ComposedSet, scored: Sequence[Scored], rule: DecisionRule | float) -> dict:
    """How the predicted bounds miss the GT events under one rule, which mAP at tIoU 0.5 against 0.1 hides.

    Each GT event is paired with the predicted segment of its clip that overlaps it longest. Errors are
    predicted minus GT, seconds (+: the segment starts or ends late). ``n_joined``: events whose segment
    also overlaps another event of the clip (two events reported as one alarm).
    """
    rule = DecisionRule.of(rule)
    pred = {s.video_id: predicted_segments(s, rule) for s in scored}
    starts, ends, joined, n_gt = [], [], 0, 0
    for clip in composed.clips:
        if clip.video_id not in pred:
            continue
        for gs, ge in clip.segments_s:
            n_gt += 1
            overlap = [(min(ge, p.end_s) - max(gs, p.start_s), p) for p in pred[clip.video_id]]
            length, best = max(overlap, key=lambda o: o[0], default=(0.0, None))
            if best is None or length <= 0:
                continue
            starts.append(best.start_s - gs)
            ends.append(best.end_s - ge)
            joined += any(min(oe, best.end_s) > max(os_, best.start_s)
                          for os_, oe in clip.segments_s if (os_, oe) != (gs, ge))

    def median(x: list[float]) -> float:
        return float(np.median(x)) if x else float("nan")

    return {"n_gt": n_gt, "n_found": len(starts), "n_joined": joined,
            "start_error_s": median(starts), "end_error_s": median(ends),
            "abs_start_error_s": median(np.abs(starts).tolist()), "abs_end_error_s": median(np.abs(ends).tolist())}


def frame_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of per-step scores, independent of any decision rule: the chance that a random step inside
    a threat scores above a random step outside (ties count half). NaN without both kinds of step."""
    y, s = np.asarray(labels, bool), np.asarray(scores, np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return float("nan")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # 1-based, tied scores share their mean rank
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def clip_step_labels(clip: ClipRecord, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, kinds) of one clip's steps: 1 and the event kind inside a GT segment, 0 and '' outside."""
    times_s = np.asarray(times_s)
    y, k = np.zeros(len(times_s)), np.full(len(times_s), "", dtype=object)
    for (s, e), label in zip(clip.segments_s, clip.labels):
        inside = (times_s >= s) & (times_s < e)
        y[inside], k[inside] = 1, label
    return y, k


def step_labels(composed: ComposedSet, scored: Sequence[Scored]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, probabilities, kinds) over every step of every scored clip (``clip_step_labels``)."""
    by_id = {c.video_id: c for c in composed.clips}
    labelled = [clip_step_labels(by_id[sc.video_id], sc.times_s) for sc in scored]
    return (np.concatenate([y for y, _ in labelled]), np.concatenate([sc.prob for sc in scored]),
            np.concatenate([k for _, k in labelled]))


def auc_by_kind(labels: np.ndarray, scores: np.ndarray, kinds: np.ndarray) -> dict:
    """Frame AUC over all steps and per event kind (that kind's steps against every threat-free step)."""
    y = np.asarray(labels) > 0
    return {"auc": frame_auc(y, scores),
            "by_kind": {k: frame_auc(y[(kinds == k) | ~y], np.asarray(scores)[(kinds == k) | ~y])
                        for k in sorted(set(kinds) - {""})}}


def ranking_scores(composed: ComposedSet, scored: Sequence[Scored]) -> dict:
    """``auc_by_kind`` of a model's per-step probabilities on a composed set."""
    return auc_by_kind(*step_labels(composed, scored))


THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.2, 0.91, 0.05), 2))


OBJECTIVE = "(F2 + avg mAP + share of threat-free clips left silent) / 3"


def objective(row: dict) -> float:
    """What rules and warm-up lengths are chosen by (``OBJECTIVE``), from a ``detection_scores`` row; NaN
    counts as 0. One term per target of the default model: F2 for missed threats, average mAP for bounds,
    the silent share for false alarms. Without the third, (F2 + avg mAP) / 2 picked rules at which the fold
    twin flagged 21 of the 22 threat-free validation clips: an alarm on a quiet clip costs F2 and mAP almost
    nothing when the threat clips' alarms score higher."""
    terms = (row["f2"], row["map_avg"], row["silent_share"])
    return sum(0.0 if np.isnan(x) else float(x) for x in terms) / 3.0


def tune_rule(composed: ComposedSet, scored: Sequence[Scored], thresholds: Sequence[float] = THRESHOLDS,
              min_segments_s: Sequence[float] = (1.0,), merge_gaps_s: Sequence[float] = (1.0,),
              keep_thresholds: Sequence[float | None] = (None,)) -> tuple[DecisionRule, list]:
    """The decision rule that maximises ``objective`` on ``composed`` (a training or validation set: never
    call this with held-out data). A keep threshold (hysteresis) is tried only below each threshold; None
    is none. Ties go to the higher threshold (fewer false alarms), then to the longer minimum segment and
    the larger merge gap (fewer, longer segments), then to the less widening (a higher keep level)."""
    rules = [DecisionRule(float(t), float(m), float(g), None if k is None else float(k))
             for t in thresholds for m in min_segments_s for g in merge_gaps_s for k in keep_thresholds
             if k is None or k < t]
    table = [detection_scores(composed, scored, r) for r in rules]
    best = max(range(len(table)), key=lambda i: (round(objective(table[i]), 6), rules[i].threshold,
                                                 rules[i].min_segment_s, rules[i].merge_gap_s,
                                                 rules[i].threshold if rules[i].keep_threshold is None
                                                 else rules[i].keep_threshold))
    return rules[best], table


def tune_threshold(composed: ComposedSet, scored: Sequence[Scored],
                   candidates: Sequence[float] = THRESHOLDS) -> tuple[float, list]:
    """``tune_rule`` over the threshold alone (1 s minimum segment and merge gap)."""
    rule, table = tune_rule(composed, scored, candidates)
    return rule.threshold, table


def gate_balance(scored: Sequence[Scored]) -> dict:
    """Mean R per fine expert and mean coarse share 1 - G over every step of every video."""
    g = np.concatenate([s.gates for s in scored], axis=0)  # (sum T, 4)
    return {name: round(float(v), 4) for name, v in zip(("R_hpe", "R_ore", "R_vbe", "coarse_share"), g.mean(axis=0))}


def false_alarms(scored: Sequence[Scored], rule: DecisionRule | float) -> dict:
    """Predicted segments on threat-free footage: every one is a false alarm."""
    per_video = {s.video_id: {"duration_s": round(s.duration_s, 2),
                              "false_alarms": [[round(x.start_s, 1), round(x.end_s, 1)]
                                               for x in predicted_segments(s, rule)],
                              "max_prob": round(float(s.prob.max()), 4)} for s in scored}
    for v in per_video.values():
        v["flagged_s"] = round(sum(e - s for s, e in v["false_alarms"]), 1)
    total_s = sum(s.duration_s for s in scored)
    n = sum(len(v["false_alarms"]) for v in per_video.values())
    flagged = sum(v["flagged_s"] for v in per_video.values())
    return {"videos": per_video, "total_s": round(total_s, 1), "n_false_alarms": n, "flagged_s": round(flagged, 1),
            "flagged_fraction": flagged / total_s if total_s else float("nan"),
            "per_hour": n * 3600.0 / total_s if total_s else float("nan"),
            "per_10_min": n * 600.0 / total_s if total_s else float("nan")}


# ------------------------------------------------------------------------------------ event kinds


def kind_videos(model, composed_sets: Sequence[ComposedSet], evidences: dict) -> list[tuple[object, np.ndarray]]:
    """(ExpertInputs, per-step kind targets) of every clip, for ``uprm.training.kinds.fit_kind_head``."""
    from uprm.featurize import featurize
    from uprm.training.kinds import kind_targets

    out = []
    for composed in composed_sets:
        for c in composed.clips:
            ev = evidences[c.path]
            events = [(s, e, k) for (s, e), k in zip(c.segments_s, c.labels)]
            out.append((featurize(ev, model.config), kind_targets(ev.times_s, events, model.config.event_kinds)))
    return out


def fit_kinds(model, composed_sets: Sequence[ComposedSet], evidences: dict, settings=None):
    """Give ``model`` a kind head over the compositor's threat kinds, fitted on these clips' GT events
    (the fusion's weights do not change); returns the ``KindFitResult``."""
    from uprm.compose.events import THREAT_KINDS
    from uprm.training.kinds import KindFitSettings, fit_kind_head

    model.with_kind_head(THREAT_KINDS)
    return fit_kind_head(model, kind_videos(model, composed_sets, evidences), settings or KindFitSettings())


def category_scores(composed: ComposedSet, evidences: dict, scored: Sequence[Scored], kinds: Sequence[str],
                    rule: DecisionRule | float) -> dict:
    """How often the category is the GT event's kind, per GT threat. ``at_gt_bounds``: the kind head over
    the GT event's own steps (how well it tells kinds apart, whatever the segments); ``shown``: what the
    analysis shows for the predicted segment overlapping the event most (the kind head's category, or
    the evidence rules' without a kind head); ``rules``: ``category_from_evidence`` on that segment.
    Each: right, of (events with a category), and the confusion {GT kind: {category: n}}."""
    from uprm.analysis import category_from_evidence, category_from_kinds, segment_category, summarize_evidence
    from uprm.training.kinds import event_steps

    by_id = {s.video_id: s for s in scored}
    kinds = tuple(kinds)
    rows = []
    for c in composed.clips:
        sc, ev = by_id.get(c.video_id), evidences[c.path]
        if sc is None:
            continue
        cuts = predicted_cuts(sc, rule)
        for (gs, ge), kind in zip(c.segments_s, c.labels):
            row = {"kind": kind, "at_gt_bounds": None, "shown": None, "rules": None}
            if sc.kind_prob is not None:
                row["at_gt_bounds"] = category_from_kinds(sc.kind_prob[event_steps(sc.times_s, sc.step_s, gs, ge)],
                                                          kinds)
            if (match := _matched_segment([seg for seg, _ in cuts], gs, ge)) is not None:
                p, steps = cuts[match]
                seg_ev = summarize_evidence(ev, steps, sc.gates[steps[0]:steps[-1] + 1])
                row["rules"] = category_from_evidence(seg_ev, p.end_s - p.start_s)
                row["shown"] = segment_category(seg_ev, p.end_s - p.start_s, None if sc.kind_prob is None
                                                else sc.kind_prob[steps[0]:steps[-1] + 1], kinds)
            rows.append(row)

    def tally(key: str) -> dict:
        known = [r for r in rows if r[key] is not None]
        return {"right": sum(r[key] == r["kind"] for r in known), "of": len(known),
                "confusion": {k: dict(sorted(Counter(r[key] for r in known if r["kind"] == k).items()))
                              for k in sorted({r["kind"] for r in known})}}

    return {"n_events": len(rows), **{key: tally(key) for key in ("at_gt_bounds", "shown", "rules")}}


def _matched_segment(preds: Sequence, start_s: float, end_s: float) -> int | None:
    """Index of the predicted segment overlapping the GT event (start_s, end_s) most (tIoU), or None."""
    from uprm.segments import tiou

    overlaps = [tiou((start_s, end_s), (p.start_s, p.end_s)) for p in preds]
    return int(np.argmax(overlaps)) if overlaps and max(overlaps) > 0 else None


def cause_pairs(model, composed: ComposedSet, evidences: dict, scored: dict[str, Scored], rule: DecisionRule | float,
                max_new_tokens: int = 48) -> list[dict]:
    """One (GT cause, generated cause) pair per GT threat: the cause the analysis pipeline writes for the
    predicted segment that overlaps the GT segment most (tIoU), written as ``uprm.analysis`` writes it
    (``explain_steps``); "" when no predicted segment overlaps it (a miss scores 0)."""
    from uprm.analysis import explain_steps
    from uprm.featurize import featurize
    from uprm.instructions import attribute_answer

    pairs = []
    for c in composed.clips:
        if not c.segments_s:
            continue
        sc, ev = scored[c.video_id], evidences[c.path]
        cuts = predicted_cuts(sc, rule)
        preds = [seg for seg, _ in cuts]
        inputs = featurize(ev, model.config)
        written: dict[int, str] = {}
        for (gs, ge), cause, kind in zip(c.segments_s, c.causes, c.labels):
            match = _matched_segment(preds, gs, ge)
            text = ""
            if match is not None:
                if match not in written:
                    steps = cuts[match][1]
                    written[match] = explain_steps(model, inputs, steps[0], steps[-1], max_new_tokens)
                text = written[match]
            pairs.append({"video_id": c.video_id, "gt_segment_s": [gs, ge], "kind": kind,
                          "reference": attribute_answer(cause),
                          "generated": text, "matched_segment_s": None if match is None else
                          [round(preds[match].start_s, 2), round(preds[match].end_s, 2)]})
    return pairs


def cause_kinds(pairs: Sequence[dict]) -> dict:
    """Whether each generated cause (``cause_pairs``) names its event's kind, by the compositor's wording
    (``uprm.compose.events.kinds_named``): "right" names it alone, "mixed" names it among others,
    "wrong" names only other kinds, "unnamed" names none (or is empty: no segment). Word overlap
    (ROUGE-L, BLEU, cosine) cannot tell these apart: every cause shares the attribute template."""
    from uprm.compose.events import kinds_named

    out = Counter()
    for p in pairs:
        named = kinds_named(p["generated"])
        out["right" if named == {p["kind"]} else "mixed" if p["kind"] in named else "wrong" if named
            else "unnamed"] += 1
    return {"n": len(pairs), **{k: out[k] for k in ("right", "mixed", "wrong", "unnamed")}}


def text_metrics(pairs: Sequence[dict]) -> dict:
    from uprm.metrics import text_scores

    if not pairs:
        return {"rouge_l": float("nan"), "bleu": float("nan"), "sb_cosine": float("nan"), "n_pairs": 0}
    ts = text_scores([p["reference"] for p in pairs], [p["generated"] for p in pairs])
    return {"rouge_l": ts.rouge_l, "bleu": ts.bleu, "sb_cosine": ts.sb_cosine, "n_pairs": ts.n_pairs}
