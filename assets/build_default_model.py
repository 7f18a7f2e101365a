"""Rebuild the shipped default checkpoint ``assets/uprm-small`` (and its alpha variants) from scratch.

    python assets/build_default_model.py                 # everything (about 45-60 min on 2 busy CPU cores)
    python assets/build_default_model.py --skip-variants # only the default checkpoint

Steps, all deterministic given the seeds below (perception and composition are cached on disk, so a
second run only retrains):
 1. compose the TRAINING set: 28 clips of 10-16 s cut from vtest.avi after its first 30 s (30-79.5 s),
    each with 0-2 threat events and 0-2 harmless pasted walkers, seed S_TRAIN; and the HELD-OUT set:
    14 clips of 10-15 s from the first 30 s (assets/sample_vtest_30s.mp4), seed S_TEST (bikes.mp4 is a
    moving camera, which the compositor refuses);
 2. perceive every training clip (frozen front-ends, cached per content hash);
 3. write the three DeepSVU instructions per clip (identify / locate / attribute, answers from the GT,
    per-step threat targets from the GT segments) as LLaVA conversation JSON;
 4. train stage 2 in two phases, both with the project's trainer:
    a. WARM-UP (THREAT_RECIPE): only UPRM's own weights (experts, router, threat head) on the per-step
       threat targets, language model not run (``uprm.training.train`` on threat-only examples: the
       CLI has no threat-only data format). Cheap, so it can run many epochs;
    b. INSTRUCTIONS (RECIPE): ``python -m uprm train --stage 2 --init <warm-up> --data instructions.json``,
       one epoch as in the paper: LoRA, projector, experts, router and threat head together on
       L = L_ce + alpha L_z + threat BCE;
    then ship it to assets/uprm-small in float16 (config.json + uprm.safetensors + lora_adapter/);
 5. the paper's w/o-PTR row: phase a with ``no_ptr`` (plain softmax over four experts, no L_z),
    kept under the work folder (not shipped); the evaluation compares it with the full model's phase a;
 6. alpha variants: from the default checkpoint, ALPHA_RECIPE with alpha in ALPHAS, only UPRM's own
    weights learning (threat-only examples: the language model is not run, so the LoRA adapter stays
    the default's and each variant's lora_adapter is a symlink to it), shipped to
    assets/alpha_variants/alpha_<a>/.

Then run ``python assets/evaluate_default_model.py`` to regenerate every number in MODEL_CARD.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import av  # noqa: F401  (before anything that may import decord)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from uprm import bootstrap as bs  # noqa: E402

MEDIA = ROOT.parent / "shared" / "media"
S_TRAIN, S_TEST = 1000, 2000
TRAIN_CLIPS, TEST_CLIPS = 28, 14
TRAIN_WINDOWS = [bs.SourceWindow(str(MEDIA / "vtest.avi"), 30.0, 79.5)]
TEST_WINDOWS = [bs.SourceWindow(str(ROOT / "assets" / "sample_vtest_30s.mp4"))]
# Paper defaults (AdamW, warm-up 0.03, batch 8, one epoch, alpha 0.05) except the learning rate
# (2e-5 -> 1e-3): UPRM's modules start from random weights and one epoch is ~10 optimizer steps on CPU.
# The warm-up phase runs 25 epochs because it costs ~1 s per step (no language model).
THREAT_RECIPE = bs.TrainRecipe(lr=1e-3, epochs=25, batch_size=8, seed=0)
RECIPE = bs.TrainRecipe(lr=1e-3, epochs=1, batch_size=8, seed=0)
ALPHAS = (0.0, 0.05, 0.2, 0.8)
ALPHA_RECIPE = dict(lr=5e-4, epochs=4, batch_size=8, seed=0)
DEFAULT_OUT = ROOT / "assets" / "uprm-small"
VARIANTS_OUT = ROOT / "assets" / "alpha_variants"


def work_dir() -> Path:
    return Path(os.environ.get("UPRM_CACHE_DIR", Path.home() / ".cache" / "uprm")) / "bootstrap"


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_sets(work: Path) -> tuple[bs.ComposedSet, bs.ComposedSet]:
    train = bs.compose_set("train", TRAIN_WINDOWS, TRAIN_CLIPS, S_TRAIN, work / "train", (10.0, 16.0), progress=say)
    test = bs.compose_set("heldout", TEST_WINDOWS, TEST_CLIPS, S_TEST, work / "heldout", (10.0, 15.0), progress=say)
    return train, test


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=work_dir(), help="data and run folder (default %(default)s)")
    parser.add_argument("--skip-variants", action="store_true", help="do not train the alpha variants")
    parser.add_argument("--skip-no-ptr", action="store_true", help="do not train the w/o-PTR ablation model")
    parser.add_argument("--num-threads", type=int, default=2)
    parser.add_argument("--fresh", action="store_true", help="retrain runs already finished in the work folder "
                        "(default: reuse them; delete WORK/runs to start over)")
    args = parser.parse_args()
    work: Path = args.work
    report: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "threat_recipe": vars(THREAT_RECIPE),
                    "recipe": vars(RECIPE), "alpha_recipe": ALPHA_RECIPE}

    train, test = build_sets(work)
    report["train_set"], report["heldout_set"] = train.summary(), test.summary()
    _, report["train_perception_s"] = bs.perceive_set(train, progress=say)
    data = bs.write_instructions(train, work / "train" / "instructions.json")

    warm = bs.train_threat_only("small-untrained", train, work / "runs" / "warmup", THREAT_RECIPE,
                                num_threads=args.num_threads, reuse=not args.fresh)
    report["warmup_run"] = {"what": warm.argv, "elapsed_s": round(warm.elapsed_s, 1), "loss": warm.log}
    run = bs.run_training(RECIPE, [data], work / "runs" / "default", init=warm.out_dir,
                          num_threads=args.num_threads, reuse=not args.fresh)
    report["default_run"] = {"argv": run.argv, "elapsed_s": round(run.elapsed_s, 1), "loss": run.log}
    report["default_files"] = bs.ship_checkpoint(run.out_dir, DEFAULT_OUT, bs.CHECKPOINT_VERSION)
    say(f"shipped {DEFAULT_OUT}: {report['default_files']}")

    if not args.skip_no_ptr:
        nr = bs.train_threat_only("small-untrained", train, work / "runs" / "warmup_no_ptr",
                                  bs.TrainRecipe(**{**vars(THREAT_RECIPE), "ablation": ("no_ptr",)}),
                                  num_threads=args.num_threads, reuse=not args.fresh)
        report["no_ptr_run"] = {"what": nr.argv, "elapsed_s": round(nr.elapsed_s, 1), "loss": nr.log}

    if not args.skip_variants:
        report["alpha_variants"] = {}
        for alpha in ALPHAS:
            name = f"alpha_{alpha:g}"
            vr = bs.train_threat_only(DEFAULT_OUT, train, work / "runs" / name,
                                      bs.TrainRecipe(alpha=alpha, **ALPHA_RECIPE), num_threads=args.num_threads,
                                      reuse=not args.fresh)
            files = bs.ship_checkpoint(vr.out_dir, VARIANTS_OUT / name, f"{bs.CHECKPOINT_VERSION}-alpha{alpha:g}",
                                       shared_adapter=DEFAULT_OUT / "lora_adapter")
            report["alpha_variants"][name] = {"elapsed_s": round(vr.elapsed_s, 1), "loss": vr.log, "files": files}
            say(f"shipped {VARIANTS_OUT / name}: {files}")

    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    out = work / "build_report.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    say(f"build report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
