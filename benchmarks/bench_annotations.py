"""Annotation store figures: correction writes per second and latency with 1 and 10 concurrent
writer processes, and export time for 10,000 segments in every format.

Targets: p95 write latency < 20 ms with 10 writers; export of 10,000 segments < 2 s.

    python benchmarks/bench_annotations.py            # full run (~1 min on 2 shared cores)
    python benchmarks/bench_annotations.py --quick    # fewer writes, smaller export
"""
from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotations import Store, VideoRecord  # noqa: E402
from annotations.formats import FORMATS, collect, export  # noqa: E402
from uprm.segments import Segment  # noqa: E402

CTX = multiprocessing.get_context("fork")


def _seed(db: Path, videos: int, per_video: int, *, accept: bool, durable: bool = False) -> list[int]:
    with Store(db, durable=durable) as store:
        vids = []
        with store.batch():
            for v in range(videos):
                fps = 30.0
                frames = max(900, per_video * 60 + 60)
                vid = store.add_video(VideoRecord(name=f"video{v:05d}", fps=fps, frame_count=frames,
                                                  duration_s=frames / fps, path=f"videos/video{v:05d}.mp4"))
                store.add_analysis(vid, "uprm-small", {"threshold": 0.5}, [
                    Segment(f"video{v:05d}", 2.0 * i + 0.5, 2.0 * i + 1.5, "threat", 0.8,
                            f"person {i} pushes another near the door") for i in range(per_video)])
                vids.append(vid)
            if accept:
                for vid in vids:
                    for seg in store.current_segments(vid):
                        store.accept(seg.id, "bench")
    return vids


def _writer(db: str, vids: list[int], who: str, n: int, durable: bool, pace_s: float, barrier, queue) -> None:
    with Store(db, durable=durable) as store:
        seg_ids = [s.id for vid in vids for s in store.current_segments(vid)]
        barrier.wait()
        start = time.perf_counter()
        lat = []
        for i in range(n):
            if pace_s:  # a fixed schedule, one write every pace_s, like an annotator clicking
                time.sleep(max(0.0, start + i * pace_s - time.perf_counter()))
            seg = seg_ids[(i * 7 + hash(who)) % len(seg_ids)]
            t0 = time.perf_counter()
            if i % 3 == 0:
                store.accept(seg, who)
            elif i % 3 == 1:
                store.edit_cause(seg, f"{who} note {i}", who)
            else:
                store.edit_bounds(seg, 0.5, 1.4, who)
            lat.append(time.perf_counter() - t0)
        queue.put((start, time.perf_counter(), lat))


def bench_writes(writers: int, per_writer: int, durable: bool, pace_s: float = 0.0) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "w.db"
        vids = _seed(db, videos=4, per_video=10, accept=False, durable=durable)
        barrier, queue = CTX.Barrier(writers), CTX.Queue()
        procs = [CTX.Process(target=_writer,
                             args=(str(db), vids, f"w{k}", per_writer, durable, pace_s, barrier, queue))
                 for k in range(writers)]
        for p in procs:
            p.start()
        results = [queue.get(timeout=300) for _ in procs]
        for p in procs:
            p.join()
        with Store(db) as store:
            stored = store.db.execute("SELECT count(*) FROM corrections").fetchone()[0]
    assert stored == writers * per_writer, f"lost corrections: {stored} != {writers * per_writer}"
    lat_ms = sorted(x * 1000 for _, _, lat in results for x in lat)
    wall = max(end for _, end, _ in results) - min(start for start, _, _ in results)
    q = statistics.quantiles(lat_ms, n=100)
    return {"writes": len(lat_ms), "writes_per_s": len(lat_ms) / wall, "p50_ms": q[49], "p95_ms": q[94],
            "p99_ms": q[98], "max_ms": lat_ms[-1]}


def bench_export(videos: int, per_video: int, formats: tuple[str, ...], repeats: int = 3) -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "e.db"
        t0 = time.perf_counter()
        _seed(db, videos, per_video, accept=True)
        out["seed_s"] = time.perf_counter() - t0
        with Store(db) as store:
            best = min(_timed(lambda: collect(store)) for _ in range(repeats))
            out["derive_state_s"] = best
            for fmt in formats:
                out[fmt] = min(_timed(lambda: export(store, fmt, Path(tmp) / fmt)) for _ in range(repeats))
            n = sum(len(ev.segments) for ev in collect(store)[0])
    out["segments"] = n
    return out


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    per = 40 if args.quick else 200

    print("correction writes: each one BEGIN IMMEDIATE transaction, WAL, one process per writer;")
    print("'as fast as possible' saturates the 2 shared cores; 'every 100 ms' paces each writer")
    print("(10 writers x 10 writes/s, still far above a team of annotators clicking)")
    print(f"{'writers':>8} {'sync':>7} {'load':>20} {'writes':>7} {'writes/s':>9} {'p50 ms':>8} "
          f"{'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for writers, durable, pace_s in ((1, False, 0.0), (1, True, 0.0), (10, False, 0.0), (10, True, 0.0),
                                     (10, False, 0.1), (10, True, 0.1)):
        n = per if writers == 1 else per // 2
        r = bench_writes(writers, n, durable, pace_s)
        load = f"every {pace_s * 1000:.0f} ms" if pace_s else "as fast as possible"
        print(f"{writers:>8} {'FULL' if durable else 'NORMAL':>7} {load:>20} {r['writes']:>7} "
              f"{r['writes_per_s']:>9.0f} {r['p50_ms']:>8.2f} {r['p95_ms']:>8.2f} {r['p99_ms']:>8.2f} "
              f"{r['max_ms']:>8.1f}")
    print("(NORMAL is the store's default; FULL is Store(durable=True))")

    videos, per_video = (20, 100) if args.quick else (100, 100)
    main_formats = tuple(f for f in FORMATS if f != "ucf_crime")
    r = bench_export(videos, per_video, main_formats)
    print(f"\nexport of {r['segments']} accepted segments ({videos} videos x {per_video}; best of 3; "
          f"seeding took {r['seed_s']:.1f} s)")
    print(f"  derive state (collect)  {r['derive_state_s']:.3f} s")
    for fmt in main_formats:
        print(f"  {fmt:<22}  {r[fmt]:.3f} s")
    # the UCF-Crime txt holds at most 2 segments per video: same segment count, more videos
    ucf_videos = (videos * per_video) // 2
    r = bench_export(ucf_videos, 2, ("ucf_crime",))
    print(f"  {'ucf_crime':<22}  {r['ucf_crime']:.3f} s  ({r['segments']} segments, {ucf_videos} videos x 2; "
          f"derive state {r['derive_state_s']:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
