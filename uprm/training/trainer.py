"""The training loop: AdamW + warm-up schedule, gradient accumulation, atomic checkpoints, exact resume.

    L = L_ce + alpha * L_z (+ threat_loss_weight * L_threat where a video's threat intervals are known)

as ``UPRMModel.forward`` defines it. Runs through Hugging Face ``accelerate``, so the same code runs on
one CPU, one GPU, or many (``accelerate launch -m uprm train ...``; see ``uprm.training.cli``).

Batches: ``batch_size`` is the paper's batch (8): examples per optimizer step over all processes and
accumulation steps together; each process runs ``batch_size / (processes * grad_accum)`` examples per
forward. The data order is a seeded permutation per epoch, so a step number alone says which examples
it saw; a checkpoint holds the trainable weights (UPRM modules + LoRA; the frozen LM is rebuilt from the
config), optimizer, scheduler, every process's RNG state, the step and the current epoch's data order
(resume uses the saved order, not a recomputed one), and is written to a temporary
folder that is renamed into place, so a killed run never leaves a half checkpoint behind. ``resume``
continues from the last complete checkpoint and ends in the same state as an uninterrupted run.

Per step, ``train_log.jsonl`` in the output folder gets the losses (total, L_ce, L_z, threat), the
learning rate, the gradient norm and the gate balance: mean router weight per expert over valid steps
(R_hpe, R_ore, R_vbe and the coarse share 1 - G), the entropy of those four means normalised to sum 1
(``gate_entropy``, nats; ``gate_balance`` = entropy / ln 4, 1 = perfectly even) and their max / min ratio.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from uprm.training.augment import MAX_STRENGTH, augment_inputs
from uprm.training.data import TrainingExample, step_targets
from uprm.training.errors import ResumeError, TrainingCancelled, TrainingDataError
from uprm.training.features import FeatureSource, VideoFeatures

LOG_FILE = "train_log.jsonl"
SUMMARY_FILE = "training_summary.json"
CHECKPOINTS = "checkpoints"
LATEST = "latest"
SCHEDULERS = ("cosine", "linear", "constant")
PRECISIONS = ("no", "bf16", "fp16")
ABLATIONS = ("no_hpe", "no_ore", "no_vbe", "no_upe", "no_ptr")
GATE_NAMES = ("hpe", "ore", "vbe", "coarse")
CHECKPOINT_FORMAT = 1
Progress = Callable[[str, float], None]
Cancel = threading.Event | Callable[[], bool] | None


@dataclass(frozen=True)
class TrainSettings:
    """Paper values as defaults (AdamW, lr 2e-5, warm-up ratio 0.03, batch 8, one epoch, alpha 0.05)."""

    stage: int = 2  # 1 = physical-world pre-tuning, 2 = DeepSVU instruction tuning (bookkeeping only)
    lr: float = 2e-5
    # lr of UPRM's own modules (experts, router, threat head); None = lr. The language model's adapter and
    # the projector always take lr: an instruction phase after a threat warm-up may teach the LM at a
    # high rate while moving the detector that the warm-up trained only a little.
    fusion_lr: float | None = None
    warmup_ratio: float = 0.03
    batch_size: int = 8  # examples per optimizer step, over all processes and accumulation steps
    grad_accum: int = 1
    epochs: int = 1
    alpha: float | None = None  # weight of L_z; None keeps the model config's (0.05)
    expert_dropout: float | None = None  # UPRMConfig.expert_dropout; None keeps the model config's (0)
    augment: float = 0.0  # evidence augmentation strength (uprm.training.augment; 0 = off, 1 = its defaults)
    max_steps: int | None = None  # stop after this many optimizer steps (cycling the data if needed)
    ablation: tuple[str, ...] = ()  # any of ABLATIONS, switched on the model before training
    seed: int = 0
    scheduler: str = "cosine"  # after warm-up: cosine (LLaVA's recipe), linear decay, or constant
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # 0 = no clipping
    checkpoint_every: int = 50  # optimizer steps between checkpoints (the last step always gets one)
    keep_checkpoints: int = 2
    log_every: int = 10  # terminal lines every N steps (the JSONL log gets every step)
    num_threads: int | None = None  # torch CPU threads for this run (None: leave as is)
    mixed_precision: str = "no"  # "bf16" / "fp16" autocast through accelerate (GPUs; bf16 also on CPU)
    show_progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "ablation", tuple(self.ablation))
        if self.stage not in (1, 2):
            raise TrainingDataError(f"stage must be 1 (pre-tuning) or 2 (instruction tuning), got {self.stage}")
        for name in ("batch_size", "grad_accum", "epochs", "checkpoint_every", "keep_checkpoints", "log_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise TrainingDataError(f"{name} must be a positive integer, got {v!r}")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise TrainingDataError(f"max_steps must be a positive integer or None, got {self.max_steps!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise TrainingDataError(f"lr must be a positive number, got {self.lr}")
        if self.fusion_lr is not None and not (self.fusion_lr >= 0 and math.isfinite(self.fusion_lr)):
            raise TrainingDataError(f"fusion_lr must be a number >= 0 (0 keeps UPRM's modules as they are), "
                                    f"got {self.fusion_lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise TrainingDataError(f"warmup_ratio must lie in [0, 1), got {self.warmup_ratio}")
        if self.alpha is not None and not (self.alpha >= 0 and math.isfinite(self.alpha)):
            raise TrainingDataError(f"alpha must be >= 0, got {self.alpha}")
        if self.expert_dropout is not None and not 0 <= self.expert_dropout < 1:
            raise TrainingDataError(f"expert_dropout must lie in [0, 1), got {self.expert_dropout}")
        if not 0 <= self.augment <= MAX_STRENGTH:
            raise TrainingDataError(f"augment must lie in [0, {MAX_STRENGTH:g}] (0 = off, 1 = the default "
                                    f"magnitudes of uprm.training.augment), got {self.augment}")
        if self.scheduler not in SCHEDULERS:
            raise TrainingDataError(f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        if self.mixed_precision not in PRECISIONS:
            raise TrainingDataError(f"mixed_precision must be one of {PRECISIONS}, got {self.mixed_precision!r}")
        unknown = sorted(set(self.ablation) - set(ABLATIONS))
        if unknown:
            raise TrainingDataError(f"unknown ablation(s) {unknown}; choose from {ABLATIONS} (w/o pre-tuning: "
                                    "train stage 2 without --init from a stage-1 run)")
        if self.batch_size % self.grad_accum:
            raise TrainingDataError(f"batch_size ({self.batch_size}) must be a multiple of grad_accum "
                                    f"({self.grad_accum}): each accumulation step takes an equal share")
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            raise TrainingDataError("weight_decay and max_grad_norm must be >= 0")
        if self.num_threads is not None and self.num_threads < 1:
            raise TrainingDataError(f"num_threads must be >= 1, got {self.num_threads}")

    def schedule_fields(self) -> dict[str, Any]:
        """What decides the optimisation trajectory: a resumed run must agree on all of it."""
        d = asdict(self)
        for k in ("checkpoint_every", "keep_checkpoints", "log_every", "num_threads", "show_progress"):
            d.pop(k)
        d["ablation"] = list(self.ablation)
        if self.expert_dropout is None:  # added later: runs begun before it still resume
            d.pop("expert_dropout")
        if not self.augment:
            d.pop("augment")
        return d


@dataclass
class TrainResult:
    out_dir: Path  # holds the final model (build_model(out_dir) reads it), the log and checkpoints
    steps: int
    total_steps: int
    examples_seen: int
    resumed_from_step: int | None
    elapsed_s: float
    final: dict[str, float] = field(default_factory=dict)  # mean of the last steps' log values
    log_path: Path | None = None


@dataclass
class Batch:
    inputs: Any  # ExpertInputs (B, T)
    instructions: list | None  # one Instruction per video, or None (threat-only examples)
    targets: Any  # (B, T) float
    has_target: Any  # (B,) bool: the video's threat intervals are known
    size: int


# ------------------------------------------------------------------------------------------- batches


def example_inputs(example: TrainingExample, feats: VideoFeatures):
    """The example's ExpertInputs (sliced to its span, if any) and per-step targets (or None)."""
    import torch

    x = feats.inputs
    times = x.times_s[0].tolist()
    valid = x.step_mask[0].tolist()
    if example.span_s is not None:
        lo, hi = example.span_s[0] - feats.step_s / 2, example.span_s[1] + feats.step_s / 2
        inside = [i for i, (t, ok) in enumerate(zip(times, valid)) if ok and lo <= t <= hi]
        if not inside:  # a span between two steps: the step nearest its middle
            mid = sum(example.span_s) / 2
            inside = [min((i for i, ok in enumerate(valid) if ok), key=lambda i: abs(times[i] - mid))]
        x = x.slice_steps(inside[0], inside[-1] + 1)
        times = times[inside[0]:inside[-1] + 1]
    targets = None
    if example.threat_intervals_s is not None:
        targets = torch.tensor(step_targets(times, feats.step_s, example.threat_intervals_s), dtype=torch.float32)
    return x, targets


