"""Perception speed on the full 79.5 s vtest clip at the default sampling (2 fps); prints figures.

    python benchmarks/bench_perception.py [--video PATH] [--fps 2] [--threads 2] [--no-warm]

Per-stage seconds are measured in the lane that runs them (the two lanes overlap, so they add up to
more than the wall-clock total); CPU seconds per stage do not depend on other processes' load. Reports seconds per front-end and in total for a cold run (fresh process, empty cache: model
loading included), a warm run (models loaded, cache bypassed), a run from the cache; the ratio of
the cold total to decoding the same frames alone; peak memory; and how far the shared fight-model
trunk is from running mc3_18 on each step's clip separately. Targets (no SAM 2): whole perception
<= 40 s (stretch 24 s), from cache < 2 s. The CPU may be shared: read the load average printed first.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from uprm.perception import PerceptionSettings  # noqa: E402
from uprm.perception.pipeline import Perceiver  # noqa: E402
from uprm.video import NearestSampler, iter_frames, probe  # noqa: E402

STAGES = ("probe", "decode", "detector", "tracker", "masks_bg", "pose", "masks_selfie", "masks_sam2",
          "scene", "fight", "waiting", "relations", "motion", "cache_save", "cache_load")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is KiB on Linux


def decode_only(path: Path, settings: PerceptionSettings) -> float:
    """Decode every frame and convert the frames perception samples (both grids), nothing else."""
    from uprm.perception.coarse import CLIP_FPS, FIGHT_RESIZE_HW

    info = probe(path)
    t = time.perf_counter()
    samples, clips = NearestSampler(settings.sample_fps), NearestSampler(min(CLIP_FPS, info.fps))
    h, w = FIGHT_RESIZE_HW
    for df in iter_frames(path):
        for f in samples.push(df):
            f.rgb(max_side=settings.max_side)
        for f in clips.push(df):
            f.rgb(size=(w, h))
    return time.perf_counter() - t


def table(title: str, timings: dict[str, float], cpu: dict[str, float] | None = None) -> None:
    cpu = cpu or {}
    total = timings.get("total", sum(v for k, v in timings.items() if k != "total"))
    print(f"\n{title}: total {total:6.2f} s wall")
    print(f"  {'stage':<14} {'wall s':>8} {'CPU s':>8}")
    for k in STAGES:
        if k in timings:
            c = f"{cpu[k]:8.2f}" if k in cpu else " " * 8
            print(f"  {k:<14} {timings[k]:8.2f} {c}")


def fight_fidelity(perceiver: Perceiver, path: Path, evidence, n_steps: int = 12) -> tuple[float, float]:
    """max |P(fight) shared - exact| and min feature cosine over n_steps evenly spread steps."""
    from uprm.perception.coarse import CLIP_FPS, FIGHT_RESIZE_HW, clip_window, fight_preprocess

    info = probe(path)
    h, w = FIGHT_RESIZE_HW
    sampler = NearestSampler(min(CLIP_FPS, info.fps))
    times, frames = [], []
    for df in iter_frames(path):
        for f in sampler.push(df):
            times.append(f.time_s)
            frames.append(fight_preprocess(f.rgb(size=(w, h))))
    model = perceiver._model("fight")
    picks = np.linspace(0, len(evidence.frames) - 1, n_steps).round().astype(int)
    worst_p, worst_cos = 0.0, 1.0
    for k in picks:
        f = evidence.frames[k]
        centre = int(np.argmin(np.abs(np.asarray(times) - f.time_s)))
        a, b = clip_window(centre, len(frames))  # the window the pipeline uses
        feature, prob = model.exact_clip(np.stack(frames[a:b]))
        shared = f.coarse[:-1]
        worst_p = max(worst_p, abs(prob - f.fight_prob))
        worst_cos = min(worst_cos, float(shared @ feature / np.linalg.norm(shared) / np.linalg.norm(feature)))
    return worst_p, worst_cos


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=ROOT.parent / "shared" / "media" / "vtest.avi")
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-warm", action="store_true", help="skip the second (warm) run")
    args = parser.parse_args()
    if not args.video.is_file():
        print(f"video {args.video} not found (the shared folder sits beside the repository)")
        return 1
    print(f"video {args.video.name}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    settings = PerceptionSettings(sample_fps=args.fps, num_threads=args.threads)
    info = probe(args.video)
    print(f"{info.duration_s:.1f} s, {info.frame_count} frames at {info.fps:g} fps, {info.width}x{info.height}")

    with tempfile.TemporaryDirectory() as cache:
        perceiver = Perceiver(settings)
        t, cpu = time.perf_counter(), time.process_time()
        evidence = perceiver.run(args.video, cache_dir=cache)
        cold, cold_cpu = time.perf_counter() - t, time.process_time() - cpu
        cold_timings = dict(perceiver.last_timings_s)
        table(f"cold (models loaded on first use, {len(evidence.frames)} samples)", cold_timings,
              perceiver.last_cpu_s)
        rss_cold = peak_rss_mb()

        warm = warm_cpu = float("nan")
        if not args.no_warm:
            t, cpu = time.perf_counter(), time.process_time()
            perceiver.run(args.video, cache_dir=cache, use_cache=False)
            warm, warm_cpu = time.perf_counter() - t, time.process_time() - cpu
            table("warm (models already loaded, cache bypassed)", perceiver.last_timings_s, perceiver.last_cpu_s)

        t = time.perf_counter()
        again = perceiver.run(args.video, cache_dir=cache)
        from_cache = time.perf_counter() - t
        table("from cache (hash + load)", perceiver.last_timings_s)
        assert len(again.frames) == len(evidence.frames)

    dec = decode_only(args.video, settings)
    worst_p, worst_cos = fight_fidelity(perceiver, args.video, evidence)
    people = [int(f.is_person.sum()) for f in evidence.frames]
    tracks = {int(t) for f in evidence.frames for t in f.track_ids[f.is_person] if t >= 0}
    print("\nsummary")
    print(f"  cold total                 {cold:7.2f} s   (target <= 40 s, stretch 24 s); "
          f"CPU {cold_cpu:.1f} s in all threads")
    print(f"  warm total                 {warm:7.2f} s   CPU {warm_cpu:.1f} s")
    print(f"  from cache                 {from_cache:7.2f} s   (target < 2 s)")
    print(f"  decode-only, same frames   {dec:7.2f} s   -> cold / decode = {cold / dec:5.1f}x")
    print(f"  real-time factor (cold)    {cold / info.duration_s:7.2f}   (seconds of work per second of video)")
    print(f"  peak memory (RSS)          {rss_cold:7.0f} MB")
    print(f"  people per sample          mean {np.mean(people):.1f}, max {max(people)}; person tracks {len(tracks)}")
    print(f"  relations                  {sum(len(f.relations) for f in evidence.frames)}")
    print(f"  shared vs per-clip mc3_18  max |dP(fight)| {worst_p:.3f}, min feature cosine {worst_cos:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
