"""A composed dataset: clips cut from real footage, each with 0-2 threats and 0-2 harmless events.

    out_dir/videos/<video_id>.mp4     H.264 clips
    out_dir/ground_truth.json         one ActivityNet ground truth for all clips (python -m uprm evaluate --gt)
    out_dir/manifest.json             per clip: source window, seed and every event, harmless ones included
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from uprm.compose.compositor import GT_VERSION, ComposedVideo, Footage, compose, prepare, write_gt
from uprm.compose.errors import ComposeError

CLIP_RANGE_S = (20.0, 40.0)
THREATS_PER_CLIP_P = (0.2, 0.45, 0.35)  # P(0), P(1), P(2) threat events: some clips hold none


@dataclass
class Dataset:
    out_dir: Path
    gt_path: Path
    manifest_path: Path
    videos: list[ComposedVideo] = field(default_factory=list)


def make_dataset(sources: Sequence[str | Path | Footage], n_videos: int, seed: int, out_dir: str | Path,
                 clip_s: float | None = None, *, use_cache: bool = True,
                 progress: Callable[[str], None] | None = None) -> Dataset:
    """Compose ``n_videos`` clips from static-camera ``sources`` (paths, or prepared ``Footage``);
    ``clip_s`` None draws 20-40 s per clip (never more than the source has)."""
    if not sources:
        raise ComposeError("no source video given; pass at least one static-camera video")
    if n_videos < 1:
        raise ComposeError(f"number of videos must be at least 1, got {n_videos}")
    if clip_s is not None and clip_s < 5:
        raise ComposeError(f"clip_s must be at least 5 seconds, got {clip_s:g}")
    say = progress or (lambda _msg: None)
    footages: list[Footage] = []
    for source in sources:
        if isinstance(source, Footage):
            footages.append(source)
            continue
        say(f"preparing {source} (clean plate and sprites; cached after the first time)")
        footages.append(prepare(source, use_cache=use_cache))
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    database: dict[str, dict] = {}
    entries: list[dict] = []
    videos: list[ComposedVideo] = []
    for i in range(n_videos):
        footage = footages[int(rng.integers(len(footages)))]
        total_s = footage.video.duration_s
        length_s = min(total_s, clip_s if clip_s is not None else float(rng.uniform(*CLIP_RANGE_S)))
        length_s = round(int(length_s * footage.video.fps) / footage.video.fps, 3)  # whole frames
        start_s = round(int(rng.uniform(0, total_s - length_s) * footage.video.fps) / footage.video.fps, 3)
        n_threats = int(rng.choice(3, p=THREATS_PER_CLIP_P))
        # a clip without threats still gets pasted passers-by: pasting must never mean "threat"
        n_harmless = int(rng.integers(0 if n_threats else 1, 3))
        clip_seed = int(rng.integers(2**31))
        video_id = f"composed_s{seed}_{i:04d}"
        result = compose(footage, n_threats, clip_seed, out_dir / "videos" / f"{video_id}.mp4", start_s=start_s,
                         clip_s=length_s, n_harmless=n_harmless, video_id=video_id, gt_path="")
        database.update(result.gt["database"])
        videos.append(result)
        entries.append({
            "video_id": video_id, "path": f"videos/{video_id}.mp4",
            "source": Path(footage.video.path).name, "source_sha256": footage.video.content_hash,
            "source_start_s": start_s, "duration_s": length_s, "fps": footage.video.fps, "seed": clip_seed,
            "events": [e.to_dict() for e in result.events],
        })
        kinds = ", ".join(f"{e.kind}{'' if e.threat else ' (harmless)'}" for e in result.events) or "nothing"
        say(f"[{i + 1}/{n_videos}] {video_id}: {length_s:g} s of {entries[-1]['source']} from {start_s:g} s: "
            f"{kinds} ({result.frames_per_s:.0f} frames/s)")
    gt_path = write_gt({"version": GT_VERSION, "database": database}, out_dir / "ground_truth.json")
    manifest_path = out_dir / "manifest.json"
    manifest_path.write_text(json.dumps({"version": GT_VERSION, "seed": seed, "videos": entries}, indent=1) + "\n",
                             encoding="utf-8")
    return Dataset(out_dir, gt_path, manifest_path, videos)