def make_batch(examples: Sequence[TrainingExample], features: Callable[[TrainingExample], VideoFeatures]) -> Batch:
    import torch

    from uprm.model import ExpertInputs, Instruction

    parts = [example_inputs(ex, features(ex)) for ex in examples]
    inputs = ExpertInputs.collate([x for x, _ in parts])
    targets = torch.zeros(inputs.batch_size, inputs.num_steps)
    has = torch.zeros(inputs.batch_size, dtype=torch.bool)
    for b, (_, tg) in enumerate(parts):
        if tg is not None:
            targets[b, : len(tg)] = tg
            has[b] = True
    instructions = None
    if examples[0].question is not None:
        instructions = [Instruction(ex.question, ex.answer, ex.context) for ex in examples]
    return Batch(inputs, instructions, targets, has, len(examples))


def batch_loss(model, core, batch: Batch):
    """(loss, UPRMOutput) of one batch. ``model`` may be the DDP-wrapped one; ``core`` is unwrapped."""
    from uprm.model.loss import threat_loss

    labels = core.tokenize_instructions(batch.inputs, batch.instructions) if batch.instructions else None
    if bool(batch.has_target.all()):
        out = model(batch.inputs, threat_targets=batch.targets, labels=labels)
        return out.loss, out
    out = model(batch.inputs, labels=labels)
    loss = out.loss if out.loss is not None else core.config.alpha * out.loss_z
    if bool(batch.has_target.any()):
        # only the videos whose intervals are known get the threat term (the model's own loss function)
        out.loss_threat = threat_loss(out.threat_logits, batch.targets.to(out.threat_logits.device),
                                      out.step_mask & batch.has_target.to(out.step_mask.device)[:, None])
        loss = loss + core.config.threat_loss_weight * out.loss_threat
    return loss, out


