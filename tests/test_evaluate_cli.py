"""`python -m uprm evaluate` as a subprocess and through main(argv): real UCF-Crime GT, real CUVA texts."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from uprm.__main__ import main
from uprm.formats import read_ucf_crime_txt, write_activitynet_gt, write_activitynet_results
from uprm.segments import Segment

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "eval"


@pytest.fixture(scope="module")
def ucf_path(shared_dir) -> Path:
    path = shared_dir / "data" / "ucf_crime" / "Temporal_Anomaly_Annotation.txt"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="module")
def cuva_path(shared_dir) -> Path:
    path = shared_dir / "data" / "cuva" / "gt_Causev1.json"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="module")
def ucf_segments(ucf_path) -> list[Segment]:
    return read_ucf_crime_txt(ucf_path)[0]


def run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "uprm", "evaluate", *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )


def run_main(capsys, *args: str | Path) -> tuple[int, str, str]:
    code = main(["evaluate", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def write_pred(tmp_path: Path, name: str, segments: list[Segment]) -> Path:
    path = tmp_path / name
    write_activitynet_results(segments, path)
    return path


# ---------------------------------------------------------------------------------------------------
# segments on the real UCF-Crime ground truth


def test_subprocess_perfect_predictions_class_agnostic(ucf_path, ucf_segments, tmp_path):
    perfect = [Segment(s.video_id, s.start_s, s.end_s, "threat", 1.0) for s in ucf_segments]
    pred = write_pred(tmp_path, "perfect.json", perfect)
    proc = run_cli("--gt", ucf_path, "--pred", pred, "--class-agnostic", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["mAP"] == {"0.1": 1.0, "0.2": 1.0, "0.3": 1.0}  # UCF-Crime's default tIoUs
    assert result["average_mAP"] == 1.0
    assert result["FNR"] == 0.0 and result["F2"] == 1.0
    assert result["n_videos"] == 290 and result["n_gt_segments"] == 156


def test_main_perfect_per_class_table(capsys, ucf_path, ucf_segments, tmp_path):
    # the labels are the UCF classes, so the class-aware mAP is perfect too; ids without ".mp4"
    perfect = [Segment(s.video_id.removesuffix(".mp4"), s.start_s, s.end_s, s.label, 0.8)
               for s in ucf_segments]
    code, out, err = run_main(capsys, "--gt", ucf_path, "--pred", write_pred(tmp_path, "p.json", perfect))
    assert code == 0, err
    header, values = out.splitlines()[-2:]
    assert header.split() == ["FNR", "F2", "mAP@0.1", "mAP@0.2", "mAP@0.3", "avg"]
    assert values.split() == ["0.00", "100.00", "100.00", "100.00", "100.00", "100.00"]
    assert "matched 140 prediction video ids" in err


def test_main_first_halves_give_hand_computed_values(capsys, ucf_path, ucf_segments, tmp_path):
    # keep frames s .. m-1 of each GT pair s e (m = (s+e)//2): tIoU (m-s)/(e-s) in [0.48, 0.5]
    frames = [(round(s.start_s * 30), round(s.end_s * 30)) for s in ucf_segments]
    halves = [Segment(s.video_id, a / 30, ((a + b) // 2) / 30, "threat", 0.5)
              for s, (a, b) in zip(ucf_segments, frames)]
    code, out, err = run_main(capsys, "--gt", ucf_path, "--pred", write_pred(tmp_path, "h.json", halves),
                              "--class-agnostic", "--tiou", "0.3", "0.4", "0.6", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["mAP"] == {"0.3": 1.0, "0.4": 1.0, "0.6": 0.0}
    assert result["average_mAP"] == pytest.approx(2 / 3)
    recall = sum((a + b) // 2 - a for a, b in frames) / sum(b - a for a, b in frames)
    assert result["FNR"] == pytest.approx(1 - recall)
    assert result["F2"] == pytest.approx(5 * recall / (4 + recall))  # precision is 1


def test_main_shifted_half_and_false_positives_on_normal_videos(capsys, ucf_path, ucf_segments, tmp_path):
    # each segment shifted by half its length: tIoU 1/3, matched at 0.3 but not at 0.5
    shifted = [Segment(s.video_id, s.start_s + s.duration_s / 2, s.end_s + s.duration_s / 2, "threat", 0.5)
               for s in ucf_segments]
    code, out, _ = run_main(capsys, "--gt", ucf_path, "--pred", write_pred(tmp_path, "s.json", shifted),
                            "--class-agnostic", "--tiou", "0.3", "0.5", "--json")
    assert code == 0
    assert json.loads(out)["mAP"] == {"0.3": 1.0, "0.5": 0.0}
    # perfect detections ranked below 10 confident detections on Normal videos: precision 156/166 at
    # every recall step, so AP = 156/166
    classes = read_ucf_crime_txt(ucf_path)[1]
    normals = [Segment(v, 0, 5, "threat", 0.9) for v, c in classes.items() if c == "Normal"][:10]
    perfect = [Segment(s.video_id, s.start_s, s.end_s, "threat", 0.5) for s in ucf_segments]
    code, out, err = run_main(capsys, "--gt", ucf_path, "--class-agnostic", "--json",
                              "--pred", write_pred(tmp_path, "fp.json", normals + perfect))
    assert code == 0, err
    assert "not in the GT" not in err  # the Normal videos are listed in the GT file
    assert json.loads(out)["average_mAP"] == pytest.approx(156 / 166)


def test_activitynet_gt_hand_computed_fixture(capsys):
    gt, pred = FIXTURES / "anet_gt_small.json", FIXTURES / "anet_results_small.json"
    code, out, err = run_main(capsys, "--gt", gt, "--pred", pred, "--fps", "1", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["tiou_thresholds"] == [0.1, 0.3, 0.5]  # CUVA's default for ActivityNet GT
    assert r["mAP"] == pytest.approx({"0.1": 2 / 3, "0.3": 2 / 3, "0.5": 5 / 12})
    assert r["average_mAP"] == pytest.approx(7 / 12)
    assert r["ap_per_class"]["Fighting"] == pytest.approx([5 / 6] * 3)
    assert r["FNR"] == pytest.approx(0.2) and r["F2"] == pytest.approx(10 / 13)
    code, out, _ = run_main(capsys, "--gt", gt, "--pred", pred, "--fps", "1", "--json", "--class-agnostic")
    r = json.loads(out)
    assert r["mAP"] == pytest.approx({"0.1": 0.6, "0.3": 0.6, "0.5": 1 / 3})
    assert r["average_mAP"] == pytest.approx(23 / 45)
    code, out, _ = run_main(capsys, "--gt", gt, "--pred", pred, "--fps", "1", "--json", "--min-score", "0.9")
    assert json.loads(out)["FNR"] == pytest.approx(0.6)


def test_ucf_gt_converted_to_activitynet_uses_cuva_default_tious(capsys, ucf_path, ucf_segments, tmp_path):
    gt = tmp_path / "gt.json"
    write_activitynet_gt(ucf_segments, gt)
    pred = write_pred(tmp_path, "p.json", [Segment(s.video_id, s.start_s, s.end_s, s.label, 1.0)
                                           for s in ucf_segments])
    code, out, err = run_main(capsys, "--gt", gt, "--pred", pred, "--json")
    assert code == 0, err
    assert json.loads(out)["mAP"] == {"0.1": 1.0, "0.3": 1.0, "0.5": 1.0}


def test_class_blind_labels_get_a_hint(capsys, ucf_path, ucf_segments, tmp_path):
    pred = write_pred(tmp_path, "p.json", [Segment(s.video_id, s.start_s, s.end_s, "threat", 1.0)
                                           for s in ucf_segments])
    code, out, err = run_main(capsys, "--gt", ucf_path, "--pred", pred, "--json")
    assert code == 0
    assert json.loads(out)["average_mAP"] == 0.0
    assert "--class-agnostic" in err


# ---------------------------------------------------------------------------------------------------
# errors: one line on stderr, exit status 2


def test_subprocess_errors_are_one_line_exit_2(ucf_path, tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"results": {"v": [')
    for args, message in [
        (("--gt", tmp_path / "absent.txt", "--pred", bad_json), "absent.txt: no such file"),
        (("--gt", ucf_path, "--pred", bad_json), "malformed JSON at line 1"),
    ]:
        proc = run_cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stdout == ""
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and message in lines[0], (args, proc.stderr)


def test_main_errors_are_one_line_exit_2(capsys, ucf_path):
    gt_as_pred = FIXTURES / "anet_gt_small.json"
    for args, message in [
        (("--gt", ucf_path, "--pred", gt_as_pred), "'results'"),
        (("--gt", ucf_path), "give both --gt GT and --pred PRED"),
        (("--gt", ucf_path, "--pred", gt_as_pred, "--tiou", "1.5"), "(0, 1]"),
        (("--gt", ucf_path, "--pred", gt_as_pred, "--fps", "0"), "--fps must be > 0"),
        (("--text", "--refs", ucf_path), "--text needs both --refs FILE and --hyps FILE"),
        (("--text", "--refs", ucf_path, "--hyps", ucf_path), "malformed JSON"),
    ]:
        code, out, err = run_main(capsys, *args)
        assert code == 2 and out == "", (args, err)
        assert len(err.splitlines()) == 1 and message in err, (args, err)
    with pytest.raises(SystemExit) as info:  # argparse's own checks, also on one line
        main(["evaluate", "--gt", str(ucf_path), "--tiou", "abc"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "invalid float value: 'abc'" in err


def test_main_error_on_gt_without_segments(capsys, tmp_path):
    gt = tmp_path / "normal_only.txt"
    gt.write_text("Normal_1.mp4  Normal  -1  -1  -1  -1  \n")
    code, _, err = run_main(capsys, "--gt", gt, "--pred", FIXTURES / "anet_results_small.json")
    assert code == 2 and "no threat segment" in err


# ---------------------------------------------------------------------------------------------------
# text mode on real CUVA explanations


def _hyps(cuva_path: Path, tmp_path: Path, n: int, transform) -> Path:
    items = json.loads(cuva_path.read_text())[:n]
    path = tmp_path / "hyps.json"
    path.write_text(json.dumps({it["video_id"]: transform(i, items) for i, it in enumerate(items)}))
    return path


def test_subprocess_text_identical_without_sb(cuva_path, tmp_path):
    hyps = _hyps(cuva_path, tmp_path, 20, lambda i, items: items[i]["answer"])
    proc = run_cli("--text", "--refs", cuva_path, "--hyps", hyps, "--json", "--no-sb")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["n_pairs"] == 20 and r["SB"] is None
    assert r["ROUGE-L"] == pytest.approx(1.0) and r["BLEU"] == pytest.approx(100.0)
    assert "scoring 20 of 980 references" in proc.stderr


def test_main_text_lists_and_errors(capsys, cuva_path, tmp_path):
    answers = [it["answer"] for it in json.loads(cuva_path.read_text())[:8]]
    refs, hyps = tmp_path / "refs.json", tmp_path / "hyps.json"
    refs.write_text(json.dumps(answers))
    hyps.write_text(json.dumps(answers[1:] + answers[:1]))  # another video's cause
    code, out, err = run_main(capsys, "--text", "--refs", refs, "--hyps", hyps, "--no-sb")
    assert code == 0, err
    sb, rouge, bleu = out.splitlines()[-1].split()
    assert sb == "-" and float(rouge) < 0.5 and float(bleu) < 30
    hyps.write_text(json.dumps(answers[:3]))
    code, _, err = run_main(capsys, "--text", "--refs", refs, "--hyps", hyps, "--no-sb")
    assert code == 2 and "pair by position" in err
    hyps.write_text(json.dumps({"99999.mp4": "x"}))
    code, _, err = run_main(capsys, "--text", "--refs", cuva_path, "--hyps", hyps, "--no-sb")
    assert code == 2 and "no reference (e.g. '99999.mp4')" in err


@pytest.mark.slow
def test_main_text_with_sbert(capsys, cuva_path, tmp_path):
    hyps = _hyps(cuva_path, tmp_path, 10, lambda i, items: items[(i + 1) % len(items)]["answer"])
    code, out, err = run_main(capsys, "--text", "--refs", cuva_path, "--hyps", hyps, "--json")
    assert code == 0, err
    shifted = json.loads(out)
    hyps = _hyps(cuva_path, tmp_path, 10, lambda i, items: items[i]["answer"])
    code, out, err = run_main(capsys, "--text", "--refs", cuva_path, "--hyps", hyps, "--json")
    same = json.loads(out)
    assert same["SB"] == pytest.approx(1.0, abs=1e-4)
    assert shifted["SB"] < 0.7 < same["SB"]
    assert shifted["ROUGE-L"] < same["ROUGE-L"] and shifted["BLEU"] < same["BLEU"]


def test_analyze_rejects_a_bad_decision_rule_before_loading_a_model(capsys, tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"not looked at")
    assert main(["analyze", str(video), "--min-segment", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: min_segment_s must be >= 0 seconds") and "Traceback" not in err
    assert main(["analyze", str(video), "--threshold", "1.5"]) == 2
    assert "threshold must be in (0, 1)" in capsys.readouterr().err
    assert main(["analyze", str(video), "--keep-threshold", "0"]) == 2
    assert "keep_threshold must be in (0, 1)" in capsys.readouterr().err
