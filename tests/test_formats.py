"""Interchange formats: read the real UCF-Crime and CUVA files, round-trip every writer, reject bad input."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from uprm.formats import (
    FormatError,
    read_activitynet_gt,
    read_activitynet_results,
    read_ground_truth,
    read_texts,
    read_ucf_crime_txt,
    write_activitynet_gt,
    write_activitynet_results,
    write_ucf_crime_txt,
)
from uprm.segments import Segment

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "eval"


@pytest.fixture(scope="module")
def ucf_path(shared_dir) -> Path:
    path = shared_dir / "data" / "ucf_crime" / "Temporal_Anomaly_Annotation.txt"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


# ---------------------------------------------------------------------------------------------------
# UCF-Crime txt


def test_read_real_ucf_crime(ucf_path):
    segments, classes = read_ucf_crime_txt(ucf_path)
    assert len(classes) == 290
    assert sum(c == "Normal" for c in classes.values()) == 150
    assert classes["Normal_Videos_003_x264.mp4"] == "Normal"
    assert len(segments) == 140 + 16  # 140 anomalous videos, 16 with a second segment
    assert not any(s.video_id.startswith("Normal") for s in segments)
    arson = [s for s in segments if s.video_id == "Arson011_x264.mp4"]  # "150 420 680 1267"
    assert [(s.start_s, s.end_s) for s in arson] == [(150 / 30, 420 / 30), (680 / 30, 1267 / 30)]
    assert {s.label for s in arson} == {"Arson"} and {s.score for s in arson} == {None}


def test_ucf_crime_round_trip_is_byte_identical(ucf_path, tmp_path):
    segments, classes = read_ucf_crime_txt(ucf_path)
    out = tmp_path / "ucf.txt"
    write_ucf_crime_txt(segments, classes, out)
    assert out.read_bytes() == ucf_path.read_bytes()


def test_ucf_crime_round_trip_other_fps_and_normal_videos(tmp_path):
    segments = [Segment("Fight1.mp4", 0.51, 2.0, "Fighting"), Segment("Fight1.mp4", 5.0, 6.25, "Fighting")]
    classes = {"Normal_9.mp4": "Normal", "Fight1.mp4": "Fighting"}
    out = tmp_path / "t.txt"
    write_ucf_crime_txt(segments, classes, out, fps=10)
    assert out.read_text().splitlines() == [
        "Normal_9.mp4  Normal  -1  -1  -1  -1  ",
        "Fight1.mp4  Fighting  5  20  50  63  ",  # 0.51 s -> frame 5.1 -> 5; 6.25 s -> 62.5 -> 63
    ]
    back, back_classes = read_ucf_crime_txt(out, fps=10)
    assert back_classes == classes
    assert [(s.start_s, s.end_s, s.label) for s in back] == [(0.5, 2.0, "Fighting"), (5.0, 6.3, "Fighting")]


def test_ucf_crime_writer_rejects_what_the_format_cannot_hold(tmp_path):
    three = [Segment("v.mp4", t, t + 1, "Arson") for t in (0, 5, 10)]
    with pytest.raises(FormatError, match="at most 2"):
        write_ucf_crime_txt(three, {"v.mp4": "Arson"}, tmp_path / "t.txt")
    with pytest.raises(FormatError, match="no class"):
        write_ucf_crime_txt(three[:1], {}, tmp_path / "t.txt")


@pytest.mark.parametrize(
    "line, message",
    [
        ("A_x264.mp4  Arson  10  20  -1", "expected 6 whitespace-separated fields"),
        ("A_x264.mp4  Arson  10  x  -1  -1", "e1 must be an integer"),
        ("A_x264.mp4  Arson  30  20  -1  -1", "0 <= s1 <= e1"),
        ("A_x264.mp4  Arson  10  20  5  -1", "0 <= s2 <= e2"),
    ],
)
def test_ucf_crime_reader_names_file_line_and_problem(tmp_path, line, message):
    path = tmp_path / "bad.txt"
    path.write_text("Normal_1.mp4  Normal  -1  -1  -1  -1  \n" + line + "\n")
    with pytest.raises(FormatError, match=message) as info:
        read_ucf_crime_txt(path)
    assert f"{path}:2:" in str(info.value)


def test_ucf_crime_reader_rejects_duplicates_and_missing_file(tmp_path):
    path = tmp_path / "dup.txt"
    path.write_text("A.mp4  Arson  1  2  -1  -1\nA.mp4  Arson  3  4  -1  -1\n")
    with pytest.raises(FormatError, match="listed twice"):
        read_ucf_crime_txt(path)
    with pytest.raises(FormatError, match="no such file"):
        read_ucf_crime_txt(tmp_path / "absent.txt")


# ---------------------------------------------------------------------------------------------------
# ActivityNet JSON


def test_activitynet_gt_round_trip_keeps_empty_videos_and_causes(tmp_path):
    segments = [
        Segment("v1", 1.0, 2.5, "Fighting", cause="two men trade punches"),
        Segment("v1", 4.0, 5.0, "Fighting"),
        Segment("v3", 0.0, 3.0, "Arson"),
    ]
    out = tmp_path / "gt.json"
    write_activitynet_gt(segments, out, durations={"v1": 10.0, "v2": 7.5}, video_ids=["v0"])
    database = json.loads(out.read_text())["database"]
    assert list(database) == ["v0", "v1", "v2", "v3"]
    assert database["v2"] == {"subset": "validation", "duration": 7.5, "annotations": []}
    back, durations = read_activitynet_gt(out)
    assert back == segments
    assert durations["v1"] == 10.0 and durations["v2"] == 7.5
    assert math.isnan(durations["v0"]) and math.isnan(durations["v3"])  # listed, length unknown
    # NaN durations written back are left out, and the empty video stays
    write_activitynet_gt(back, out, durations)
    assert "duration" not in json.loads(out.read_text())["database"]["v0"]
    assert read_activitynet_gt(out)[0] == segments


def test_ucf_crime_to_activitynet_and_back(ucf_path, tmp_path):
    segments, classes = read_ucf_crime_txt(ucf_path)
    out = tmp_path / "ucf_anet.json"
    write_activitynet_gt(segments, out, video_ids=list(classes))
    back, durations = read_activitynet_gt(out)
    assert back == segments
    assert list(durations) == list(classes)  # the 150 Normal videos are kept


def test_activitynet_gt_from_dict_and_subset():
    data = {"database": {
        "a": {"subset": "training", "duration": 3, "annotations": [{"segment": [0, 1], "label": "x"}]},
        "b": {"subset": "validation", "duration": "4.5", "annotations": []},
    }}
    segments, durations = read_activitynet_gt(data, subset="validation")
    assert segments == [] and durations == {"b": 4.5}
    assert len(read_activitynet_gt(data)[0]) == 1


def test_activitynet_results_round_trip(tmp_path):
    segments = [
        Segment("v1", 1.0, 2.5, "threat", 0.91, "a man breaks the window"),
        Segment("v1", 4.0, 5.0, "threat", 0.12),
        Segment("v2", 0.0, 0.5, "Arson", 0.5),
    ]
    out = tmp_path / "results.json"
    write_activitynet_results(segments, out)
    data = json.loads(out.read_text())
    assert set(data) == {"version", "results", "external_data"}
    assert data["results"]["v2"] == [{"segment": [0.0, 0.5], "label": "Arson", "score": 0.5}]
    assert read_activitynet_results(out) == segments
    with pytest.raises(FormatError, match="has no score"):
        write_activitynet_results([Segment("v1", 0, 1)], out)


def test_hand_written_fixture_files_read():
    segments, durations = read_activitynet_gt(FIXTURES / "anet_gt_small.json")
    assert durations == {"video_a": 40.0, "video_b": 25.0, "video_normal": 30.0}
    assert len(segments) == 3
    detections = read_activitynet_results(FIXTURES / "anet_results_small.json")
    assert len(detections) == 5 and all(d.score is not None for d in detections)


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"database": {"v": {"annotations": [', "malformed JSON at line 1"),
        ('{"videos": {}}', "'database'"),
        ('{"database": {"v": {"annotations": [{"segment": [5, 2], "label": "x"}]}}}',
         r"database\['v'\]\.annotations\[0\]: segment must satisfy 0 <= start <= end"),
        ('{"database": {"v": {"annotations": [{"segment": [1], "label": "x"}]}}}', r"\[start_s, end_s\]"),
        ('{"database": {"v": {"duration": "long", "annotations": []}}}', "'duration' must be a number"),
    ],
)
def test_activitynet_gt_errors_name_file_key_and_expectation(tmp_path, text, message):
    path = tmp_path / "gt.json"
    path.write_text(text)
    with pytest.raises(FormatError, match=message) as info:
        read_activitynet_gt(path)
    assert str(path) in str(info.value)


def test_activitynet_results_errors(tmp_path):
    path = tmp_path / "r.json"
    path.write_text('{"results": {"v": [{"segment": [0, 1], "label": "x"}]}}')
    with pytest.raises(FormatError, match=r"results\['v'\]\[0\]: detection has no 'score'"):
        read_activitynet_results(path)
    path.write_text('{"database": {}}')
    with pytest.raises(FormatError, match="'results'"):
        read_activitynet_results(path)
    assert issubclass(FormatError, ValueError)


# ---------------------------------------------------------------------------------------------------
# format detection and texts


def test_read_ground_truth_detects_format(ucf_path, tmp_path):
    ucf = read_ground_truth(ucf_path)
    assert ucf.format == "ucf_crime" and len(ucf.durations) == 290 and len(ucf.segments) == 156
    out = tmp_path / "gt.json"
    write_activitynet_gt(ucf.segments, out, video_ids=list(ucf.durations))
    anet = read_ground_truth(out)
    assert anet.format == "activitynet" and anet.segments == ucf.segments
    bad = tmp_path / "bad.txt"
    bad.write_text("not an annotation\n")
    with pytest.raises(FormatError, match="bad.txt:1: expected 6"):
        read_ground_truth(bad)


def test_read_texts_real_cuva_and_plain_forms(shared_dir, tmp_path):
    cuva = shared_dir / "data" / "cuva" / "gt_Causev1.json"
    if not cuva.is_file():
        pytest.skip(f"{cuva} is absent")
    texts = read_texts(cuva)
    assert len(texts) == 980 and texts["00001.mp4"].startswith("Three masked people broke the window")
    assert read_texts(cuva, question_id="Cause") == texts
    with pytest.raises(FormatError, match="no entry has question_id 'Result'"):
        read_texts(cuva, question_id="Result")
    plain = tmp_path / "list.json"
    plain.write_text('["a b", "c d"]')
    assert read_texts(plain) == ["a b", "c d"]
    keyed = tmp_path / "keyed.json"
    keyed.write_text('{"x": "a b"}')
    assert read_texts(keyed) == {"x": "a b"}
    keyed.write_text('{"x": 3}')
    with pytest.raises(FormatError, match="expected a text string"):
        read_texts(keyed)
