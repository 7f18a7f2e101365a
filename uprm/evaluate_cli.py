"""`python -m uprm evaluate`: the paper's locate/identify table from GT and results files, or text scores.

A thin wrapper: reading is ``uprm.formats``, scoring is ``uprm.metrics``; this module pairs files,
prints, and turns every input problem into one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from uprm import formats, metrics
from uprm.segments import Segment

EXIT_USAGE = 2
_VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".mpg", ".mpeg")

EPILOG = """\
examples:
  python -m uprm evaluate --gt Temporal_Anomaly_Annotation.txt --pred results.json --class-agnostic
  python -m uprm evaluate --gt activitynet_gt.json --pred results.json --tiou 0.1 0.3 0.5 --json
  python -m uprm evaluate --text --refs gt_Causev1.json --hyps generated.json

GT formats (detected by content): ActivityNet ground-truth JSON ({"database": {id: {"duration",
"annotations": [{"segment": [s, e], "label"}]}}}) or the UCF-Crime temporal txt (frames at --fps).
PRED: ActivityNet results JSON ({"results": {id: [{"segment": [s, e], "label", "score"}]}}).
Video ids are matched exactly, or else by name without extension ("Abuse028_x264" = "Abuse028_x264.mp4").
Table values are percentages like the paper's; --json values are fractions in [0, 1].
FNR/F2 are over frames at --fps: a frame is positive when inside any segment (labels ignored).
"""


class EvaluateError(ValueError):
    """A usage or input problem the user can fix (reported in one line, exit status 2)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score predictions: FNR, F2, temporal mAP at tIoUs; or ROUGE-L/BLEU/SBERT on texts",
        description="Score temporal threat predictions against ground truth (the paper's FNR, F2 and "
        "mAP@tIoU table) or generated explanations against references (--text).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    det = parser.add_argument_group("segments (default mode)")
    det.add_argument("--gt", type=Path, help="ground truth: ActivityNet JSON or UCF-Crime txt")
    det.add_argument("--pred", type=Path, help="predictions: ActivityNet results JSON")
    det.add_argument(
        "--tiou", type=float, nargs="+", metavar="T",
        help="tIoU thresholds in (0, 1]; default from the GT type as in the paper: "
        "0.1 0.2 0.3 for a UCF-Crime txt, 0.1 0.3 0.5 (CUVA's) for ActivityNet JSON",
    )
    det.add_argument(
        "--class-agnostic", action="store_true",
        help='treat every label as "threat" (one AP): for detectors that do not know the GT classes',
    )
    det.add_argument(
        "--fps", type=float, default=formats.UCF_CRIME_FPS,
        help="frame rate of the FNR/F2 frame grid and of UCF-Crime frame numbers (default: 30)",
    )
    det.add_argument(
        "--min-score", type=float, default=None, metavar="S",
        help="leave detections scoring below S out of FNR/F2 (mAP always ranks all of them)",
    )
    det.add_argument("--subset", help='ActivityNet GT: keep only videos of this subset, e.g. "validation"')
    txt = parser.add_argument_group("explanations (--text)")
    txt.add_argument("--text", action="store_true", help="score generated texts against references")
    txt.add_argument(
        "--refs", type=Path,
        help="references: JSON list of strings, {id: text} object, or CUVA gt JSON (keyed by video_id)",
    )
    txt.add_argument("--hyps", type=Path, help="generated texts: JSON list of strings or {id: text} object")
    txt.add_argument("--question-id", help='CUVA files mixing questions: which one to use, e.g. "Cause"')
    txt.add_argument(
        "--no-sb", action="store_true",
        help="skip the Sentence-BERT cosine (saves loading torch and all-MiniLM-L6-v2)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.set_defaults(func=run)

    def one_line_error(message: str) -> None:  # argparse's default adds a usage block
        parser.exit(EXIT_USAGE, f"python -m uprm evaluate: error: {message} (see --help)\n")

    parser.error = one_line_error  # type: ignore[method-assign]


def run(args: argparse.Namespace) -> int:
    try:
        return _run_text(args) if args.text else _run_segments(args)
    except (EvaluateError, formats.FormatError, metrics.MetricError, OSError) as exc:
        message = " ".join(str(exc).split())  # one line, whatever the source
        print(f"python -m uprm evaluate: error: {message}", file=sys.stderr)
        return EXIT_USAGE


# ---------------------------------------------------------------------------------------------------
# segments


def _stem(video_id: str) -> str:
    lower = video_id.lower()
    for ext in _VIDEO_EXTENSIONS:
        if lower.endswith(ext):
            return video_id[: -len(ext)]
    return video_id


def align_video_ids(ids: list[str], known_ids: list[str]) -> dict[str, str]:
    """Map each id not in ``known_ids`` to the known id with the same name without video extension.

    Only unambiguous matches are mapped; the result holds just the remapped ids.
    """
    known = set(known_ids)
    by_stem: dict[str, list[str]] = {}
    for k in known_ids:
        by_stem.setdefault(_stem(k), []).append(k)
    mapping = {}
    for video_id in dict.fromkeys(ids):
        if video_id in known:
            continue
        candidates = by_stem.get(_stem(video_id), [])
        if len(candidates) == 1:
            mapping[video_id] = candidates[0]
    return mapping


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def evaluate_segments(
    gt: formats.GroundTruth,
    pred: list[Segment],
    tiou_thresholds: list[float] | tuple[float, ...],
    *,
    class_agnostic: bool = False,
    fps: float = formats.UCF_CRIME_FPS,
    min_score: float | None = None,
) -> dict[str, Any]:
    """The evaluate command's JSON object: FNR, F2 and mAP per tIoU plus counts (fractions)."""
    detection = metrics.temporal_map(gt.segments, pred, tiou_thresholds, class_agnostic=class_agnostic)
    frame_pred = pred if min_score is None else [p for p in pred if (p.score or 0.0) >= min_score]
    frames = metrics.frame_level(gt.segments, frame_pred, gt.durations, fps=fps)

    def num(x: float) -> float | None:
        return None if math.isnan(x) else x  # JSON has no NaN

    return {
        "gt_format": gt.format,
        "tiou_thresholds": list(detection.tiou_thresholds),
        "class_agnostic": class_agnostic,
        "mAP": {f"{t:g}": num(v) for t, v in detection.map_at.items()},
        "average_mAP": num(detection.average_map),
        "FNR": num(frames.fnr),
        "F2": num(frames.f2),
        "precision": num(frames.precision),
        "recall": num(frames.recall),
        "fps": fps,
        "n_videos": len(gt.durations),
        "n_gt_segments": detection.n_gt,
        "n_predictions": detection.n_pred,
        "n_predictions_ignored": detection.n_pred_ignored,
        "ap_per_class": {k: [num(x) for x in v] for k, v in detection.ap_per_class.items()},
    }


def _run_segments(args: argparse.Namespace) -> int:
    if args.refs or args.hyps:
        raise EvaluateError("--refs/--hyps belong to text mode: add --text")
    if args.gt is None or args.pred is None:
        raise EvaluateError("give both --gt GT and --pred PRED (or --text --refs FILE --hyps FILE)")
    if not args.fps > 0:
        raise EvaluateError(f"--fps must be > 0, got {args.fps}")
    bad = [t for t in args.tiou or () if not 0.0 < t <= 1.0]
    if bad:  # checked before reading files so the error is the only line printed
        raise EvaluateError(f"--tiou thresholds must lie in (0, 1], got {' '.join(f'{t:g}' for t in bad)}")
    gt = formats.read_ground_truth(args.gt, args.fps, subset=args.subset)
    if not gt.segments:
        raise EvaluateError(
            f"{args.gt}: the ground truth has no threat segment, so there is nothing to locate"
        )
    pred = formats.read_activitynet_results(args.pred)
    default = metrics.UCF_CRIME_TIOUS if gt.format == "ucf_crime" else metrics.CUVA_TIOUS
    tious = tuple(args.tiou) if args.tiou else default

    gt_ids = list(gt.durations)
    mapping = align_video_ids([p.video_id for p in pred], gt_ids)
    if mapping:
        _note(f"matched {len(mapping)} prediction video ids to GT ids by name without extension")
        pred = [Segment(mapping.get(p.video_id, p.video_id), p.start_s, p.end_s, p.label, p.score, p.cause)
                for p in pred]
    unknown = {p.video_id for p in pred} - set(gt_ids)
    if unknown:
        _note(f"{len(unknown)} predicted videos are not in the GT (e.g. {sorted(unknown)[0]!r}): "
              "their detections count as false positives")
    gt_labels = {s.label for s in gt.segments}
    if not args.class_agnostic and pred and not gt_labels & {p.label for p in pred}:
        _note(f"no detection label is a GT class ({', '.join(sorted(gt_labels)[:5])}, ...): "
              "every AP is 0; use --class-agnostic for a class-blind detector")

    result = evaluate_segments(
        gt, pred, tious, class_agnostic=args.class_agnostic, fps=args.fps, min_score=args.min_score
    )
    if args.json:
        print(json.dumps(result))
        return 0
    source = "UCF-Crime txt" if gt.format == "ucf_crime" else "ActivityNet JSON"
    print(f"ground truth: {args.gt} ({source}: {result['n_videos']} videos, "
          f"{result['n_gt_segments']} segments); "
          f"predictions: {args.pred} ({result['n_predictions']} detections)")
    mode = "class-agnostic" if args.class_agnostic else "per class"
    print(f"tIoU thresholds: {' '.join(f'{t:g}' for t in tious)}"
          f"{' (default for ' + source + ')' if not args.tiou else ''}; "
          f"{mode}; frames at {args.fps:g} fps; values in %")
    columns = ["FNR", "F2", *(f"mAP@{t:g}" for t in tious), "avg"]
    values = [result["FNR"], result["F2"], *result["mAP"].values(), result["average_mAP"]]
    widths = [max(len(c), 6) for c in columns]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    print("  ".join(("-" if v is None else f"{100 * v:.2f}").rjust(w) for v, w in zip(values, widths)))
    return 0


# ---------------------------------------------------------------------------------------------------
# text


def pair_texts(
    refs: list[str] | dict[str, str], hyps: list[str] | dict[str, str]
) -> tuple[list[str], list[str]]:
    """(references, generated) in matching order: lists by position, maps by id (hypotheses' ids).

    Every generated id must have a reference (ids also match without a video extension);
    references without a generated text are left out.
    """
    if isinstance(refs, list) and isinstance(hyps, list):
        if len(refs) != len(hyps):
            raise EvaluateError(
                f"--refs has {len(refs)} texts but --hyps has {len(hyps)}: lists pair by position"
            )
        return refs, hyps
    if isinstance(refs, dict) and isinstance(hyps, dict):
        mapping = align_video_ids(list(hyps), list(refs))
        keyed = {mapping.get(k, k): v for k, v in hyps.items()}
        missing = [k for k in keyed if k not in refs]
        if missing:
            raise EvaluateError(
                f"{len(missing)} generated ids have no reference (e.g. {missing[0]!r}); ids must match --refs"
            )
        return [refs[k] for k in keyed], list(keyed.values())
    raise EvaluateError(
        "--refs and --hyps must both be lists (paired by position) or both be keyed by id "
        "({id: text} objects or CUVA files)"
    )


def _run_text(args: argparse.Namespace) -> int:
    if args.gt or args.pred:
        raise EvaluateError("--gt/--pred belong to segment mode: drop --text")
    if args.refs is None or args.hyps is None:
        raise EvaluateError("--text needs both --refs FILE and --hyps FILE")
    refs = formats.read_texts(args.refs, question_id=args.question_id)
    hyps = formats.read_texts(args.hyps, question_id=args.question_id)
    references, generated = pair_texts(refs, hyps)
    if len(references) < len(refs):
        _note(f"scoring {len(references)} of {len(refs)} references (those with a generated text)")
    scores = metrics.text_scores(references, generated, with_sb=not args.no_sb)
    if args.json:
        print(json.dumps({"ROUGE-L": scores.rouge_l, "BLEU": scores.bleu, "SB": scores.sb_cosine,
                          "n_pairs": scores.n_pairs}))
        return 0
    print(f"{scores.n_pairs} (reference, generated) pairs; ROUGE-L F and SB cosine in [0, 1], BLEU 0-100")
    sb = "-" if scores.sb_cosine is None else f"{scores.sb_cosine:.4f}"
    print(f"{'SB':>8}  {'ROUGE-L':>8}  {'BLEU':>8}")
    print(f"{sb:>8}  {scores.rouge_l:>8.4f}  {scores.bleu:>8.2f}")
    return 0
