"""Import/export: shapes of each format, lossless round trips, real dataset files, safe file names."""
from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from annotations import AnnotationError, Store, VideoRecord
from annotations.files import atomic_write, inside, safe_stem
from annotations.formats import FORMATS, export, import_file
from uprm.instructions import ATTRIBUTE, IDENTIFY, LOCATE
from uprm.segments import Segment

SHARED = Path(__file__).resolve().parents[2] / "shared"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared reference folder {SHARED} is absent")
UCF_TXT = SHARED / "data" / "ucf_crime" / "Temporal_Anomaly_Annotation.txt"
CUVA_CAUSES = SHARED / "data" / "cuva" / "gt_Causev1.json"

VIDEOS = [
    VideoRecord(name="Fighting003_x264", fps=30.0, frame_count=3000, duration_s=100.0,
                path="videos/Fighting003_x264.mp4"),
    VideoRecord(name="vtest", fps=10.0, frame_count=795, duration_s=79.5, path="/media/vtest.avi",
                content_hash="ab" * 32),
    VideoRecord(name="quiet", fps=30.0, frame_count=900, duration_s=30.0, path="videos/quiet.mp4"),
    VideoRecord(name="Robbery137_x264", fps=30.0, frame_count=2400, duration_s=80.0),
]


def _causes() -> list[str]:
    """Real free-text causes (CUVA) when available: punctuation, commas and run-on sentences."""
    if CUVA_CAUSES.is_file():
        return [x["answer"] for x in json.loads(CUVA_CAUSES.read_text())[:3]]
    return ["Two men, one armed, fight near the door.", "A car hits a cyclist", "He grabs a bag"]


def _populate(store: Store) -> dict[str, int]:
    ids = {v.name: store.add_video(v) for v in VIDEOS}
    causes = _causes()
    fight, vtest, quiet, robbery = (ids[v.name] for v in VIDEOS)
    store.add_analysis(fight, "uprm-small", {"threshold": 0.5}, [
        Segment("Fighting003_x264", 12.0, 20.5, "fighting", 0.9, causes[0]),
        Segment("Fighting003_x264", 40.0, 44.0, "threat", 0.6),
        Segment("Fighting003_x264", 70.0, 71.0, "threat", 0.55),
    ])
    a, b, c = store.current_segments(fight)
    store.accept(a.id, "alice")
    store.edit_bounds(b.id, 40.2, 45.1, "bob")
    store.edit_category(b.id, "Assault", "bob")
    store.reject(c.id, "alice")
    store.add_analysis(vtest, "uprm-small", {}, [Segment("vtest", 30.04, 40.06, "threat", 0.7)])
    (v,) = store.current_segments(vtest)
    store.edit_cause(v.id, causes[1], "alice")
    store.add_segment(vtest, 61.0, 63.3, "bob", label="Vandalism", cause=causes[2])
    store.mark_reviewed(quiet, "alice")  # reviewed: nothing happens in it
    store.add_segment(robbery, 5.0, 9.0, "carol", label="Robbery")  # unfinished: not exported
    return ids


@pytest.fixture
def source(tmp_path):
    with Store(tmp_path / "src.db") as s:
        _populate(s)
        yield s


def _export_text(store: Store, fmt: str, out: Path, **kw) -> str:
    return export(store, fmt, out, **kw).paths[0].read_text(encoding="utf-8")


def _without_store_ids(fmt: str, text: str):
    """What a format represents, minus the ids a store assigns (tasks, regions, segment ids)."""
    if fmt == "label_studio":
        tasks = json.loads(text)
        for t in tasks:
            t.pop("id")
            for ann in t["annotations"]:
                for r in ann["result"]:
                    r.pop("id")
        return tasks
    if fmt == "csv":
        keep = ("video_name", "video_path", "fps", "frame_count", "duration_s", "start_frame",
                "end_frame", "start_s", "end_s", "label", "cause")
        return [{k: row[k] for k in keep} for row in csv.DictReader(text.splitlines())]
    return text


# ------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("videos_known", [True, False], ids=["videos-known", "references"])
def test_export_import_export_loses_nothing_the_format_represents(source, tmp_path, fmt, videos_known):
    """export(import(export(store))) == export(store), into a store that already knows the videos
    and into an empty one (videos become references built from what the file says)."""
    selection, segments, videos = None, 4, 3
    if fmt == "ucf_crime" and not videos_known:
        # the txt is at 30 fps and says nothing else: only 30-fps videos come back frame-exact
        selection, segments, videos = [source.find_video("Fighting003_x264"), source.find_video("quiet")], 2, 2
    first = export(source, fmt, tmp_path / "a", selection)
    with Store(tmp_path / "dst.db") as dst:
        if videos_known:
            for v in VIDEOS:
                dst.add_video(v)
        report = import_file(dst, fmt, first.paths[0], annotator="importer")
        assert (report.segments_added, report.videos) == (segments, videos)
        second = export(dst, fmt, tmp_path / "b")
        assert _without_store_ids(fmt, second.paths[0].read_text()) == \
            _without_store_ids(fmt, first.paths[0].read_text())
        # importing the same file again adds nothing
        again = import_file(dst, fmt, first.paths[0], annotator="importer")
        assert (again.segments_added, again.segments_skipped) == (0, segments)


