"""Speed of the event compositor on the bundled vtest sample: prints figures, asserts nothing.

    python benchmarks/bench_compose.py [--harvest-s 6] [--clip-s 10]

Harvesting (detector + selfie segmentation + plate subtraction per frame) runs into a temporary cache,
so it is really measured; then one clip per event kind is composed (decode + paste + H.264 encode) and
its frames/s printed beside the render-only rate (decode + paste, no encoder). Timings depend on the
machine's load (2 shared cores here).
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

import av  # noqa: E402,F401  (before anything that may import decord)
import numpy as np  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=str(ROOT / "assets" / "sample_vtest_30s.mp4"))
    parser.add_argument("--harvest-s", type=float, default=6.0, help="seconds of footage to cut sprites from")
    parser.add_argument("--clip-s", type=float, default=10.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["UPRM_CACHE_DIR"] = tmp
        from uprm.compose import EVENT_KINDS, compose
        from uprm.compose.compositor import Footage, plan, render
        from uprm.compose.events import Scene
        from uprm.compose.plate import load_or_make_plate
        from uprm.compose.source import probe
        from uprm.compose.sprites import load_or_harvest

        t0 = time.perf_counter()
        video = probe(args.source)
        t1 = time.perf_counter()
        plate = load_or_make_plate(video)
        t2 = time.perf_counter()
        n_harvest = int(args.harvest_s * video.fps)
        bank = load_or_harvest(video, plate, 0, n_harvest)
        t3 = time.perf_counter()
        footage = Footage(video, plate, bank)
        print(f"source {Path(args.source).name}: {video.width}x{video.height}, {video.fps:g} fps, "
              f"{video.duration_s:g} s")
        print(f"{'probe':<44} {t1 - t0:8.2f} s")
        print(f"{'clean plate (31 frames, median)':<44} {t2 - t1:8.2f} s")
        print(f"{'harvest ' + str(n_harvest) + ' frames':<44} {t3 - t2:8.2f} s  "
              f"({n_harvest / (t3 - t2):.1f} frames/s; {len(bank.tracks)} walk cycles, "
              f"{sum(len(t.sprites) for t in bank.tracks)} sprites, {len(bank.items)} items)")
        p = bank.perspective
        print(f"{'perspective fit':<44} height = {p.slope:.3f} * foot_y + {p.intercept_px:.1f} px "
              f"({p.n_people} people, median residual {p.residual_px:.1f} px)")

        start_s = min(args.harvest_s, video.duration_s - args.clip_s)
        first, n = int(start_s * video.fps), int(args.clip_s * video.fps)
        print(f"\ncomposing {args.clip_s:g} s clips from {start_s:g} s ({n} frames each):")
        print(f"{'event':<14} {'plan s':>8} {'render f/s':>11} {'compose f/s':>12}  ground truth")
        for i, kind in enumerate(EVENT_KINDS):
            clip_s = max(args.clip_s, 16.0) if kind == "loiter" else args.clip_s
            n_k = int(clip_s * video.fps)
            if first + n_k > video.frame_count:
                print(f"{kind:<14} skipped: needs {clip_s:g} s of clip")
                continue
            scene = Scene(bank, video.fps, n_k, video.width, video.height, np.random.default_rng(i),
                          (first, first + n_k))
            ta = time.perf_counter()
            actors, _ = plan(scene, [kind])
            tb = time.perf_counter()
            for _ in render(footage, actors, first, n_k):
                pass
            tc = time.perf_counter()
            result = compose(footage, [kind], seed=i, out=Path(tmp) / f"{kind}.mp4", start_s=start_s, clip_s=clip_s)
            seg = next(((e.start_s, e.end_s) for e in result.events if e.threat), None)
            print(f"{kind:<14} {tb - ta:8.2f} {n_k / (tc - tb):11.1f} {result.frames_per_s:12.1f}  "
                  f"{'segment %.1f-%.1f s' % seg if seg else 'none (harmless)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
