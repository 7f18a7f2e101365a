"""Benchmark of the `small` UPRM model on this CPU: parameter counts per part, fusion forward latency and
answer latency for a 60-second video's worth of tokens (T = 120 steps at 2 fps).

    python benchmarks/bench_model.py [--threads N] [--steps 120] [--repeats 5] [--new-tokens 32]

Targets: fusion forward < 0.5 s, time to first answer token < 1.5 s. Inputs are random but shaped like
featurize's output (8 people, 16 entities per step): cost depends on shapes, not values. The machine
may be shared: the load average is printed beside the figures.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--steps", type=int, default=120, help="time steps (120 = 60 s at 2 fps)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=32)
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from uprm.instructions import ATTRIBUTE, IDENTIFY
    from uprm.model import build_model
    from uprm.model.inputs import random_expert_inputs

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), load average {_load()}")
    t0 = time.perf_counter()
    model = build_model("small")
    print(f"build_model('small'): {time.perf_counter() - t0:.2f} s (first run converts the GGUF once)\n")

    counts = model.parameter_counts()
    print(f"{'part':<12}{'trainable':>14}{'frozen':>14}")
    for part, c in counts.items():
        print(f"{part:<12}{c['trainable']:>14,}{c['frozen']:>14,}")
    trainable = sum(c["trainable"] for c in counts.values())
    frozen = sum(c["frozen"] for c in counts.values())
    print(f"{'total':<12}{trainable:>14,}{frozen:>14,}\n")

    x = random_expert_inputs(model.config, num_steps=args.steps, seed=0)
    with torch.no_grad():
        for _ in range(2):
            model(x)
        fuse = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            model(x)
            fuse.append(time.perf_counter() - t0)
    print(f"fusion forward, T={args.steps}: median {statistics.median(fuse):.3f} s "
          f"(min {min(fuse):.3f}, max {max(fuse):.3f}; target < 0.5 s)")

    ttft, rates = [], []
    for i, question in enumerate([IDENTIFY, ATTRIBUTE, IDENTIFY][: max(1, min(3, args.repeats))]):
        t0 = time.perf_counter()
        first = None
        text = ""
        for piece in model.answer(x, question, context="Two people run towards the gate.",
                                  max_new_tokens=args.new_tokens, stream=True):
            first = first if first is not None else time.perf_counter() - t0
            text += piece
        total = time.perf_counter() - t0
        n = len(model.lm.tokenizer(text, add_special_tokens=False).input_ids)
        ttft.append(first if first is not None else total)
        if n > 1 and total > ttft[-1]:
            rates.append((n - 1) / (total - ttft[-1]))
        print(f"answer {i + 1}: first text after {ttft[-1]:.3f} s, {n} tokens in {total:.2f} s: {text.strip()[:70]!r}")
    print(f"time to first answer token (first streamed word, {model.num_video_tokens(x)[0]} video tokens in the "
          f"prompt): median {statistics.median(ttft):.3f} s (target < 1.5 s)")
    if rates:
        print(f"decode speed: median {statistics.median(rates):.1f} tokens/s")
    print(f"load average at the end: {_load()}")
    return 0


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


if __name__ == "__main__":
    sys.exit(main())
