"""Does a change to the warm-up recipe beat what the random start alone moves? Fold twins on validation.

    python assets/compare_warmups.py --candidate plain --candidate augment1:augment=1 --seeds 0 1 2
    python assets/compare_warmups.py --perceive-only --part 1/2 &   # perception in two processes (start
    python assets/compare_warmups.py --perceive-only --part 2/2     # the second once the first has composed)

Each candidate is the build's warm-up recipe (THREAT_RECIPE at --epochs) with the overrides given
(``name:key=value,key=value``; values are JSON), trained as a fold twin (the training footage without the
validation window) from each random start in --seeds, exactly as ``build_default_model.py`` trains its
candidates, and scored on the pooled validation set at its own tuned rule (RULE_GRID). Per run it prints
the objective the build picks by, FNR, F2, average mAP, the silent share of threat-free clips, frame AUC
(overall and per kind), and the share of steps at p >= 0.9 on pasted harmless walkers and on the rest of
the threat-free time: v10's fold twin put 17.6 % of the validation walkers' steps at >= 0.9 against 0.3 %
of the training walkers', which is the over-fit that augmentation and the like are meant to cut. Per
candidate: the mean and the range over seeds (a mean gain smaller than the seed range is evidence only
when every start gains: compare runs from the same start, which share the random draw), and the figures
of the starts' probabilities averaged, which tell the recipe's level apart from the luck of one start.

Nothing here reads the held-out draws, so a candidate picked here can enter the build without spoiling
the evaluation. Runs go to WORK/runs/compare/<candidate>_e<epochs>_seed<S> (reused when finished), one
JSON line per run to WORK/compare/results.jsonl.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import av  # noqa: F401  (before anything that may import decord)
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "assets")]

import build_default_model as b  # noqa: E402  (beside this file: the sets, recipe and rule grid the build uses)
from uprm import bootstrap as bs  # noqa: E402


def parse_candidate(text: str) -> tuple[str, dict]:
    """``name`` or ``name:key=value,...`` (JSON values) -> (name, TrainRecipe overrides)."""
    name, _, rest = text.partition(":")
    fields = set(bs.TrainRecipe.__dataclass_fields__) - {"seed"}  # --seeds sets the starts
    overrides = {}
    for item in filter(None, re.split(r",(?=\w+=)", rest)):  # commas inside a JSON list stay
        key, eq, value = item.partition("=")
        if not eq or key not in fields:
            raise SystemExit(f"--candidate {text!r}: write name:key=value,... with keys from {sorted(fields)}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            raise SystemExit(f"--candidate {text!r}: {value!r} is not a JSON value (numbers, true/false, \"text\")")
    if not name:
        raise SystemExit(f"--candidate {text!r}: give the candidate a name before the colon")
    return name, overrides


def harmless_spans(composed: bs.ComposedSet) -> dict[str, list[tuple[float, float]]]:
    """(start_s, end_s) of every pasted harmless event per clip, from the set's ground truth."""
    database = json.loads(composed.gt_path.read_text())["database"]
    return {vid: [(h["start_s"], h["end_s"]) for h in entry["composition"]["harmless"]]
            for vid, entry in database.items()}


def sure_shares(val: bs.ComposedSet, scored: list, spans: dict, level: float = 0.9) -> dict:
    """Shares of threat-free steps at p >= ``level``: on harmless walkers, and elsewhere."""
    by_id = {c.video_id: c for c in val.clips}
    walker, other = [], []
    for sc in scored:
        threat, _ = bs.clip_step_labels(by_id[sc.video_id], sc.times_s)
        on_walker = np.zeros(len(sc.times_s), bool)
        for s, e in spans.get(sc.video_id, []):
            on_walker |= (sc.times_s >= s) & (sc.times_s < e)
        free = threat == 0
        walker.append(sc.prob[free & on_walker] >= level)
        other.append(sc.prob[free & ~on_walker] >= level)
    walker, other = np.concatenate(walker), np.concatenate(other)
    return {"harmless_sure": float(walker.mean()) if walker.size else float("nan"), "harmless_steps": int(walker.size),
            "other_free_sure": float(other.mean()) if other.size else float("nan"), "other_free_steps": int(other.size)}


def figures(val: bs.ComposedSet, scored: list, spans: dict) -> dict:
    """Validation figures of one model's (or an ensemble's) per-step scores, at the rule tuned for them."""
    rule, row = b.rule_for(val, scored)
    ranking = bs.ranking_scores(val, scored)
    return {"objective": bs.objective(row), "fnr": row["fnr"], "f2": row["f2"], "map_avg": row["map_avg"],
            "map_0.5": row["map"]["0.5"], "silent_share": row["silent_share"], "rule": vars(rule),
            "auc": ranking["auc"], "auc_by_kind": ranking["by_kind"], **sure_shares(val, scored, spans)}


def mean_of(runs: list[list[bs.Scored]]) -> list[bs.Scored]:
    """Per clip, the mean probability of several models' scores (the ensemble of the starts)."""
    return [replace(per_run[0], prob=np.mean([s.prob for s in per_run], axis=0)) for per_run in zip(*runs)]


