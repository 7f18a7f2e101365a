"""Evidence on disk: one folder per (video content, sampling settings, front-end versions).

Layout of a saved evidence folder (``save_evidence`` / ``load_evidence``)::

    evidence.json   {"format": "uprm-evidence", "format_version": 1,
                     "video": {VideoInfo fields}, "sample_fps": 2.0, "mask_size": [w, h],
                     "versions": {front-end: version}, "warnings": [...],
                     "frames": [{"time_s", "frame_index", "n" (entities), "class_names": [...],
                                 "mask_sources": [...] or null (no masks), "scene_labels": [[label, p]],
                                 "fight_prob", "relations": [{"subject", "predicate", "object",
                                 "score", "evidence"}]}]}
    arrays.npz      entities of all frames stacked, frame k owning rows offsets[k]:offsets[k+1]:
                    offsets (F+1,) int64, boxes (E, 4) float32 xyxy px, class_ids (E,) int64,
                    scores (E,) float32, track_ids (E,) int64, keypoints (E, 17, 3) float32,
                    masks_packed (np.packbits of the (M, Hm, Wm) bool masks of frames that have
                    masks, in frame then entity order), background (F, D_bg) float32,
                    coarse (F, D_coarse) float32 (D = 0 when the layer was off), motion (E, M)
                    float32 (ENTITY_MOTION columns; absent when the motion layer was off)

The perception cache keys such folders by :func:`cache_key`; an interrupted run leaves
``<key>.partial/chunk_NNNNN/`` folders in the same format, one per finished chunk of samples, and the
next run resumes after the last one.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from uprm.evidence import ENTITY_MOTION, NUM_JOINTS, FrameEvidence, Relation, VideoEvidence, VideoInfo

FORMAT = "uprm-evidence"
FORMAT_VERSION = 1


class EvidenceFormatError(ValueError):
    """A saved evidence folder is missing, from another format version, or damaged."""


def default_cache_dir() -> Path:
    root = os.environ.get("UPRM_CACHE_DIR") or str(Path.home() / ".cache" / "uprm")
    return Path(root).expanduser() / "evidence"


def cache_key(content_hash: str, settings: dict, versions: dict[str, str]) -> str:
    blob = json.dumps({"content": content_hash, "settings": settings, "versions": versions,
                       "format": FORMAT_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _frames_payload(frames: list[FrameEvidence]) -> tuple[list[dict], dict[str, np.ndarray]]:
    meta = []
    offsets = [0]
    for f in frames:
        offsets.append(offsets[-1] + len(f))
        meta.append({
            "time_s": float(f.time_s), "frame_index": int(f.frame_index), "n": len(f),
            "class_names": list(f.class_names),
            "mask_sources": None if f.masks is None else list(f.mask_sources),
            "scene_labels": [[str(label), float(p)] for label, p in f.scene_labels],
            "fight_prob": float(f.fight_prob),
            "relations": [{"subject": int(r.subject), "predicate": str(r.predicate), "object": int(r.object),
                           "score": float(r.score), "evidence": str(r.evidence)} for r in f.relations],
        })

    def cat(name: str, shape: tuple, dtype) -> np.ndarray:
        parts = [np.asarray(getattr(f, name), dtype).reshape((-1, *shape)) for f in frames]
        return np.concatenate(parts) if parts else np.zeros((0, *shape), dtype)

    masks = [f.masks for f in frames if f.masks is not None and len(f)]
    packed = np.packbits(np.concatenate([m.reshape(len(m), -1) for m in masks]).ravel()) if masks \
        else np.zeros(0, np.uint8)

    def vectors(name: str) -> np.ndarray:
        dims = {len(getattr(f, name)) for f in frames}
        if len(dims) > 1:
            raise ValueError(f"FrameEvidence.{name} lengths differ across frames: {sorted(dims)}")
        dim = dims.pop() if dims else 0
        return np.stack([np.asarray(getattr(f, name), np.float32) for f in frames]) if frames and dim \
            else np.zeros((len(frames), 0), np.float32)

    arrays = {
        "offsets": np.asarray(offsets, np.int64),
        "boxes": cat("boxes", (4,), np.float32), "class_ids": cat("class_ids", (), np.int64),
        "scores": cat("scores", (), np.float32), "track_ids": cat("track_ids", (), np.int64),
        "keypoints": cat("keypoints", (NUM_JOINTS, 3), np.float32), "masks_packed": packed,
        "background": vectors("background"), "coarse": vectors("coarse"),
    }
    with_motion = [f.motion is not None for f in frames]
    if any(with_motion):
        if not all(with_motion):
            raise ValueError("FrameEvidence.motion is set on some frames only: the motion layer runs on all or none")
        arrays["motion"] = cat("motion", (len(ENTITY_MOTION),), np.float32)
    return meta, arrays


def _frames_from_payload(meta: list[dict], arrays, mask_size: tuple[int, int]) -> list[FrameEvidence]:
    wm, hm = mask_size
    off = arrays["offsets"]
    packed = arrays["masks_packed"]
    n_mask_rows = sum(m["n"] for m in meta if m["mask_sources"] is not None)
    bits = np.unpackbits(packed, count=n_mask_rows * hm * wm).astype(bool) if n_mask_rows \
        else np.zeros(0, bool)
    bits = bits.reshape(n_mask_rows, hm, wm)
    boxes, class_ids, scores = arrays["boxes"], arrays["class_ids"], arrays["scores"]
    track_ids, keypoints = arrays["track_ids"], arrays["keypoints"]
    background, coarse = arrays["background"], arrays["coarse"]
    motion = arrays.get("motion")
    if motion is not None and motion.shape[1:] != (len(ENTITY_MOTION),):
        raise EvidenceFormatError(f"motion columns {motion.shape[1:]} are not ENTITY_MOTION's "
                                  f"{len(ENTITY_MOTION)}: evidence from another version; delete it and rerun")
    frames = []
    mask_row = 0
    for k, m in enumerate(meta):
        a, b = int(off[k]), int(off[k + 1])
        masks = None
        if m["mask_sources"] is not None:
            masks = bits[mask_row: mask_row + m["n"]]
            mask_row += m["n"]
        frames.append(FrameEvidence(
            time_s=m["time_s"], frame_index=m["frame_index"], boxes=boxes[a:b], class_ids=class_ids[a:b],
            class_names=list(m["class_names"]), scores=scores[a:b], track_ids=track_ids[a:b],
            keypoints=keypoints[a:b], relations=[Relation(**r) for r in m["relations"]], masks=masks,
            mask_sources=list(m["mask_sources"] or []), background=background[k], coarse=coarse[k],
            scene_labels=[(str(label), float(p)) for label, p in m["scene_labels"]],
            fight_prob=float(m["fight_prob"]), motion=None if motion is None else motion[a:b],
        ))
    return frames


def _write_folder(folder: Path, doc: dict, arrays: dict[str, np.ndarray]) -> Path:
    """Write arrays.npz then evidence.json, each through a temporary file and a rename.

    evidence.json goes last and an old one is removed first, so a crash never leaves a readable
    folder whose two files come from different runs. Other files in the folder are left alone.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    doc_path, arr_path = folder / "evidence.json", folder / "arrays.npz"
    doc_path.unlink(missing_ok=True)
    tmp = folder / f".arrays.npz.tmp-{os.getpid()}"
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)  # uncompressed: loads in milliseconds; masks are already bit-packed
    os.replace(tmp, arr_path)
    tmp = folder / f".evidence.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(doc, ensure_ascii=False))
    os.replace(tmp, doc_path)
    return folder


