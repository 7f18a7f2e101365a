"""Annotation store: schema, validation, frame snapping, the correction history and derived views."""
from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from annotations import AnnotationError, Store, VideoRecord
from annotations.categories import CUVA_CLASSES, DEFAULT_CATEGORIES, UCF_CRIME_CLASSES, read_category_file
from annotations.schema import HISTORY_TABLES, applied_migrations
from annotations.timebase import snap, to_frame
from uprm.segments import Segment

SHARED = Path(__file__).resolve().parents[2] / "shared"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared reference folder {SHARED} is absent")

VTEST = VideoRecord(name="vtest", fps=10.0, frame_count=795, duration_s=79.5, width=768, height=576,
                    path="/media/vtest.avi", content_hash="ab" * 32)


@pytest.fixture
def store():
    with Store(":memory:") as s:
        yield s


@pytest.fixture
def video(store):
    vid = store.add_video(VTEST)
    store.add_analysis(vid, "uprm-small", {"threshold": 0.5}, [
        Segment("vtest", 12.0, 18.5, "threat", 0.91, "a man pushes another"),
        Segment("vtest", 30.04, 40.06, "fighting", 0.7, ""),
    ], model_version="0.1.0")
    return vid


# ------------------------------------------------------------------------------ schema


def test_schema_is_migrated_recorded_and_idempotent(tmp_path):
    db = tmp_path / "a.db"
    with Store(db) as s:
        assert s.migrations_applied == ["0001_tables", "0002_append_only_history"]
        assert [name for name, _ in applied_migrations(s.db)] == s.migrations_applied
        assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert s.db.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
        assert s.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: survives SIGKILL
    with Store(db, durable=True) as s:  # reopening applies nothing
        assert s.migrations_applied == []
        assert s.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_history_rows_cannot_be_updated_or_deleted(store, video):
    seg = store.current_segments(video)[0]
    store.accept(seg.id, "alice")
    for table in HISTORY_TABLES:
        for sql in (f"UPDATE {table} SET rowid = rowid", f"DELETE FROM {table}"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                store.db.execute(sql)
    assert len(store.history(video)) == 1
    with pytest.raises(sqlite3.IntegrityError):  # foreign keys are on: a video with history stays
        store.db.execute("DELETE FROM videos WHERE id = ?", (video,))


# ------------------------------------------------------------------------------ frames


def test_frame_convention_snaps_and_round_trips():
    assert to_frame(2.3, 30) == 69  # 2.3 * 30 = 68.99999999999999
    assert to_frame(0.05, 10) == 1  # halves round up
    span = snap(1.26, 3.04, 10)
    assert (span.start_frame, span.end_frame, span.start_s, span.end_s) == (13, 30, 1.3, 3.0)
    for fps in (10.0, 25.0, 29.97, 30.0, 59.94):
        for f in (0, 1, 17, 1001, 107892):
            assert to_frame(f / fps, fps) == f


def test_stored_seconds_are_frames_over_fps(store, video):
    segs = store.current_segments(video)
    assert [(s.start_frame, s.end_frame) for s in segs] == [(120, 185), (300, 401)]
    for s in segs:
        assert s.start_s == s.start_frame / 10.0 and s.end_s == s.end_frame / 10.0
    cid = store.edit_bounds(segs[1].id, 31.04, 38.96, "alice")
    assert store.correction(cid).new_value == {"start_frame": 310, "end_frame": 390,
                                               "start_s": 31.0, "end_s": 39.0}


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize("call, message", [
    (lambda s, v, seg: s.add_segment(v, 5.0, 3.0, "alice"), "after end_s"),
    (lambda s, v, seg: s.add_segment(v, -1.0, 3.0, "alice"), "before 0"),
    (lambda s, v, seg: s.add_segment(v, 70.0, 80.0, "alice"), "ends after the video"),
    (lambda s, v, seg: s.add_segment(v, 1.01, 1.02, "alice"), "shorter than one frame"),
    (lambda s, v, seg: s.add_segment(v, float("nan"), 2.0, "alice"), "finite"),
    (lambda s, v, seg: s.add_segment(v, "1", 2.0, "alice"), "number of seconds"),
    (lambda s, v, seg: s.edit_cause(seg, "   ", "alice"), "cause is empty"),
    (lambda s, v, seg: s.edit_cause(seg, "x" * 2001, "alice"), "limit is 2000"),
    (lambda s, v, seg: s.edit_cause(seg, "a\x00b", "alice"), "control characters"),
    (lambda s, v, seg: s.edit_category(seg, "Zombie attack", "alice"), "unknown category"),
    (lambda s, v, seg: s.add_segment(v, 1.0, 2.0, "alice", label="Zombie"), "unknown category"),
    (lambda s, v, seg: s.accept(seg, "rm -rf /;"), "not allowed"),
    (lambda s, v, seg: s.accept(seg, "<script>"), "not allowed"),
    (lambda s, v, seg: s.accept(seg, ""), "annotator name is empty"),
    (lambda s, v, seg: s.accept(seg, "a" * 65), "at most 64"),
    (lambda s, v, seg: s.accept(99999, "alice"), "no segment with id 99999"),
    (lambda s, v, seg: s.accept("first", "alice"), "segment id must be an integer"),
    (lambda s, v, seg: s.current_segments(None), "video id must be an integer"),
    (lambda s, v, seg: s.current_segments(v, as_of=12345), "no correction with id 12345"),
    (lambda s, v, seg: s.current_segments(v, as_of="yesterday"), "ISO-8601"),
    (lambda s, v, seg: s.current_segments(v, annotator="nobody"), "unknown annotator"),
    (lambda s, v, seg: s.current_segments(424242), "no video with id 424242"),
    (lambda s, v, seg: s.add_video(name="x", fps=0), "fps"),
    (lambda s, v, seg: s.add_video(name="", fps=10), "video name is empty"),
    (lambda s, v, seg: s.add_video(name="x", fps=10, content_hash="not-hex!"), "hex digest"),
    (lambda s, v, seg: s.add_analysis(v, "m", {"f": object()}, []), "JSON"),
    (lambda s, v, seg: s.add_analysis(v, "m", {}, [Segment("vtest", 70.0, 90.0)]), "segment #0"),
    (lambda s, v, seg: s.disagreement(v, "alice", "alice", tiou_threshold=0), "tiou_threshold"),
])
def test_bad_input_gets_a_clear_annotation_error(store, video, call, message):
    seg = store.current_segments(video)[0].id
    store.add_annotator("alice")
    before = store.db.execute("SELECT count(*) FROM corrections").fetchone()[0]
    with pytest.raises(AnnotationError, match=message):
        call(store, video, seg)
    assert store.db.execute("SELECT count(*) FROM corrections").fetchone()[0] == before


def test_annotators_can_be_required_to_register():
    with Store(":memory:", auto_register_annotators=False) as s:
        vid = s.add_video(VTEST)
        with pytest.raises(AnnotationError, match="register them with add_annotator"):
            s.add_segment(vid, 1.0, 2.0, "carol")
        s.add_annotator("Carol")
        cid = s.add_segment(vid, 1.0, 2.0, "carol")  # names match case-insensitively
        assert s.correction(cid).annotator == "Carol"


def test_categories_match_case_insensitively_and_are_configurable(store, video):
    seg = store.current_segments(video)[0]
    assert store.current_segments(video)[1].label == "Fighting"  # model's "fighting", canonical
    store.edit_category(seg.id, "road accidents".replace(" ", ""), "alice")
    assert store.segment(seg.id).label == "RoadAccidents"
    with Store(":memory:", categories=["threat", "loitering"]) as s:
        vid = s.add_video(VTEST)
        s.add_segment(vid, 1.0, 2.0, "alice", label="Loitering")
        with pytest.raises(AnnotationError, match="unknown category"):
            s.add_segment(vid, 1.0, 2.0, "alice", label="Fighting")


def test_model_categories_outside_the_list_are_recorded_as_said(store):
    vid = store.add_video(VTEST)
    store.add_analysis(vid, "uprm-small", {}, [Segment("vtest", 1.0, 2.0, "crowd running", 0.8)])
    assert store.current_segments(vid)[0].label == "crowd running"


@needs_shared
def test_default_categories_hold_ucf_crime_cuva_and_threat():
    cuva = read_category_file(SHARED / "data" / "cuva" / "Category.txt")
    assert tuple(cuva) == CUVA_CLASSES and len(cuva) == 11
    ucf = {line.split()[1] for line in (SHARED / "data" / "ucf_crime" /
                                        "Temporal_Anomaly_Annotation.txt").read_text().splitlines()}
    assert ucf - {"Normal"} == set(UCF_CRIME_CLASSES) and len(UCF_CRIME_CLASSES) == 13
    assert set(DEFAULT_CATEGORIES) == {"threat", *UCF_CRIME_CLASSES, *CUVA_CLASSES}


# ------------------------------------------------------------------------------ videos


@needs_shared
def test_add_video_from_real_video_info_is_idempotent_and_links_references():
    from uprm.video import probe

    info = probe(SHARED / "media" / "vtest.avi")
    with Store(":memory:") as s:
        ref = s.add_video(name="vtest", fps=10.0)  # a dataset reference imported earlier, no file
        vid = s.add_video(info)
        assert vid == ref and s.add_video(info) == vid
        v = s.video(vid)
        assert (v.content_hash, v.frame_count, v.duration_s, v.width) == (info.content_hash, 795, 79.5, 768)
        other = s.add_video(VideoRecord(name="vtest", fps=10.0, content_hash="cd" * 32))
        assert other != vid and s.video(other).name == "vtest-cdcdcdcd"


# ------------------------------------------------------------------------------ history


def test_corrections_record_previous_values_and_derive_current_state(store, video):
    a, b = store.current_segments(video)
    c1 = store.accept(a.id, "alice")
    c2 = store.edit_bounds(b.id, 31.0, 39.0, "alice")
    c3 = store.edit_cause(b.id, "Two men trade punches", "bob")
    c4 = store.reject(b.id, "bob")
    c5 = store.add_segment(video, 50.0, 55.5, "bob", label="Assault", cause="a kick")
    added = store.correction(c5).segment_id

    hist = store.history(video)
    assert [c.id for c in hist] == [c1, c2, c3, c4, c5]
    assert [c.kind for c in hist] == ["accept", "edit_bounds", "edit_cause", "reject", "add_segment"]
    assert hist[0].previous_value == {"status": "pending"}
    assert hist[1].previous_value["start_frame"] == 300 and hist[1].new_value["start_frame"] == 310
    assert hist[2].previous_value == {"cause": ""}
    assert hist[3].previous_value == {"status": "accepted"}  # the edit had accepted it
    assert hist[4].previous_value is None
    assert [c.annotator for c in store.history(video, "bob")] == ["bob"] * 3
    times = [c.created_at for c in hist]
    assert times == sorted(times)

    now = {s.id: s for s in store.current_segments(video)}
    assert now[a.id].status == "accepted" and not now[a.id].edited
    assert now[b.id].status == "rejected" and now[b.id].edited
    assert (now[b.id].start_s, now[b.id].cause) == (31.0, "Two men trade punches")
    assert now[b.id].annotators == ("alice", "bob")
    assert now[added].source == "human" and now[added].status == "accepted" and now[added].label == "Assault"
    # earlier states, by correction id and by time
    assert {s.id: s.status for s in store.current_segments(video, as_of=c2)} == {a.id: "accepted", b.id: "accepted"}
    assert store.current_segments(video, as_of=c3)[1].cause == "Two men trade punches"
    assert [s.status for s in store.current_segments(video, as_of=times[0])] == ["accepted", "pending"]
    before_all = datetime.fromisoformat(times[0]) - timedelta(microseconds=1)
    assert [s.status for s in store.current_segments(video, as_of=before_all)] == ["pending", "pending"]
    far_past = datetime.now(timezone.utc) - timedelta(days=1)
    assert store.current_segments(video, as_of=far_past) == []  # before the analysis existed


def test_per_annotator_views(store, video):
    a, b = store.current_segments(video)
    store.accept(a.id, "alice")
    store.reject(b.id, "alice")
    store.edit_bounds(b.id, 30.0, 35.0, "bob")
    added = store.correction(store.add_segment(video, 60.0, 62.0, "bob")).segment_id
    alice = {s.id: s for s in store.current_segments(video, annotator="alice")}
    bob = {s.id: s for s in store.current_segments(video, annotator="bob")}
    assert (alice[a.id].status, alice[b.id].status) == ("accepted", "rejected")
    assert added not in alice  # alice never saw bob's addition
    assert (bob[a.id].status, bob[b.id].status, bob[b.id].end_s) == ("pending", "accepted", 35.0)
    store.reject(added, "alice")  # once alice reviews it, it is in her view
    assert store.current_segments(video, annotator="alice")[-1].status == "rejected"
    assert store.segment(added).status == "rejected"  # merged: the last writer wins


def test_review_status_queue_and_progress(store, video):
    empty = store.add_video(VideoRecord(name="empty", fps=25.0, frame_count=250))
    third = store.add_video(VideoRecord(name="third", fps=25.0, frame_count=250))
    assert store.review_status(video) == "unreviewed"
    a, b = store.current_segments(video)
    store.accept(a.id, "alice")
    assert store.review_status(video) == "in_progress"
    store.add_annotator("bob")
    assert store.review_status(video, "bob") == "unreviewed"  # in bob's own view nothing happened
    store.reject(b.id, "bob")
    assert store.review_status(video) == "reviewed"
    assert store.review_status(video, "alice") == "in_progress"  # alice left b undecided
    store.add_segment(empty, 1.0, 2.0, "carol")
    assert store.review_status(empty) == "in_progress"  # no predictions: needs an explicit mark
    store.mark_reviewed(empty, "carol")
    assert store.review_status(empty) == "reviewed"
    store.add_analysis(third, "uprm-small", {}, [Segment("third", 1.0, 2.0)])
    store.add_segment(third, 3.0, 4.0, "carol")
    with pytest.raises(AnnotationError, match="undecided"):
        store.mark_reviewed(third, "carol")

    queue = store.review_queue()
    assert [p.name for p in queue.reviewed] == ["vtest", "empty"]
    assert [p.name for p in queue.in_progress] == ["third"] and queue.unreviewed == []
    assert queue.next_video().name == "third"
    progress = {p.name: p for p in store.progress()}
    assert (progress["vtest"].accepted, progress["vtest"].rejected, progress["vtest"].corrections) == (1, 1, 2)
    assert progress["empty"].added == 1 and progress["third"].pending == 1
    by = {p.annotator: p for p in store.annotator_progress()}
    assert by["alice"].by_kind == {"accept": 1} and by["alice"].videos_reviewed == 0
    assert by["carol"].corrections == 3 and by["carol"].videos_touched == 2 and by["carol"].videos_reviewed == 1


def test_confirmed_segments_survive_a_model_rerun(store, video):
    a, b = store.current_segments(video)
    store.accept(a.id, "alice")
    store.add_analysis(video, "uprm-small", {"threshold": 0.4}, [Segment("vtest", 60.0, 61.0)])
    now = store.current_segments(video)
    assert [(s.id, s.status) for s in now] == [(a.id, "accepted"), (now[1].id, "pending")]
    assert b.id not in {s.id for s in now}  # the undecided old prediction is stale
    assert store.review_status(video) == "in_progress"


def test_disagreement_figures(store, video):
    a, b = store.current_segments(video)  # frames 120-185 and 300-401
    store.accept(a.id, "alice")
    store.accept(b.id, "alice")
    store.accept(a.id, "bob")
    store.reject(b.id, "bob")
    store.add_segment(video, 12.5, 18.5, "carol")  # tIoU with a: 60/65
    ab = store.disagreement(video, "alice", "bob")
    assert (ab.segments_a, ab.segments_b, ab.matched) == (2, 1, 1)
    assert ab.f1 == pytest.approx(2 / 3) and ab.mean_tiou == 1.0 and ab.label_agreement == 1.0
    assert ab.frame_iou == pytest.approx(65 / (65 + 101))
    assert (ab.decisions_compared, ab.decisions_agreeing) == (2, 1)
    bc = store.disagreement(video, "bob", "carol", tiou_threshold=0.9)
    assert bc.matched == 1 and bc.mean_tiou == pytest.approx(60 / 65)
    assert store.disagreement(video, "bob", "carol", tiou_threshold=0.95).matched == 0


def test_batch_is_all_or_nothing(store, video):
    a, b = store.current_segments(video)
    with pytest.raises(AnnotationError):
        with store.batch():
            store.accept(a.id, "alice")
            store.accept(b.id, "alice")
            store.add_segment(video, 9.0, 3.0, "alice")
    assert store.history(video) == []
    with store.batch():
        ids = [store.accept(s.id, "alice") for s in (a, b)]
    assert [c.id for c in store.history(video)] == ids


def test_one_store_shared_by_threads(tmp_path):
    """Gradio calls back from worker threads: one Store object must serialise them safely."""
    with Store(tmp_path / "t.db") as s:
        vid = s.add_video(VTEST)
        errors: list[Exception] = []

        def work(k: int) -> None:
            try:
                for i in range(20):
                    s.add_segment(vid, k * 5 + i * 0.1, k * 5 + i * 0.1 + 0.5, f"user{k}")
                    s.current_segments(vid)
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(s.history(vid)) == 80 and len(s.current_segments(vid)) == 80
