"""`python -m uprm train`: the paper's two-stage recipe, a thin wrapper over ``uprm.training.train``.

One process (CPU or one GPU):
    python -m uprm train --config small --stage 1 --data clips/*.mp4 --out runs/stage1
    python -m uprm train --config small --stage 2 --init runs/stage1 --data corrections.json --out runs/stage2
Several GPUs / nodes, the same command through Hugging Face accelerate (or torchrun):
    accelerate launch --num_processes 4 -m uprm train --config paper --stage 2 --data train.json --out runs/p2
    torchrun --nproc_per_node 4 -m uprm train --config paper --stage 2 --data train.json --out runs/p2
An interrupted run continues where its last checkpoint left off with the same command plus --resume.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EPILOG = """\
examples:
  python -m uprm train --config small --stage 1 --data clips/a.mp4 clips/b.mp4 --out runs/stage1
  python -m uprm train --config small --stage 2 --init runs/stage1 --data corrections.json --out runs/stage2
  python -m uprm train --config small --stage 2 --data corrections.json --out runs/stage2 --resume
  python -m uprm train --config tiny --stage 2 --data toy.json --features toy_features.pt --out /tmp/toy --max-steps 20
multi-GPU / multi-node (same arguments):
  accelerate launch --num_processes 4 -m uprm train --config paper --stage 2 --data train.json --out runs/p2
  torchrun --nproc_per_node 4 -m uprm train --config paper --stage 2 --data train.json --out runs/p2

--data takes (format detected by content, or --data-format):
  LLaVA / Video-LLaVA conversation JSON (python -m annotations export --format llava), stage 1 or 2;
  video files: stage-1 region / motion / background instructions built from the front-ends' evidence;
  RefCOCO-style JSON, HumanML3D-style folder, RSI-CB-style folder (shapes: uprm/training/stage1.py).