def line(label: str, row: dict) -> str:
    return (f"{label}: objective {row['objective']:.4f} FNR {row['fnr']:.3f} F2 {row['f2']:.3f} "
            f"avg mAP {row['map_avg']:.3f} mAP@0.5 {row['map_0.5']:.3f} silent {row['silent_share']:.3f} "
            f"AUC {row['auc']:.3f} harmless>=0.9 {row['harmless_sure']:.3f} other>=0.9 {row['other_free_sure']:.3f} "
            f"by kind {json.dumps({k: round(v, 3) for k, v in row['auc_by_kind'].items()})}")


def summary_line(name: str, rows: list[dict]) -> str:
    def spread(key: str) -> str:
        x = np.array([r[key] for r in rows], float)
        return f"{key} {x.mean():.3f} [{x.min():.3f}, {x.max():.3f}]"

    return f"{name} over {len(rows)} starts: " + "  ".join(
        spread(k) for k in ("objective", "fnr", "f2", "map_avg", "auc", "harmless_sure", "other_free_sure"))


def paired_line(baseline: list[dict], rows: list[dict]) -> str:
    """Each start's gain over the first candidate from the same start (same draw of weights and data order)."""
    base = {r["seed"]: r for r in baseline}
    pairs = [(r, base[r["seed"]]) for r in rows if r["seed"] in base]

    def gains(key: str) -> str:
        return f"{key} " + " ".join(f"{r[key] - b[key]:+.3f}" for r, b in pairs)

    seeds = " ".join(str(r["seed"]) for r, _ in pairs)
    return (f"{rows[0]['candidate']} minus {baseline[0]['candidate']}, start by start (seeds {seeds}): "
            + "  ".join(gains(k) for k in ("objective", "fnr", "auc")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidate", action="append", default=[], metavar="NAME[:KEY=VALUE,...]",
                        help="a warm-up recipe to compare (repeat); default: plain (the build's own)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="random starts (default 0 1 2)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="warm-up epochs (default: the build's first length candidate)")
    parser.add_argument("--num-threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None, help="the build's work folder (default: its own)")
    parser.add_argument("--perceive-only", action="store_true", help="compose and perceive the fold and "
                        "validation sets, then stop")
    parser.add_argument("--part", default="1/1", metavar="K/N", help="with --perceive-only: perceive every N-th "
                        "clip from the K-th, so N processes share the work (the evidence cache is shared)")
    args = parser.parse_args()
    work = args.work or b.work_dir()
    try:
        k, n = (int(x) for x in args.part.split("/"))
        assert 1 <= k <= n
    except (ValueError, AssertionError):
        raise SystemExit(f"--part {args.part!r}: write K/N with 1 <= K <= N, e.g. 1/2")
    candidates = [parse_candidate(c) for c in args.candidate or ["plain"]]  # before the long composing

    fold, val = b.fold_set(work), b.val_set(work)
    b.say("composed: fold and validation")
    if args.perceive_only:
        paths = [c.path for c in val.clips + fold.clips][k - 1::n]
        _, seconds = bs.perceive_all(paths, progress=b.say)
        b.say(f"perceived part {k}/{n}: {len(paths)} clips in {seconds:.0f} s")
        return 0
    ev_val, _ = bs.perceive_set(val, progress=b.say)
    bs.perceive_set(fold, progress=b.say)
    fold_data = bs.write_instructions(fold, work / "fold" / "instructions.json")
    spans = harmless_spans(val)
    epochs = args.epochs or b.WARMUP_EPOCHS[0]
    results = work / "compare" / "results.jsonl"
    results.parent.mkdir(parents=True, exist_ok=True)
    from uprm.model import build_model

    baseline: list[dict] = []  # the first candidate's rows: the others are set beside it start by start
    for name, overrides in candidates:
        rows, scored = [], []
        for seed in args.seeds:
            recipe = bs.TrainRecipe(**{**vars(b.THREAT_RECIPE), "epochs": epochs, "seed": seed, **overrides})
            run_dir = work / "runs" / "compare" / f"{name}_e{recipe.epochs}_seed{seed}"
            run = bs.run_training(recipe, [fold_data], run_dir, b.start_init(work, seed),
                                  num_threads=args.num_threads, reuse=True)
            model = build_model(str(run.out_dir))
            scored.append([bs.score_video(model, ev_val[c.path], c.video_id) for c in val.clips])
            row = {"candidate": name, "seed": seed, "recipe": vars(recipe), "train_s": round(run.elapsed_s, 1),
                   **figures(val, scored[-1], spans), "at": time.strftime("%Y-%m-%d %H:%M:%S")}
            with results.open("a") as f:
                f.write(json.dumps(row) + "\n")
            rows.append(row)
            print(line(f"{name} seed {seed}", row), flush=True)
        print(summary_line(name, rows), flush=True)
        if baseline and name != baseline[0]["candidate"]:
            print(paired_line(baseline, rows), flush=True)
        baseline = baseline or rows
        if len(scored) > 1:  # how much of the spread is the start's luck: the starts averaged
            print(line(f"{name} mean of the {len(scored)} starts", figures(val, mean_of(scored), spans)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
