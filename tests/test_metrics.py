"""Metric functions against hand-computed cases (and real CUVA explanations for the text scores)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from uprm.metrics import (
    MetricError,
    average_precision,
    bleu,
    frame_level,
    interpolated_prec_rec,
    rouge_l,
    scores_to_segments,
    temporal_map,
    text_scores,
)
from uprm.segments import Segment


def seg(video: str, start: float, end: float, label: str = "threat", score: float | None = None) -> Segment:
    return Segment(video, start, end, label, score)


# ---------------------------------------------------------------------------------------------------
# temporal mAP


def test_perfect_prediction_gives_map_one():
    gt = [seg("a", 0, 2), seg("a", 5, 8), seg("b", 1, 4)]
    pred = [seg(g.video_id, g.start_s, g.end_s, score=0.9 - 0.1 * i) for i, g in enumerate(gt)]
    scores = temporal_map(gt, pred, (0.1, 0.3, 0.5))
    assert scores.map_at == {0.1: 1.0, 0.3: 1.0, 0.5: 1.0}
    assert scores.average_map == 1.0


def test_half_overlap_matches_at_0_3_but_not_0_5():
    gt = [seg("a", 0, 2)]
    pred = [seg("a", 1, 3, score=0.9)]  # tIoU = 1 / 3
    scores = temporal_map(gt, pred, (0.3, 0.5))
    assert scores.map_at[0.3] == 1.0
    assert scores.map_at[0.5] == 0.0
    assert scores.average_map == 0.5


def test_duplicate_detection_is_a_false_positive():
    gt = [seg("a", 0, 10), seg("a", 20, 30)]
    pred = [seg("a", 0, 10, score=0.9), seg("a", 0, 10, score=0.8), seg("a", 20, 30, score=0.7)]
    # ranks: TP, FP (GT already taken), TP -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1;
    # interpolated: 1/2 * 1 + 1/2 * 2/3 = 5/6
    ap = average_precision(gt, pred, [0.5])
    assert ap[0] == pytest.approx(5 / 6)
    # without the duplicate the same ranking is perfect
    assert average_precision(gt, [pred[0], pred[2]], [0.5])[0] == 1.0


def test_duplicate_goes_to_next_best_unmatched_gt_when_above_threshold():
    gt = [seg("a", 0, 10), seg("a", 2, 12)]
    pred = [seg("a", 0, 10, score=0.9), seg("a", 0, 10, score=0.8)]
    # 2nd detection's best GT is taken; its tIoU with [2, 12] is 8/12 >= 0.5 -> TP; < 0.7 -> FP
    assert average_precision(gt, pred, [0.5])[0] == 1.0
    assert average_precision(gt, pred, [0.7])[0] == pytest.approx(0.5)


def test_two_classes_average_and_class_agnostic_mode():
    gt = [seg("a", 0, 10, "Fighting"), seg("b", 0, 10, "Arson")]
    pred = [
        seg("a", 0, 10, "Fighting", 0.9),  # right place, right class
        seg("b", 20, 30, "Arson", 0.8),  # wrong place
    ]
    scores = temporal_map(gt, pred, (0.5,))
    assert scores.ap_per_class == {"Arson": (0.0,), "Fighting": (1.0,)}
    assert scores.map_at[0.5] == 0.5
    # class-agnostic: one class, ranks TP then FP -> recall 1/2 at precision 1 -> AP 1/2
    agnostic = temporal_map(gt, pred, (0.5,), class_agnostic=True)
    assert list(agnostic.ap_per_class) == ["threat"]
    assert agnostic.map_at[0.5] == 0.5


def test_wrong_label_counts_only_in_class_aware_mode():
    gt = [seg("a", 0, 10, "Fighting")]
    pred = [seg("a", 0, 10, "threat", 0.9)]
    aware = temporal_map(gt, pred, (0.5,))
    assert aware.map_at[0.5] == 0.0
    assert aware.n_pred_ignored == 1  # "threat" has no GT: dropped, as ActivityNet does
    assert temporal_map(gt, pred, (0.5,), class_agnostic=True).map_at[0.5] == 1.0


def test_empty_prediction_gives_map_zero_and_fnr_one():
    gt = [seg("a", 0, 10), seg("b", 3, 4)]
    scores = temporal_map(gt, [], (0.1, 0.3, 0.5))
    assert scores.average_map == 0.0
    frames = frame_level(gt, [], fps=10)
    assert frames.fnr == 1.0
    assert frames.f2 == 0.0
    assert frames.fn_frames == 100 + 10


def test_detection_on_video_without_gt_is_false_positive():
    gt = [seg("a", 0, 10)]
    pred = [seg("normal", 0, 10, score=0.95), seg("a", 0, 10, score=0.9)]
    # FP then TP: precision 1/2 at recall 1 -> AP 1/2
    assert temporal_map(gt, pred, (0.5,)).map_at[0.5] == 0.5


def test_score_ties_keep_input_order():
    gt = [seg("a", 0, 10)]
    tp_first = [seg("a", 0, 10, score=0.5), seg("a", 50, 60, score=0.5)]
    fp_first = [seg("a", 50, 60, score=0.5), seg("a", 0, 10, score=0.5)]
    assert temporal_map(gt, tp_first, (0.5,)).average_map == 1.0
    assert temporal_map(gt, fp_first, (0.5,)).average_map == 0.5


def test_interpolated_prec_rec_by_hand():
    # precision 1, 0.5, 2/3 at recall 0.5, 0.5, 1 (the duplicate case)
    assert interpolated_prec_rec(np.array([1, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0])) == pytest.approx(5 / 6)
    # recall never reaching 1: the missing part counts as zero precision
    assert interpolated_prec_rec(np.array([1.0]), np.array([0.25])) == pytest.approx(0.25)


def test_bad_inputs_raise_metric_errors():
    gt = [seg("a", 0, 10)]
    with pytest.raises(MetricError, match="no score"):
        temporal_map(gt, [seg("a", 0, 10)])
    with pytest.raises(MetricError, match=r"\(0, 1\]"):
        temporal_map(gt, [], (0.0, 0.5))
    assert math.isnan(temporal_map([], [], (0.5,)).average_map)


# ---------------------------------------------------------------------------------------------------
# frame-level FNR and F2


def test_frame_level_by_hand():
    gt = [seg("v1", 1.0, 2.0), seg("v2", 0.0, 1.0)]  # frames 10..19 of v1, 0..9 of v2 at 10 fps
    pred = [seg("v1", 1.5, 3.0, score=0.7)]  # frames 15..29 of v1
    s = frame_level(gt, pred, fps=10)
    assert (s.tp_frames, s.fp_frames, s.fn_frames) == (5, 10, 15)
    assert s.recall == pytest.approx(0.25)
    assert s.fnr == pytest.approx(0.75)
    assert s.precision == pytest.approx(1 / 3)
    # F2 = 5 P R / (4 P + R) = (5/12) / (19/12)
    assert s.f2 == pytest.approx(5 / 19)


def test_frame_level_duration_clips_predictions():
    gt = [seg("v1", 1.0, 2.0)]
    pred = [seg("v1", 1.5, 3.0, score=0.7)]
    s = frame_level(gt, pred, {"v1": 2.5}, fps=10)  # frames 0..24 exist
    assert (s.tp_frames, s.fp_frames, s.fn_frames) == (5, 5, 5)
    assert s.f2 == pytest.approx(5 * 0.5 * 0.5 / (4 * 0.5 + 0.5))


def test_frame_level_from_per_step_scores_equals_segments():
    gt = [seg("v1", 1.0, 2.0), seg("v2", 0.0, 1.0)]
    # 0.5 s steps: steps 3..5 >= 0.5 -> [1.5, 3.0), the same prediction as in the by-hand case
    scores = {"v1": [0.0, 0.1, 0.2, 0.9, 0.6, 0.7, 0.1], "v2": [0.0, 0.2]}
    s = frame_level(gt, scores, fps=10, threshold=0.5, score_fps=2)
    assert (s.tp_frames, s.fp_frames, s.fn_frames) == (5, 10, 15)
    assert s.f2 == pytest.approx(5 / 19)


def test_frame_grid_survives_float_rounding():
    # 0.1 * 30 = 3.0000000000000004: frame 3 must still count as inside [0.1, 0.2)
    s = frame_level([seg("v", 0.1, 0.2)], [seg("v", 0.1, 0.2, score=1.0)], fps=30)
    assert (s.tp_frames, s.fp_frames, s.fn_frames) == (3, 0, 0)


def test_scores_to_segments_runs():
    segs = scores_to_segments("v", [0.9, 0.8, 0.1, 0.6], step_fps=2, threshold=0.5)
    assert [(s.start_s, s.end_s) for s in segs] == [(0.0, 1.0), (1.5, 2.0)]
    assert segs[0].score == pytest.approx(0.85)


def test_frame_level_without_gt_positives_is_nan():
    s = frame_level([], [seg("v", 0, 1, score=1.0)], fps=10)
    assert math.isnan(s.fnr) and math.isnan(s.f2)
    assert s.fp_frames == 10


# ---------------------------------------------------------------------------------------------------
# text metrics on real CUVA explanations


@pytest.fixture(scope="module")
def cuva_causes(shared_dir) -> list[str]:
    path = shared_dir / "data" / "cuva" / "gt_Causev1.json"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return [item["answer"] for item in json.loads(path.read_text())][:6]


def test_rouge_and_bleu_identical_and_unrelated(cuva_causes):
    refs = cuva_causes
    assert rouge_l(refs, refs) == pytest.approx(1.0)
    assert bleu(refs, refs) == pytest.approx(100.0)
    shifted = refs[1:] + refs[:1]  # each reference against another video's cause
    assert rouge_l(refs, shifted) < 0.5
    assert bleu(refs, shifted) < 30.0
    with pytest.raises(MetricError, match="one generated text per reference"):
        rouge_l(refs, refs[:-1])


def test_rouge_l_uses_the_stemmer():
    # "cars"/"car" and "crashed"/"crash" match only after Porter stemming
    assert rouge_l(["two cars crashed"], ["two car crash"]) == pytest.approx(1.0)


@pytest.mark.slow
def test_sbert_cosine_on_real_explanations(cuva_causes):
    refs = cuva_causes
    same = text_scores(refs, refs)
    assert same.sb_cosine == pytest.approx(1.0, abs=1e-4)
    assert same.rouge_l == pytest.approx(1.0) and same.bleu == pytest.approx(100.0)
    unrelated = ["The weather is sunny and a cat sleeps on the sofa."] * len(refs)
    paraphrase = [f"The threat is attributed to this: {r}" for r in refs]
    low = text_scores(refs, unrelated).sb_cosine
    high = text_scores(refs, paraphrase).sb_cosine
    assert low < 0.3 < 0.8 < high < same.sb_cosine + 1e-6