Loss: L = L_ce + alpha * L_z (+ per-step threat BCE where a video's threat intervals are known).
--batch-size is the paper's batch (examples per optimizer step over all processes and accumulation
steps); each forward takes batch-size / (processes x grad-accum) examples. The paper's "w/o pre-tuning"
ablation is stage 2 without --init from a stage-1 run.
Output folder: the final model (build_model(OUT) / UPRMModel.from_pretrained(OUT) read it),
train_log.jsonl (losses and gate balance per step), training_summary.json, checkpoints/.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from uprm.training.data import DATA_FORMATS
    from uprm.training.trainer import ABLATIONS, PRECISIONS, SCHEDULERS

    p = subparsers.add_parser(
        "train", help="fine-tune UPRM (stage 1 physical-world pre-tuning, stage 2 DeepSVU instructions)",
        description="Train UPRM's experts, router, heads and LoRA adapter on instruction data, with "
        "checkpoints and exact resume; runs on CPU, or on many GPUs through accelerate.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="small", help="preset (small, paper, tiny) or a model folder to start "
                   "from (default: small)")
    p.add_argument("--init", type=Path, help="start from this trained model folder (e.g. the stage-1 output); "
                   "overrides --config")
    p.add_argument("--stage", type=int, choices=(1, 2), default=2, help="1 = physical-world pre-tuning, "
                   "2 = DeepSVU instruction tuning (default 2)")
    p.add_argument("--data", nargs="+", required=True, metavar="FILE", help="instruction files, folders or videos")
    p.add_argument("--data-format", choices=DATA_FORMATS, default="auto")
    p.add_argument("--video-root", type=Path, help="folder that relative video / image paths in --data are under")
    p.add_argument("--features", type=Path, help="precomputed features (uprm.training.features.save_features); "
                   "videos not in it go through perception")
    p.add_argument("--evidence-cache", type=Path, help="perception cache folder (default "
                   "${UPRM_CACHE_DIR:-~/.cache/uprm}/evidence)")
    p.add_argument("--sample-fps", type=float, default=2.0, help="perception time steps per second (default 2)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t = p.add_argument_group("optimisation (paper defaults)")
    t.add_argument("--lr", type=float, default=2e-5)
    t.add_argument("--threat-only", action="store_true",
                   help="train UPRM's own modules on each video's per-step threat targets (from the data's "
                        "segments or locate answers) only: the language model is not run and its adapter "
                        "stays as it is (a warm-up before instruction tuning)")
    t.add_argument("--fusion-lr", type=float, default=None,
                   help="lr of UPRM's experts, router and threat head (default: --lr); the LM adapter and "
                        "projector always take --lr")
    t.add_argument("--warmup-ratio", type=float, default=0.03)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--grad-accum", type=int, default=1)
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument("--alpha", type=float, default=None, help="weight of L_z (default: the config's, 0.05)")
    t.add_argument("--expert-dropout", type=float, default=None, metavar="P",
                   help="silence each fine expert for a whole video with probability P while training "
                        "(default: the config's, 0)")
    t.add_argument("--augment", type=float, default=0.0, metavar="S",
                   help="perturb the evidence of every training batch (mirror, joint and box jitter, missed "
                        "detections, motion and frame-feature noise; uprm.training.augment) at strength S: "
                        "0 = off (default), 1 = its default magnitudes")
    t.add_argument("--max-steps", type=int, default=None, help="stop after N optimizer steps")
    t.add_argument("--ablation", nargs="*", default=[], choices=ABLATIONS, metavar="NAME",
                   help=f"switch off parts: {', '.join(ABLATIONS)}")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--scheduler", choices=SCHEDULERS, default="cosine")
    t.add_argument("--weight-decay", type=float, default=0.0)
    t.add_argument("--max-grad-norm", type=float, default=1.0)
    t.add_argument("--mixed-precision", choices=PRECISIONS, default="no")
    r = p.add_argument_group("run")
    r.add_argument("--checkpoint-every", type=int, default=50, help="optimizer steps between checkpoints")
    r.add_argument("--keep-checkpoints", type=int, default=2)
    r.add_argument("--log-every", type=int, default=10, help="terminal log line every N steps")
    r.add_argument("--num-threads", type=int, default=None, help="torch CPU threads")
    r.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from uprm.model.errors import UPRMError
    from uprm.training.errors import TrainingError

    try:
        return _run(args)
    except (TrainingError, UPRMError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: continue with the same command plus --resume", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    from uprm.training.trainer import TrainSettings

    settings = TrainSettings(
        stage=args.stage, lr=args.lr, fusion_lr=args.fusion_lr, warmup_ratio=args.warmup_ratio,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum, epochs=args.epochs, alpha=args.alpha, max_steps=args.max_steps,
        expert_dropout=args.expert_dropout, augment=args.augment,
        ablation=tuple(args.ablation), seed=args.seed, scheduler=args.scheduler, weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm, checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep_checkpoints, log_every=args.log_every, num_threads=args.num_threads,
        mixed_precision=args.mixed_precision, show_progress=not args.quiet)
    import torch

    threads = torch.get_num_threads()
    if args.num_threads:
        torch.set_num_threads(args.num_threads)  # model building too, not only the training steps
    try:
        return _train_from_args(args, settings)
    finally:
        torch.set_num_threads(threads)


def _train_from_args(args: argparse.Namespace, settings) -> int:
    from uprm.model import build_model
    from uprm.perception import PerceptionSettings
    from uprm.training.data import load_training_files
    from uprm.training.features import PerceptionFeatures, StaticFeatures, load_features
    from uprm.training.trainer import seed_everything, train

    source = str(args.init) if args.init else args.config
    seed_everything(args.seed)  # peft draws the LoRA A matrices from the global RNG: same seed, same start
    model = build_model(source)
    # perception loads its models only when a video is not in --features (and not in its disk cache)
    perception = PerceptionFeatures(model.config, PerceptionSettings(sample_fps=args.sample_fps), args.evidence_cache)
    features = perception
    if args.features:
        features = StaticFeatures(load_features(args.features), model.config, fallback=perception)

    def evidence_of(path: str):
        return perception(Path(path).stem, path).evidence

    examples = load_training_files(args.data, args.data_format, args.video_root, evidence_of)
    if args.threat_only:
        from uprm.training.data import threat_only_examples

        examples = threat_only_examples(examples)
        for name, p in model.named_parameters():
            if name.startswith("lm."):
                p.requires_grad_(False)  # the adapter stays bit-identical to --init's (it can be shared)
    talk = not args.quiet and os.environ.get("RANK", "0") == "0"  # one process speaks under torchrun / accelerate
    if talk:
        kinds = {}
        for ex in examples:
            kinds[ex.kind] = kinds.get(ex.kind, 0) + 1
        counts = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
        print(f"stage {args.stage}: {len(examples)} examples ({counts}) "
              f"from {len({ex.key for ex in examples})} videos; model {source}", file=sys.stderr)
    result = train(model, examples, args.out, settings, features, resume=args.resume,
                   run_info={"data": [str(d) for d in args.data], "init": str(args.init) if args.init else None,
                             "threat_only": args.threat_only})
    if talk:
        resumed = f" (resumed at step {result.resumed_from_step})" if result.resumed_from_step is not None else ""
        print(f"done: {result.steps} steps{resumed} in {result.elapsed_s:.1f} s; model saved in {result.out_dir}",
              file=sys.stderr)
    return 0
