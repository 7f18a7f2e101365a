"""Timings of the metrics on the real UCF-Crime GT and CUVA texts: prints figures, asserts nothing.

    python benchmarks/bench_metrics.py [--no-sb]

Predictions are built from the GT with a fixed seed (jittered copies plus random proposals), so the
printed scores are reproducible; timings depend on the machine's load.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from uprm import formats, metrics  # noqa: E402
from uprm.segments import Segment  # noqa: E402

SHARED = ROOT.parent / "shared"


def timed(label: str, fn, repeat: int = 3):
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    print(f"{label:<58} {best * 1000:9.1f} ms (best of {repeat})")
    return result


def jittered(
    gt: list[Segment], rng: random.Random, proposals_per_video: int, video_ids: list[str]
) -> list[Segment]:
    """Each GT segment shifted by up to 30% of its length (score 0.5-1), plus random proposals (0-0.7)."""
    pred = []
    for s in gt:
        shift = rng.uniform(-0.3, 0.3) * s.duration_s
        start_s, end_s = max(0.0, s.start_s + shift), s.end_s + shift
        pred.append(Segment(s.video_id, start_s, end_s, "threat", rng.uniform(0.5, 1)))
    for vid in video_ids:
        for _ in range(proposals_per_video):
            start = rng.uniform(0, 300)
            pred.append(Segment(vid, start, start + rng.uniform(1, 30), "threat", rng.uniform(0, 0.7)))
    return pred


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-sb", action="store_true", help="skip the Sentence-BERT timing")
    args = parser.parse_args()
    ucf = SHARED / "data" / "ucf_crime" / "Temporal_Anomaly_Annotation.txt"
    cuva = SHARED / "data" / "cuva" / "gt_Causev1.json"
    if not ucf.is_file() or not cuva.is_file():
        print(f"reference data missing under {SHARED}", file=sys.stderr)
        return 1

    gt, classes = timed("read UCF-Crime txt (290 lines)", lambda: formats.read_ucf_crime_txt(ucf))
    rng = random.Random(0)
    pred = jittered(gt, rng, 10, list(classes))
    print(f"predictions: {len(pred)} ({len(gt)} jittered GT copies + 10 random proposals "
          f"x {len(classes)} videos)")
    det = timed("temporal_map, class-agnostic, tIoU 0.1/0.2/0.3",
                lambda: metrics.temporal_map(gt, pred, metrics.UCF_CRIME_TIOUS, class_agnostic=True))
    per_t = "  ".join(f"@{t:g}={v:.4f}" for t, v in det.map_at.items())
    print(f"  mAP {per_t}  avg={det.average_map:.4f}")
    confident = [p for p in pred if p.score >= 0.5]
    fl = timed("frame_level at 30 fps (detections scoring >= 0.5)",
               lambda: metrics.frame_level(gt, confident, {v: float("nan") for v in classes}, fps=30))
    print(f"  FNR={fl.fnr:.4f} F2={fl.f2:.4f} "
          f"(TP {fl.tp_frames}, FP {fl.fp_frames}, FN {fl.fn_frames} frames)")

    big_gt = [Segment(f"{s.video_id}#{k}", s.start_s, s.end_s, s.label) for k in range(30) for s in gt]
    big_pred = jittered(big_gt, random.Random(1), 10, [f"{v}#{k}" for k in range(30) for v in classes])
    timed(f"temporal_map at scale: {len(big_gt)} GT, {len(big_pred)} detections",
          lambda: metrics.temporal_map(big_gt, big_pred, metrics.UCF_CRIME_TIOUS, class_agnostic=True),
          repeat=1)

    items = json.loads(cuva.read_text())
    refs = [it["answer"] for it in items]
    hyps = refs[1:] + refs[:1]  # each explanation against another video's
    r = timed(f"ROUGE-L over {len(refs)} CUVA pairs", lambda: metrics.rouge_l(refs, hyps))
    b = timed(f"BLEU over {len(refs)} CUVA pairs", lambda: metrics.bleu(refs, hyps))
    print(f"  ROUGE-L={r:.4f} BLEU={b:.2f} (mismatched pairs)")
    if not args.no_sb:
        timed("load all-MiniLM-L6-v2 (first call: imports torch)", metrics.load_sentence_model, repeat=1)
        sb = timed(f"SBERT cosine over {len(refs)} CUVA pairs",
                   lambda: metrics.sbert_cosine(refs, hyps), repeat=1)
        print(f"  SB cosine={sb:.4f} (mismatched pairs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
