"""Training figures on this machine: prints numbers, asserts nothing.

    python benchmarks/bench_training.py [--steps 4] [--loop-videos 20] [--skip-loop] [--skip-gates]

1. Throughput of the `small` config (SmolLM2-135M + LoRA, UPRM modules at full size): examples/s of
   full training steps (forward, backward, AdamW) on inputs of a 10 s video at 2 steps/s with the paper's
   three instructions, batch 8 as micro-batches of 2 with gradient accumulation; peak resident memory.
2. The correction loop with `small` on N corrected videos: N clips of 4 s cut from vtest.avi, all
   front-ends on (perception cached in a fresh folder: its cost is in the first run only), corrections
   on every other clip, held-out quarter; wall time per stage, for objective "threat" and "instructions".
3. The gate balance of PTR vs a basic MoE vs PTR without L_z (alpha = 0) on the imbalanced toy set of
   tests/test_training_run.py (evidence at the paper's rates: pose 46%, relations 32%, background 22%).
Timings depend on the load: other people share the two cores.
"""
from __future__ import annotations

import argparse
import math
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def bench_small_throughput(steps: int, work: Path) -> None:
    import torch

    from uprm.instructions import ATTRIBUTE, IDENTIFY, LOCATE, attribute_answer, identify_answer, locate_answer
    from uprm.model import build_model
    from uprm.model.inputs import random_expert_inputs
    from uprm.training import StaticFeatures, TrainingExample, TrainSettings, train

    t0 = time.perf_counter()
    model = build_model("small")
    print(f"small: built in {time.perf_counter() - t0:.1f} s; trainable parameters "
          f"{sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6:.2f} M of "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M; peak RSS {peak_rss_mb():.0f} MB")
    feats, examples = {}, []
    for i in range(8):
        feats[f"v{i}"] = random_expert_inputs(model.config, 1, 20, seed=i)  # 10 s at 2 steps/s
        iv = ((2.0, 6.5),) if i % 2 else ()
        examples.append(TrainingExample(f"v{i}", "", IDENTIFY, identify_answer(bool(iv)), kind="identify",
                                        threat_intervals_s=iv))
        examples.append(TrainingExample(f"v{i}", "", LOCATE, locate_answer(list(iv)), kind="locate",
                                        threat_intervals_s=iv))
        if iv:
            examples.append(TrainingExample(f"v{i}", "", ATTRIBUTE, attribute_answer(
                "a man pushes another man to the ground and kicks him while he lies there"), kind="attribute",
                threat_intervals_s=iv, span_s=iv[0]))
    settings = TrainSettings(batch_size=8, grad_accum=4, max_steps=steps, lr=2e-5, show_progress=False,
                             checkpoint_every=steps)
    res = train(model, examples, work / "small", settings, StaticFeatures(feats))
    import json

    recs = [r for r in map(json.loads, res.log_path.read_text().splitlines()) if r.get("step")]
    warm = recs[1:] or recs
    rate = sum(r["examples"] for r in warm) / sum(r["time_s"] for r in warm)
    print(f"small: {len(recs)} steps of batch 8 (4 x 2, grad accumulation); first step {recs[0]['time_s']:.1f} s, "
          f"then {rate:.2f} examples/s ({8 / rate:.1f} s per step); threads {torch.get_num_threads()}")
    ckpt = next((work / "small" / "checkpoints").iterdir(), None)
    size = sum(p.stat().st_size for p in (work / "small" / "checkpoints").rglob("*") if p.is_file())
    print(f"small: checkpoint {size / 1e6:.1f} MB (trainable weights + AdamW state + RNG), "
          f"final model folder {sum(p.stat().st_size for p in (work / 'small').glob('*.safetensors')) / 1e6:.1f} MB "
          f"+ LoRA; peak RSS {peak_rss_mb():.0f} MB ({ckpt.name if ckpt else ''})")


def bench_loop(n_videos: int, work: Path, objectives: list[str]) -> None:
    from annotations import Store
    from uprm.video import cut_clips, probe

    vtest = SHARED / "media" / "vtest.avi"
    starts = [int(i * (790 - 40) / max(n_videos - 1, 1)) for i in range(n_videos)]  # spread over 79 s
    t0 = time.perf_counter()
    clips = cut_clips(vtest, starts, 40, work / "clips", 10.0, max_side=384, prefix="vtest_")
    print(f"loop: cut {len(clips)} clips of 4 s (384 x 288) in {time.perf_counter() - t0:.1f} s")
    store = Store(work / "annotations.db")
    for i, clip in enumerate(clips):
        vid = store.add_video(probe(clip))
        if i % 2 == 0:
            store.add_segment(vid, 1.0, 3.0, "bench", cause="a person suddenly runs through the crowd")
        store.mark_reviewed(vid, "bench")
    for objective in objectives:
        run_loop(store, work, objective, n_videos)


def run_loop(store, work: Path, objective: str, n_videos: int) -> None:
    from uprm.training import run_correction_loop

    ends: dict[str, float] = {}  # stage -> when it last reported (its end)
    t0 = time.perf_counter()

    def progress(stage: str, fraction: float) -> None:
        ends[stage] = time.perf_counter() - t0

    version = run_correction_loop(store, work / "models", base="small", progress=progress,
                                  cache_dir=work / "evidence", objective=objective, promote="never")
    total = time.perf_counter() - t0
    previous, parts = 0.0, []
    for stage, end in ends.items():
        label = {"features": "model build + features", "before": "score before",
                 "after": "score after"}.get(stage, stage)
        parts.append(f"{label} {end - previous:.1f} s")
        previous = end
    print(f"loop ({objective}): {n_videos} corrected videos, small, perception cached after the first run: "
          f"{total:.1f} s ({', '.join(parts)}); peak RSS {peak_rss_mb():.0f} MB")
    d = version.data
    print(f"loop: {version.version_id} train {len(d.train_videos)} videos / {d.train_examples} examples, "
          f"held-out {len(d.heldout_videos)} videos ({d.heldout_segments} threat segments); "
          f"{version.train['steps']} steps")
    for name, s in (("before", version.before), ("after", version.after)):
        print(f"loop: {name}: FNR {fmt(s.fnr)} F2 {fmt(s.f2)} mAP@0.1/0.3/0.5 "
              f"{'/'.join(fmt(v) for v in s.map_at.values())} avg {fmt(s.average_map)} "
              f"({s.n_pred} predicted segments, {s.n_gt} GT)")
    print(f"loop: promoted: {version.promoted}")


def fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def bench_gates(work: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from test_training_run import gate_balance, imbalanced_toy

    from uprm.model import build_model
    from uprm.training import StaticFeatures, TrainSettings, train

    for name, kwargs, ablation in (("PTR", {}, ()), ("basic MoE (no_ptr)", {"no_ptr": True}, ("no_ptr",)),
                                   ("PTR gate, alpha = 0", {"alpha": 0.0}, ())):
        model = build_model("tiny", **kwargs)
        x, feats, examples = imbalanced_toy(model.config)
        before = gate_balance(model, x)
        train(model, examples, work / "gates" / name.replace(" ", "_"), TrainSettings(
            lr=3e-3, batch_size=8, max_steps=60, seed=0, ablation=ablation, num_threads=1, show_progress=False),
              StaticFeatures(feats))
        after = gate_balance(model, x)
        print(f"gates: {name:<22} mean (hpe, ore, vbe, coarse) {before[0]} -> {after[0]}; "
              f"balance (entropy / ln 4) {before[1]:.3f} -> {after[1]:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="training steps of the small throughput run")
    parser.add_argument("--loop-videos", type=int, default=20)
    parser.add_argument("--skip-loop", action="store_true")
    parser.add_argument("--skip-gates", action="store_true")
    parser.add_argument("--skip-small", action="store_true")
    parser.add_argument("--objective", nargs="+", default=["threat", "instructions"],
                        choices=["threat", "instructions"], help="loop objectives to time (in this order)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_training_"))
    try:
        if not args.skip_gates:
            bench_gates(work)
        if not args.skip_small:
            bench_small_throughput(args.steps, work)
        if not args.skip_loop:
            bench_loop(args.loop_videos, work, args.objective)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
