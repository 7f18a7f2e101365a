"""`python -m uprm compose ...`: composed threat events on real footage, with exact ground truth.

    python -m uprm compose --source ../shared/media/vtest.avi --out data/composed --videos 6 --seed 0
    python -m uprm compose demo --out assets/demo_composed.mp4
    python -m uprm compose clip --source assets/sample_vtest_30s.mp4 --events fall,normal_walk --out clip.mp4
"""
from __future__ import annotations

import argparse
import sys

from uprm.compose.errors import ComposeError
from uprm.compose.events import HARMLESS_KINDS, THREAT_KINDS

EXAMPLES = """examples:
  python -m uprm compose --source ../shared/media/vtest.avi --out data/composed --videos 6 --seed 0 --clip-s 30
  python -m uprm compose demo --out assets/demo_composed.mp4
  python -m uprm compose clip --source assets/sample_vtest_30s.mp4 --events fall,normal_walk --seed 3 --out clip.mp4
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compose", help="compose synthetic threat events onto real static-camera footage (with exact ground truth)",
        description="Paste real people cut from the footage back into it, acting out threats ("
        + ", ".join(THREAT_KINDS) + ") and harmless look-alikes (" + ", ".join(HARMLESS_KINDS)
        + "), and write H.264 clips with ActivityNet ground truth. Modes: dataset (default), demo, clip.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("mode", nargs="?", choices=("dataset", "demo", "clip"), default="dataset",
                   help="dataset: many clips + ground_truth.json + manifest.json; demo: the labelled demo clip; "
                        "clip: one clip with the events you name")
    p.add_argument("--source", action="append", help="static-camera video (repeat for several; demo: the sample)")
    p.add_argument("--out", required=True, help="dataset: output folder; demo and clip: the .mp4 to write")
    p.add_argument("--videos", type=int, default=6, help="dataset: number of clips (default 6)")
    p.add_argument("--seed", type=int, default=None,
                   help="random seed: same seed, same clips and ground truth (default 0; demo: 7)")
    p.add_argument("--clip-s", type=float, default=None, help="clip length in seconds (dataset default: 20-40 drawn)")
    p.add_argument("--start-s", type=float, default=0.0, help="clip: where the clip starts in the source")
    p.add_argument("--events", default="fall,normal_walk", help="clip: comma-separated event kinds")
    p.add_argument("--no-cache", action="store_true", help="recompute plates and sprites instead of using the cache")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        if args.mode == "dataset":
            from uprm.compose.dataset import make_dataset

            if not args.source:
                raise ComposeError("dataset mode needs at least one --source VIDEO")
            ds = make_dataset(args.source, args.videos, args.seed or 0, args.out, args.clip_s,
                              use_cache=not args.no_cache, progress=say)
            print(f"wrote {len(ds.videos)} clips to {ds.out_dir / 'videos'}, ground truth {ds.gt_path}, "
                  f"manifest {ds.manifest_path}")
        elif args.mode == "demo":
            from uprm.compose.demo import DEMO_SOURCE, make_demo

            result = make_demo(args.out, (args.source or [DEMO_SOURCE])[0], seed=7 if args.seed is None else args.seed)
            _report(result)
        else:
            from uprm.compose.compositor import compose, prepare

            if not args.source or len(args.source) != 1:
                raise ComposeError("clip mode needs exactly one --source VIDEO")
            footage = prepare(args.source[0], use_cache=not args.no_cache)
            kinds = [k.strip() for k in args.events.split(",") if k.strip()]
            _report(compose(footage, kinds, args.seed or 0, args.out, start_s=args.start_s, clip_s=args.clip_s))
    except ComposeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _report(result) -> None:
    print(f"wrote {result.path} ({result.duration_s:g} s, {result.frames_per_s:.0f} frames/s) and {result.gt_path}")
    for e in result.events:
        tag = "threat  " if e.threat else "harmless"
        print(f"  {tag} {e.kind:<12} {e.start_s:6.1f}-{e.end_s:6.1f} s  {e.cause}")