def test_round_trip_keeps_frames_labels_and_causes(source, tmp_path):
    """Formats with frames (CSV, Label Studio) keep every frame, category and cause exactly."""
    want = {(v.name, s.start_frame, s.end_frame, s.label, s.cause)
            for st in source.video_states() if st.status == "reviewed"
            for v, s in ((st.video, s) for s in st.segments if s.status == "accepted")}
    assert len(want) == 4
    for fmt in ("csv", "label_studio", "activitynet"):
        with Store(":memory:") as dst:
            for v in VIDEOS:
                dst.add_video(v)
            import_file(dst, fmt, export(source, fmt, tmp_path / fmt).paths[0])
            got = {(st.video.name, s.start_frame, s.end_frame, s.label, s.cause)
                   for st in dst.video_states() for s in st.segments}
            assert got == want, fmt
            assert dst.review_status(dst.find_video("quiet")) == "reviewed"


def test_only_reviewed_videos_and_accepted_segments_are_exported(source, tmp_path):
    result = export(source, "csv", tmp_path)
    assert result.skipped_unreviewed == ["Robbery137_x264"]
    rows = list(csv.DictReader(result.paths[0].read_text().splitlines()))
    assert [r["video_name"] for r in rows] == ["Fighting003_x264", "Fighting003_x264", "vtest", "vtest", "quiet"]
    assert rows[-1]["start_frame"] == ""  # a reviewed video without segments keeps a row
    assert "2100" not in {r["start_frame"] for r in rows}  # the rejected 70-71 s prediction
    everything = export(source, "csv", tmp_path, reviewed_only=False, name="all")
    assert everything.videos == 4 and everything.segments == 5


def test_annotator_view_export(source, tmp_path):
    rows = list(csv.DictReader(_export_text(source, "csv", tmp_path, annotator="bob",
                                            reviewed_only=False).splitlines()))
    assert {(r["video_name"], r["label"]) for r in rows if r["start_frame"]} == {
        ("Fighting003_x264", "Assault"), ("vtest", "Vandalism")}


# ------------------------------------------------------------------------------ shapes


def test_llava_entries_ask_the_three_instructions(source, tmp_path):
    entries = json.loads(_export_text(source, "llava", tmp_path))
    fight, vtest, quiet = entries
    assert fight["id"] == "Fighting003_x264" and fight["video"] == "videos/Fighting003_x264.mp4"
    turns = fight["conversations"]
    assert [t["from"] for t in turns] == ["human", "gpt"] * 3
    assert turns[0]["value"] == "<video>\n" + IDENTIFY and turns[1]["value"] == "Yes, there exists a threat"
    assert turns[2]["value"] == LOCATE
    assert turns[3]["value"] == "The threat occurs between 12.0s and 20.5s, and between 40.2s and 45.1s"
    assert turns[4]["value"] == ATTRIBUTE and turns[5]["value"].startswith("The threat is attributed to ")
    assert "; " not in turns[5]["value"]  # one cause only: the edited segment has none
    assert "; " in vtest["conversations"][5]["value"]  # two segments, two causes
    assert [t["value"] for t in quiet["conversations"][1::2]] == [
        "No, there exists no threat", "There is no threat in the video"]
    assert all(not t["value"].startswith("<video>") for t in turns[1:])


def test_label_studio_tasks_follow_the_timelinelabels_shape(source, tmp_path):
    result = export(source, "label_studio", tmp_path)
    tasks = json.loads(result.paths[0].read_text())
    fight = tasks[0]
    assert fight["data"]["video"] == "videos/Fighting003_x264.mp4" and fight["data"]["fps"] == 30.0
    regions = [r for r in fight["annotations"][0]["result"] if r["type"] == "timelinelabels"]
    assert regions[0]["value"] == {"ranges": [{"start": 361, "end": 615}], "timelinelabels": ["Fighting"]}
    assert {r["from_name"] for r in regions} == {"videoLabels"} and {r["to_name"] for r in regions} == {"video"}
    texts = [r for r in fight["annotations"][0]["result"] if r["type"] == "textarea"]
    assert texts[0]["id"] == regions[0]["id"] and texts[0]["value"]["text"] == [_causes()[0]]
    config = ET.fromstring(result.paths[1].read_text())
    labels = config.find("TimelineLabels")
    assert labels.get("name") == "videoLabels" and config.find("Video").get("frameRate") == "$fps"
    assert "Animals Hurting People" in {l.get("value") for l in labels.findall("Label")}