def gate_stats(sums: Sequence[float], count: float) -> dict[str, float]:
    """Mean gate weight per expert and how even they are (see the module docstring)."""
    means = [s / max(count, 1e-9) for s in sums]
    total = sum(means)
    p = [m / total for m in means] if total > 0 else [0.25] * 4
    entropy = -sum(q * math.log(q) for q in p if q > 0)
    out = {f"gate_{n}": m for n, m in zip(GATE_NAMES, means)}
    out["gate_entropy"] = entropy
    out["gate_balance"] = entropy / math.log(len(p))
    out["gate_max_min"] = max(means) / min(means) if min(means) > 0 else math.inf
    return out


# ------------------------------------------------------------------------------------------- helpers


def _is_cancelled(cancel: Cancel) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def data_fingerprint(examples: Sequence[TrainingExample]) -> str:
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([ex.video_id, ex.video_path, ex.question, ex.answer, ex.context, ex.kind,
                             ex.threat_intervals_s, ex.span_s], default=list).encode())
    return h.hexdigest()[:16]


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    import torch

    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


LM_SIDE = ("lm.", "projector.")  # parameter name prefixes trained at TrainSettings.lr whatever fusion_lr is


def _param_groups(model, settings: TrainSettings) -> list[dict]:
    """The trainable parameters, UPRM's own modules at fusion_lr when it is set."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if settings.fusion_lr is None:
        return [{"params": [p for _, p in trainable]}]
    lm = [p for n, p in trainable if n.startswith(LM_SIDE)]
    fusion = [p for n, p in trainable if not n.startswith(LM_SIDE)]
    return [g for g in ({"params": lm}, {"params": fusion, "lr": settings.fusion_lr}) if g["params"]]


def _make_scheduler(optimizer, kind: str, warmup: int, total: int):
    from transformers import (
        get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup,
    )

    if kind == "cosine":
        return get_cosine_schedule_with_warmup(optimizer, warmup, total)
    if kind == "linear":
        return get_linear_schedule_with_warmup(optimizer, warmup, total)
    return get_constant_schedule_with_warmup(optimizer, warmup)


def _rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos,
                                                      has_gauss, gauss],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def trainable_state(model) -> dict[str, Any]:
    """UPRM's own weights and the LoRA adapter: everything that trains (the base LM is rebuilt)."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
            if k in names or not k.startswith("lm.")}


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(data, indent=1) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _torch_save_synced(obj: Any, path: Path) -> None:
    import torch

    with open(path, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())


