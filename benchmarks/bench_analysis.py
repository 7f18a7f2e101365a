"""Whole-analysis and chat timings on this CPU, printed as figures (not asserted).

    python benchmarks/bench_analysis.py [--video ../shared/media/vtest.avi]

Prints: model load; analysis with perception from the cache and with perception included (cold: an
empty evidence cache); the ratio to the video's duration; chat time to the first streamed piece of the
model's explanation and its pieces per second.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", default=str(ROOT.parent / "shared" / "media" / "vtest.avi"))
    args = p.parse_args()
    from uprm.analysis import analyze
    from uprm.chat import ChatEngine
    from uprm.featurize import featurize
    from uprm.model import build_model
    from uprm.perception import perceive

    t = time.perf_counter()
    model = build_model("small")
    print(f"model load ({model.model_id}): {time.perf_counter() - t:.2f} s")
    cold_cache = Path(tempfile.mkdtemp(prefix="uprm-bench-evidence-"))
    t = time.perf_counter()
    a = analyze(args.video, model, cache_dir=cold_cache)
    cold = time.perf_counter() - t
    t = time.perf_counter()
    ev = perceive(args.video, cache_dir=cold_cache)
    cache_load = time.perf_counter() - t
    t = time.perf_counter()
    a = analyze(args.video, model, evidence=ev)
    warm = time.perf_counter() - t
    d = a.video.duration_s
    print(f"video: {d:.1f} s, {len(a.times_s)} steps, {len(a.segments)} segment(s)")
    print(f"analysis incl. perception (cold cache): {cold:.1f} s = {cold / d:.2f}x real time")
    print(f"evidence from cache: {cache_load:.2f} s")
    print(f"analysis from cached evidence (fusion + causes): {warm:.2f} s = {warm / d:.3f}x real time")
    engine = ChatEngine(model, a, featurize(ev, model.config))
    question = (f"why is {a.segments[0].start_s:.1f}-{a.segments[0].end_s:.1f} s a threat?" if a.segments
                else "is there a threat?")
    t = time.perf_counter()
    pieces, first_model_piece, started = 0, None, False
    for piece in engine.ask(question, max_new_tokens=48):
        if piece.startswith("\n\nModel explanation"):
            started = True
            continue
        if started:
            pieces += 1
            if first_model_piece is None:
                first_model_piece = time.perf_counter() - t
    total = time.perf_counter() - t
    print(f"chat question: {question!r}")
    if first_model_piece is None:
        print(f"chat: grounded facts only (no segment to explain) in {total:.2f} s")
    else:
        rate = (pieces - 1) / max(total - first_model_piece, 1e-6)
        print(f"chat first model piece: {first_model_piece:.2f} s; {pieces} pieces, {rate:.1f} pieces/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
