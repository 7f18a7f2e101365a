"""`python -m uprm perceive VIDEO --out DIR`: evidence JSON + arrays and an overlay preview.

Example::

    python -m uprm perceive ../shared/media/vtest.avi --out runs/vtest --fps 2
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "perceive",
        help="run the frozen front-ends over a video; write evidence and an overlay preview",
        description="Run detector, pose, tracks, scene graph, masks, clip/frame features and the motion "
                    "layer (optical flow per entity, scene changes that stayed) over VIDEO. "
                    "Writes DIR/evidence.json + DIR/arrays.npz (format: uprm/perception/cache.py) and "
                    "DIR/preview.mp4 (H.264, evidence drawn on the sampled frames). Results are cached "
                    "per video in ${UPRM_CACHE_DIR:-~/.cache/uprm}/evidence.",
        epilog="example: python -m uprm perceive ../shared/media/vtest.avi --out runs/vtest --fps 2",
    )
    p.add_argument("video", type=Path, help="video file (mp4, avi, mkv, webm, mov)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--fps", type=float, default=None,
                   help="samples per second (default 2: a person moves about a body width between samples)")
    p.add_argument("--sam2-checkpoint", type=Path, default=None,
                   help="SAM 2 checkpoint (.pt): masks from SAM 2 instead of selfie segmentation")
    p.add_argument("--sam2-config", default=None, help="SAM 2 config name when the checkpoint's name does not tell")
    p.add_argument("--no-preview", action="store_true", help="skip the overlay preview video")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="evidence cache folder (default ${UPRM_CACHE_DIR:-~/.cache/uprm}/evidence)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from uprm.overlay import render_overlay
    from uprm.perception import PerceptionSettings, perceive
    from uprm.perception.cache import save_evidence
    from uprm.video import DEFAULT_SAMPLE_FPS, VideoError

    try:
        settings = PerceptionSettings(
            sample_fps=args.fps or DEFAULT_SAMPLE_FPS,
            sam2_checkpoint=str(args.sam2_checkpoint) if args.sam2_checkpoint else None,
            sam2_config=args.sam2_config,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    bar = tqdm(total=100, unit="%", bar_format="{desc:<28} {percentage:3.0f}%|{bar}| {elapsed}")
    state = {"stage": None}

    def progress(stage: str, fraction: float) -> None:
        if stage != state["stage"]:
            state["stage"] = stage
            bar.set_description_str(stage)
        bar.n = int(round(100 * fraction))
        bar.refresh()

    try:
        evidence = perceive(args.video, settings, progress=progress, cache_dir=args.cache_dir)
        folder = save_evidence(evidence, args.out)
        preview = None
        if not args.no_preview:
            preview = render_overlay(args.video, evidence, args.out / "preview.mp4", progress=progress)
    except ValueError as exc:  # VideoError / PerceptionError: the message says what to do
        bar.close()
        kind = "video" if isinstance(exc, VideoError) else "error"
        print(f"{kind}: {exc}", file=sys.stderr)
        return 1
    bar.close()
    people = [int(f.is_person.sum()) for f in evidence.frames]
    summary = {
        "video": evidence.video.path, "duration_s": round(evidence.video.duration_s, 2),
        "samples": len(evidence.frames), "sample_fps": evidence.sample_fps,
        "max_people_in_a_sample": max(people, default=0),
        "tracks": len({int(t) for f in evidence.frames for t in f.track_ids if t >= 0}),
        "relations": sum(len(f.relations) for f in evidence.frames),
        "evidence": str(folder / "evidence.json"), "arrays": str(folder / "arrays.npz"),
        "preview": str(preview) if preview else None, "warnings": evidence.warnings,
    }
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0
