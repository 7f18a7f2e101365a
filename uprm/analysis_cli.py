"""`python -m uprm analyze`: a whole video, or a folder of videos into ActivityNet predictions."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}

EXAMPLES = """examples:
  python -m uprm analyze clip.mp4                       # print segments and causes
  python -m uprm analyze clip.mp4 --json out/clip.json  # the whole Analysis as JSON
  python -m uprm analyze videos/ --pred out/pred.json   # a folder -> ActivityNet predictions
  python -m uprm evaluate --gt gt.json --pred out/pred.json
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("analyze", help="find, locate and explain threats in a video or a folder",
                              description=__doc__, epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", help="a video file, or a folder of videos (batch mode)")
    p.add_argument("--json", dest="json_out", help="write the Analysis JSON here (a folder in batch mode)")
    p.add_argument("--pred", help="batch mode: write ActivityNet results JSON here")
    p.add_argument("--model", default="small", help="small (default), paper, or a checkpoint directory")
    p.add_argument("--fps", type=float, default=2.0, help="sampling rate in time steps per second (default 2)")
    p.add_argument("--threshold", type=float, default=None,
                   help="threat probability that opens a segment (default: the one tuned for the model)")
    p.add_argument("--min-segment", type=float, default=None, metavar="S",
                   help="drop segments shorter than S seconds (default: the model's tuned value)")
    p.add_argument("--merge-gap", type=float, default=None, metavar="S",
                   help="join segments closer than S seconds (default: the model's tuned value)")
    p.add_argument("--keep-threshold", type=float, default=None, metavar="P",
                   help="widen each segment over the steps next to it whose probability stays >= P "
                        "(hysteresis; default: the model's tuned value; a value >= the threshold: none)")
    p.add_argument("--ablation", action="append", default=[],
                   choices=["no_hpe", "no_ore", "no_vbe", "no_upe", "no_ptr"], help="switch an expert off")
    p.add_argument("--no-explain", action="store_true", help="skip writing causes with the language model")
    p.add_argument("--sam2-checkpoint", help="SAM 2 checkpoint for real SAM 2 masks")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def _settings(args):
    from uprm.analysis import AnalysisSettings

    return AnalysisSettings(sample_fps=args.fps, threshold=args.threshold, min_segment_s=args.min_segment,
                            merge_gap_s=args.merge_gap, keep_threshold=args.keep_threshold,
                            explain=not args.no_explain,
                            seed=args.seed, ablation=tuple(args.ablation), sam2_checkpoint=args.sam2_checkpoint)


def _print(analysis) -> None:
    print(f"{analysis.video.path}: {analysis.video.duration_s:.1f} s, "
          f"{'threat' if analysis.has_threat else 'no threat'} ({len(analysis.segments)} segment(s))")
    for s in analysis.segments:
        print(f"  {s.start_s:7.1f}s - {s.end_s:7.1f}s  score {s.score:.2f}  {s.category}: {s.cause}")
    for w in analysis.warnings:
        print(f"  warning: {w}")


def run(args) -> int:
    from tqdm import tqdm

    from uprm.analysis import analyze
    from uprm.model import build_model

    src = Path(args.video)
    if not src.exists():
        print(f"error: {src} does not exist", file=sys.stderr)
        return 2
    videos = sorted(p for p in src.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES) if src.is_dir() else [src]
    if src.is_dir() and not videos:
        print(f"error: no video files ({', '.join(sorted(VIDEO_SUFFIXES))}) in {src}", file=sys.stderr)
        return 2
    try:
        settings = _settings(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    model = build_model(args.model)
    model.eval()
    results, failed = [], 0
    for video in videos:
        bar = tqdm(total=100, desc=video.name, unit="%", leave=False)

        def progress(stage, frac, bar=bar):
            bar.set_postfix_str(stage[:40])
            bar.update(round(frac * 100) - bar.n)

        try:
            a = analyze(video, model, settings, progress=progress, model_id=str(args.model))
        except ValueError as exc:  # unreadable video etc.: report and go on with the others
            bar.close()
            print(f"error: {video}: {exc}", file=sys.stderr)
            failed += 1
            continue
        bar.close()
        _print(a)
        results.append(a)
        if args.json_out:
            out = Path(args.json_out)
            a.save(out / f"{video.stem}.json" if src.is_dir() else out)
    if args.pred:
        from uprm.formats import write_activitynet_results

        write_activitynet_results([s.to_segment(a.video_id) for a in results for s in a.segments], args.pred)
        print(f"wrote {len(results)} video(s) of predictions to {args.pred}")
    if args.json_out and not src.is_dir():
        print(f"wrote {args.json_out}")
    return 1 if failed and not results else 0