def checkpoint_dirs(out_dir: Path) -> list[Path]:
    """Complete checkpoints (state.json present), oldest first."""
    root = out_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-")
                  and not p.name.endswith(".partial") and (p / "state.json").is_file())


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    out_dir = Path(out_dir)
    pointer = out_dir / CHECKPOINTS / LATEST
    if pointer.is_file():
        cand = out_dir / CHECKPOINTS / pointer.read_text().strip()
        if (cand / "state.json").is_file():
            return cand
    found = checkpoint_dirs(out_dir)  # the pointer is written last: a crash in between leaves it stale
    return found[-1] if found else None


def _truncate_log(path: Path, step: int) -> None:
    """Drop step records after ``step`` (a killed run may have logged steps it never checkpointed)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by the kill
        if rec.get("step") is None or rec["step"] <= step:
            keep.append(line)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(k + "\n" for k in keep), encoding="utf-8")
    os.replace(tmp, path)


def _clean(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), 6)


# ------------------------------------------------------------------------------------------- training


def train(model, examples: Sequence[TrainingExample], out_dir: str | Path,
          settings: TrainSettings | None = None, features: FeatureSource | None = None, *,
          resume: bool = False, progress: Progress | None = None, cancel: Cancel = None,
          run_info: dict[str, Any] | None = None) -> TrainResult:
    """Train ``model`` (a UPRMModel, or a preset / checkpoint folder for ``build_model``) on ``examples``.

    features: where each video's ExpertInputs come from (default: the perception cache via
    ``PerceptionFeatures``); computed once per video before the first step.
    progress(stage, fraction): "features" then "train"; cancel: a threading.Event or a callable, checked
    before every forward (raises TrainingCancelled). run_info: extra JSON written to the summary.
    """
    import torch

    settings = settings or TrainSettings()
    examples = list(examples)
    if not examples:
        raise TrainingDataError("no training examples: give at least one instruction file with conversations")
    with_q = sum(ex.question is not None for ex in examples)
    if 0 < with_q < len(examples):
        raise TrainingDataError(f"{with_q} of {len(examples)} examples have a question: train conversation "
                                "examples and threat-only examples in separate runs")
    empty = [ex.video_id for ex in examples if ex.question is None and ex.threat_intervals_s is None]
    if empty:
        raise TrainingDataError(f"threat-only examples need known threat intervals; {empty[:3]} have none")
    out_dir = Path(out_dir)
    say = progress or (lambda stage, frac: None)
    threads_before = torch.get_num_threads()
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    try:
        return _train(model, examples, out_dir, settings, features, resume, say, cancel, run_info or {})
    finally:
        torch.set_num_threads(threads_before)


def _train(model, examples, out_dir: Path, settings: TrainSettings, features, resume: bool, say: Progress,
           cancel: Cancel, run_info: dict) -> TrainResult:
    import torch
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from safetensors.torch import load_file, save_file
    from tqdm.auto import tqdm

    from uprm.model import build_model
    from uprm.model.config import Ablation

    t_start = time.perf_counter()
    model_source = model if isinstance(model, (str, Path)) else getattr(model, "model_id", "uprm")
    if isinstance(model, (str, Path)):
        seed_everything(settings.seed)  # peft draws LoRA's A matrices from the global RNG
        model = build_model(model)
    if settings.ablation:
        model.set_ablation(Ablation(**{name: True for name in settings.ablation}))
    if settings.alpha is not None:
        model.config = replace(model.config, alpha=float(settings.alpha))
    if settings.expert_dropout is not None:
        model.config = replace(model.config, expert_dropout=float(settings.expert_dropout))

    # DDP must tolerate experts that an ablation (or a batch without evidence) leaves unused
    # cpu=True without CUDA: accelerate then also runs torchrun / accelerate-launch jobs on CPUs (gloo)
    accelerator = Accelerator(mixed_precision=settings.mixed_precision, cpu=not torch.cuda.is_available(),
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    main = accelerator.is_main_process
    world, rank = accelerator.num_processes, accelerator.process_index
    per_forward, rest = divmod(settings.batch_size, world * settings.grad_accum)
    if rest or not per_forward:
        raise TrainingDataError(f"batch_size {settings.batch_size} does not split evenly over {world} process(es) "
                                f"x {settings.grad_accum} accumulation step(s)")

    # features: every video once, before any random number is drawn for training (perception runs and
    # fills its disk cache here; batches then ask the source again, which serves them from memory)
    if features is None:
        from uprm.training.features import PerceptionFeatures

        features = PerceptionFeatures(model.config)
    keys = list(dict.fromkeys(ex.key for ex in examples))
    by_key = {ex.key: ex for ex in examples}
    for i, key in enumerate(keys):
        if _is_cancelled(cancel):
            raise TrainingCancelled("features")
        say("features", i / len(keys))
        features(by_key[key].video_id, by_key[key].video_path)
    say("features", 1.0)

    def feats_of(ex: TrainingExample) -> VideoFeatures:
        return features(ex.video_id, ex.video_path)

    n = len(examples)
    steps_per_epoch = n // settings.batch_size if world > 1 else math.ceil(n / settings.batch_size)
    if steps_per_epoch < 1:
        raise TrainingDataError(f"{n} example(s) make no full batch of {settings.batch_size} over {world} processes")
    total = settings.max_steps or settings.epochs * steps_per_epoch
    warmup = math.ceil(settings.warmup_ratio * total)
    fingerprint = {"data": data_fingerprint(examples), "examples": n, "settings": settings.schedule_fields(),
                   "model": str(model_source), "world": world}

    model.train()
    groups = _param_groups(model, settings)
    params = [p for g in groups for p in g["params"]]  # for gradient clipping
    optimizer = torch.optim.AdamW(groups, lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = _make_scheduler(optimizer, settings.scheduler, warmup, total)  # stepped by us, once per step
    core = model
    model, optimizer = accelerator.prepare(model, optimizer)

    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / LOG_FILE
    start_step, resumed_from = 0, None
    orders: dict[int, list[int]] = {}  # epoch -> permutation of the examples (seeded: see epoch_order)
    if resume:
        ckpt = latest_checkpoint(out_dir)
        if ckpt is None:
            raise ResumeError(f"--resume: {out_dir} holds no complete checkpoint; start without --resume")
        state = json.loads((ckpt / "state.json").read_text())
        if state.get("fingerprint") != fingerprint:
            diff = sorted(k for k in fingerprint if state.get("fingerprint", {}).get(k) != fingerprint[k])
            raise ResumeError(f"--resume: the checkpoint in {ckpt} was made with different {', '.join(diff)}; "
                              "resume with the same data, model and settings, or train into a new --out folder")
        weights = load_file(str(ckpt / "trainable.safetensors"))
        expected = trainable_state(core)
        if set(weights) != set(expected) or any(weights[k].shape != expected[k].shape for k in expected):
            raise ResumeError(f"{ckpt}: its weights do not match the model (missing or extra tensors)")
        core.load_state_dict(weights, strict=False)  # the key check above is the strict one
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=True))
        scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", map_location="cpu", weights_only=True))
        rng_file = ckpt / f"rng-{rank}.pt"
        if not rng_file.is_file():
            raise ResumeError(f"{ckpt} has no RNG state for process {rank}: resume with the same number of processes")
        _set_rng_state(torch.load(rng_file, weights_only=True))
        start_step = resumed_from = int(state["step"])
        saved = state.get("data_order") or {}
        if saved.get("permutation") is not None:  # the order the run was using, even if randperm changed since
            orders = {int(saved["epoch"]): [int(i) for i in saved["permutation"]]}
        if main:
            _truncate_log(log_path, start_step)
    else:
        if latest_checkpoint(out_dir) is not None:
            raise ResumeError(f"{out_dir} already holds checkpoints of a run: pass --resume to continue it, "
                              "or choose a new --out folder")
        seed_everything(settings.seed)
        if main:
            log_path.write_text("")
    accelerator.wait_for_everyone()

    def log(rec: dict) -> None:
        if main:
            with open(log_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")

    log({"event": "resume" if resume else "start", "step": None, "from_step": start_step, "total_steps": total,
         "examples": n, "videos": len(keys), "stage": settings.stage, "processes": world,
         "settings": settings.schedule_fields(), "model": str(model_source), "time": time.time()})

    def save_checkpoint(step: int) -> None:
        root = out_dir / CHECKPOINTS
        final = root / f"step-{step:07d}"
        tmp = root / f"step-{step:07d}.partial"
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        _torch_save_synced(_rng_state(), tmp / f"rng-{rank}.pt")
        if main:
            save_file(trainable_state(core), str(tmp / "trainable.safetensors"))
            _torch_save_synced(optimizer.state_dict(), tmp / "optimizer.pt")
            _torch_save_synced(scheduler.state_dict(), tmp / "scheduler.pt")
        accelerator.wait_for_everyone()
        if main:
            epoch, pos = divmod(step, steps_per_epoch)  # where the next step reads
            order = orders[epoch] if epoch in orders else epoch_order(n, settings.seed, epoch)
            _write_json_atomic(tmp / "state.json", {
                "format": CHECKPOINT_FORMAT, "step": step, "total_steps": total, "fingerprint": fingerprint,
                "data_order": {"epoch": epoch, "next_batch": pos, "batch_size": settings.batch_size,
                               "permutation": order},
                "time": time.time()})
            _fsync_dir(tmp)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)  # the checkpoint appears whole or not at all
            _fsync_dir(root)
            _write_json_atomic_text(root / LATEST, final.name)
            for old in checkpoint_dirs(out_dir)[:-settings.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
            log({"event": "checkpoint", "step": None, "at_step": step, "path": str(final)})
        accelerator.wait_for_everyone()

    bar = tqdm(total=total, initial=start_step, desc=f"train stage {settings.stage}", unit="step",
               disable=not (settings.show_progress and main), dynamic_ncols=True)
    recent: list[dict] = []
    examples_seen = start_step * settings.batch_size
    try:
        for step in range(start_step, total):
            t0 = time.perf_counter()
            epoch, pos = divmod(step, steps_per_epoch)
            if epoch not in orders:
                orders = {epoch: epoch_order(n, settings.seed, epoch)}
            batch_idx = orders[epoch][pos * settings.batch_size:(pos + 1) * settings.batch_size]
            sums = {"loss": 0.0, "loss_ce": 0.0, "loss_z": 0.0, "loss_threat": 0.0}
            seen = {"loss_ce": 0.0, "loss_threat": 0.0}
            gate_sums, gate_count = [0.0] * 4, 0.0
            model.train()
            for a in range(settings.grad_accum):
                if _is_cancelled(cancel):
                    raise TrainingCancelled("train", step)
                k = a * world + rank
                micro = batch_idx[k * per_forward:(k + 1) * per_forward]
                if not micro:
                    continue  # the last, partial batch of a single-process run
                weight = len(micro) / len(batch_idx) * world  # DDP averages over processes
                batch = make_batch([examples[i] for i in micro], feats_of)
                batch.inputs = batch.inputs.to(accelerator.device)
                if settings.augment:
                    batch.inputs = augment_inputs(batch.inputs, settings.augment)
                sync = (a == settings.grad_accum - 1) or world == 1
                ctx = contextlib.nullcontext() if sync else accelerator.no_sync(model)
                with ctx, accelerator.autocast():
                    loss, out = batch_loss(model, core, batch)
                    accelerator.backward(loss * weight)
                share = len(micro) / len(batch_idx)
                sums["loss"] += float(loss.detach()) * share
                sums["loss_z"] += float(out.loss_z.detach()) * share
                if out.loss_ce is not None:
                    sums["loss_ce"] += float(out.loss_ce.detach()) * share
                    seen["loss_ce"] += share
                if out.loss_threat is not None:
                    sums["loss_threat"] += float(out.loss_threat.detach()) * share
                    seen["loss_threat"] += share
                with torch.no_grad():
                    sm = out.step_mask
                    g = torch.cat([out.router_weights, out.coarse_share.unsqueeze(-1)], dim=-1)[sm]  # (N, 4)
                    gate_sums = [s + float(v) for s, v in zip(gate_sums, g.float().sum(0))]
                    gate_count += int(sm.sum())
            grad_norm = None
            if settings.max_grad_norm > 0:
                grad_norm = float(accelerator.clip_grad_norm_(params, settings.max_grad_norm))
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            examples_seen += len(batch_idx)

            if world > 1:  # each process holds its share of the batch: sums over processes are the batch's
                vec = torch.tensor([*sums.values(), *seen.values(), *gate_sums, gate_count], device=accelerator.device,
                                   dtype=torch.float64)
                vals = accelerator.reduce(vec, reduction="sum").tolist()
                sums = dict(zip(sums, vals[:4]))
                seen = dict(zip(seen, vals[4:6]))
                gate_sums, gate_count = vals[6:10], vals[10]
            dt = time.perf_counter() - t0
            rec = {"step": step + 1, "epoch": epoch, "lr": lr, "loss": sums["loss"],
                   "loss_ce": sums["loss_ce"] / seen["loss_ce"] if seen["loss_ce"] else None,
                   "loss_z": sums["loss_z"],
                   "loss_threat": sums["loss_threat"] / seen["loss_threat"] if seen["loss_threat"] else None,
                   "grad_norm": grad_norm, **gate_stats(gate_sums, gate_count),
                   "examples": len(batch_idx), "examples_per_s": len(batch_idx) / dt, "time_s": dt}
            rec = {k: (_clean(v) if isinstance(v, float) else v) for k, v in rec.items()}
            log(rec)
            recent = (recent + [rec])[-5:]
            bar.update(1)
            bar.set_postfix(loss=f"{sums['loss']:.3f}", z=f"{sums['loss_z']:.3f}",
                            bal=f"{rec['gate_balance'] or 0:.2f}", refresh=False)
            if main and settings.show_progress and ((step + 1) % settings.log_every == 0 or step + 1 == total):
                bar.write(_log_line(rec))
            say("train", (step + 1) / total)
            if (step + 1) % settings.checkpoint_every == 0 or step + 1 == total:
                save_checkpoint(step + 1)
    finally:
        bar.close()

    if main:
        core.save_pretrained(out_dir)
    final = {}
    for key in ("loss", "loss_ce", "loss_z", "loss_threat", "gate_balance"):
        vals = [r[key] for r in recent if r.get(key) is not None]
        if vals:
            final[key] = sum(vals) / len(vals)
    result = TrainResult(out_dir, total, total, examples_seen, resumed_from, time.perf_counter() - t_start,
                         final, log_path)
    if main:
        _write_json_atomic(out_dir / SUMMARY_FILE, {
            "stage": settings.stage, "model": str(model_source), "steps": total, "examples": n,
            "videos": len(keys), "examples_seen": examples_seen, "resumed_from_step": resumed_from,
            "elapsed_s": round(result.elapsed_s, 3), "final": final, "settings": settings.schedule_fields(),
            "data_fingerprint": fingerprint["data"], "config": core.config.to_dict(), **run_info})
        log({"event": "end", "step": None, "steps": total, "elapsed_s": round(result.elapsed_s, 3)})
    accelerator.wait_for_everyone()
    return result


def _write_json_atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _log_line(rec: dict) -> str:
    def f(v, spec=".4f"):
        return "-" if v is None else format(v, spec)

    gates = " ".join(f"{n}={f(rec[f'gate_{n}'], '.2f')}" for n in GATE_NAMES)
    return (f"step {rec['step']}: loss {f(rec['loss'])} (ce {f(rec['loss_ce'])}, z {f(rec['loss_z'])}, "
            f"threat {f(rec['loss_threat'])}) lr {f(rec['lr'], '.2e')} | gates {gates} "
            f"balance {f(rec['gate_balance'], '.3f')} | {f(rec['examples_per_s'], '.2f')} ex/s")