def test_label_studio_import_of_a_plain_export(tmp_path):
    """A task as Label Studio itself writes it: 1-based inclusive frames, no fps in the data."""
    task = [{"id": 7, "data": {"video": "/data/upload/3/5f2a-bikes.mp4"}, "annotations": [{
        "id": 1, "completed_by": 1, "was_cancelled": False, "result": [
            {"id": "Xy1", "type": "timelinelabels", "from_name": "videoLabels", "to_name": "video",
             "value": {"ranges": [{"start": 3, "end": 5}], "timelinelabels": ["Fighting"]}}]}]}]
    path = tmp_path / "ls.json"
    path.write_text(json.dumps(task))
    with Store(":memory:") as store:
        with pytest.raises(AnnotationError, match="gives no fps"):
            import_file(store, "label_studio", path)
        import_file(store, "label_studio", path, fps=25.0)
        (seg,) = store.current_segments(store.find_video("5f2a-bikes"))
        assert (seg.start_frame, seg.end_frame, seg.start_s, seg.end_s) == (2, 5, 0.08, 0.2)


def test_ucf_crime_export_refuses_three_segments(source, tmp_path):
    vid = source.find_video("quiet")
    for start in (1.0, 5.0, 9.0):
        source.add_segment(vid, start, start + 1, "alice")
    with pytest.raises(AnnotationError, match="at most 2"):
        export(source, "ucf_crime", tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []  # no file, no temp file left behind


@needs_shared
def test_real_ucf_crime_file_imports_and_exports_identically(tmp_path):
    with Store(tmp_path / "ucf.db") as store:
        report = import_file(store, "ucf_crime", UCF_TXT)
        assert (report.videos, report.videos_created, report.segments_added) == (290, 290, 156)
        arson = store.current_segments(store.find_video("Arson011_x264"))
        assert [(s.start_frame, s.end_frame, s.label) for s in arson] == [(150, 420, "Arson"), (680, 1267, "Arson")]
        assert store.review_queue().unreviewed == [] and len(store.review_queue().reviewed) == 290
        out = export(store, "ucf_crime", tmp_path / "out").paths[0]
        strip = lambda text: [line.rstrip() for line in text.splitlines()]  # noqa: E731
        assert strip(out.read_text()) == strip(UCF_TXT.read_text())


def test_import_is_all_or_nothing(tmp_path):
    bad = {"database": {"ok": {"duration": 10.0, "annotations": [{"segment": [1.0, 2.0], "label": "Arson"}]},
                        "bad": {"duration": 10.0, "annotations": [{"segment": [1.0, 2.0], "label": "Alien"}]}}}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(bad))
    with Store(":memory:") as store:
        with pytest.raises(AnnotationError, match="video 'bad', segment #0: unknown category 'Alien'"):
            import_file(store, "activitynet", path)
        assert store.videos() == []
        path.write_text("{not json")
        with pytest.raises(AnnotationError, match="ActivityNet"):
            import_file(store, "activitynet", path)
        with pytest.raises(AnnotationError, match="unknown format"):
            import_file(store, "yaml", path)


# ------------------------------------------------------------------------------ file safety


@pytest.mark.parametrize("hostile", ["../../etc/passwd", "/etc/passwd", "..", "a/../../b", ".hidden",
                                     "name\x00with\nnull", "C:\\Windows\\system32", "~/x", ""])
def test_export_file_names_stay_inside_the_folder(tmp_path, hostile):
    out = tmp_path / "exports"
    with Store(":memory:") as store:
        vid = store.add_video(name=hostile.replace("\x00", "") or "x", fps=10.0, frame_count=100)
        store.add_segment(vid, 1.0, 2.0, "alice")
        store.mark_reviewed(vid, "alice")
        paths = export(store, "csv", out, name=hostile).paths
        paths += export(store, "label_studio", out, per_video=True).paths
    for p in paths:
        assert p.parent == out.resolve() and not p.name.startswith(".")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["exports"]


def test_safe_names_and_inside():
    assert safe_stem("../../etc/passwd") == "etc_passwd"
    assert safe_stem("..") == "export" and safe_stem("a..b") == "a.b"
    with pytest.raises(AnnotationError, match="leave the export folder"):
        inside(Path("/tmp/x"), "../y.json")


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, broken)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