def _read_folder(folder: Path) -> tuple[dict, dict[str, np.ndarray]]:
    folder = Path(folder)
    doc_path, arr_path = folder / "evidence.json", folder / "arrays.npz"
    if not doc_path.is_file() or not arr_path.is_file():
        raise EvidenceFormatError(f"{folder} is not an evidence folder (needs evidence.json and arrays.npz)")
    try:
        doc = json.loads(doc_path.read_text())
        with np.load(arr_path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise EvidenceFormatError(f"{folder}: damaged evidence files ({exc}); delete the folder and rerun") from exc
    if doc.get("format") != FORMAT or doc.get("format_version") != FORMAT_VERSION:
        raise EvidenceFormatError(
            f"{folder}: format {doc.get('format')} v{doc.get('format_version')}, expected {FORMAT} "
            f"v{FORMAT_VERSION}; delete it and rerun perception"
        )
    return doc, arrays


def save_evidence(evidence: VideoEvidence, folder: str | Path) -> Path:
    """Write a VideoEvidence as evidence.json + arrays.npz in folder (replacing what was there)."""
    meta, arrays = _frames_payload(evidence.frames)
    doc = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "video": asdict(evidence.video),
        "sample_fps": evidence.sample_fps, "mask_size": list(evidence.mask_size),
        "versions": dict(evidence.versions), "warnings": list(evidence.warnings), "frames": meta,
    }
    return _write_folder(Path(folder), doc, arrays)


def load_evidence(folder: str | Path) -> VideoEvidence:
    """Read a folder written by save_evidence."""
    doc, arrays = _read_folder(Path(folder))
    mask_size = tuple(int(v) for v in doc["mask_size"])
    return VideoEvidence(
        video=VideoInfo(**doc["video"]), sample_fps=float(doc["sample_fps"]),
        frames=_frames_from_payload(doc["frames"], arrays, mask_size), mask_size=mask_size,
        versions=dict(doc["versions"]), warnings=list(doc["warnings"]),
    )


def save_chunk(folder: str | Path, frames: list[FrameEvidence], mask_size: tuple[int, int],
               warnings: list[str]) -> Path:
    """One finished chunk of an interrupted run (same format, no video header)."""
    meta, arrays = _frames_payload(frames)
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "mask_size": list(mask_size),
           "warnings": list(warnings), "frames": meta}
    return _write_folder(Path(folder), doc, arrays)


def load_chunk(folder: str | Path) -> tuple[list[FrameEvidence], list[str]]:
    doc, arrays = _read_folder(Path(folder))
    mask_size = tuple(int(v) for v in doc["mask_size"])
    return _frames_from_payload(doc["frames"], arrays, mask_size), list(doc["warnings"])
