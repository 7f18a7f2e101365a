"""Concurrency and crash safety of the store, with real processes on a real database file."""
from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from annotations import Store, VideoRecord
from uprm.segments import Segment

WRITERS = 10
PER_WRITER = 50
CTX = multiprocessing.get_context("fork")  # children open their own connection after the fork


def _setup(db: Path, n_segments: int = 40) -> int:
    with Store(db) as store:
        vid = store.add_video(VideoRecord(name="vtest", fps=10.0, frame_count=795, duration_s=79.5))
        store.add_analysis(vid, "uprm-small", {}, [
            Segment("vtest", 1.0 + i, 1.5 + i, "threat", 0.5) for i in range(n_segments)])
        return vid


def _one_correction(store: Store, vid: int, seg_ids: list[int], who: str, i: int) -> int:
    seg = seg_ids[i % len(seg_ids)]
    kind = i % 5
    if kind == 0:
        return store.accept(seg, who)
    if kind == 1:
        return store.reject(seg, who)
    if kind == 2:
        return store.edit_bounds(seg, 1.0 + i % 40, 1.8 + i % 40, who)
    if kind == 3:
        return store.edit_cause(seg, f"{who} says #{i}", who)
    return store.add_segment(vid, 50.0 + i % 20, 51.0 + i % 20, who, label="Fighting")


def _writer(db: str, vid: int, who: str, n: int, barrier, queue) -> None:
    with Store(db) as store:
        seg_ids = [s.id for s in store.current_segments(vid) if s.source == "model"]
        barrier.wait()
        ids = [_one_correction(store, vid, seg_ids, who, i) for i in range(n)]
    queue.put((who, ids))


def test_ten_writer_processes_lose_no_corrections(tmp_path):
    db = tmp_path / "shared.db"
    vid = _setup(db)
    barrier, queue = CTX.Barrier(WRITERS), CTX.Queue()
    procs = [CTX.Process(target=_writer, args=(str(db), vid, f"annotator{k}", PER_WRITER, barrier, queue))
             for k in range(WRITERS)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=90) for _ in procs)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    returned = [cid for ids in results.values() for cid in ids]
    assert len(returned) == len(set(returned)) == WRITERS * PER_WRITER
    with Store(db) as store:
        assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        history = store.history(vid)
        assert {c.id for c in history} == set(returned)
        for who, ids in results.items():
            mine = store.history(vid, who)
            assert [c.id for c in mine] == ids  # each writer's own order is kept
        assert [c.created_at for c in history] == sorted(c.created_at for c in history)
        by = {p.annotator: p.corrections for p in store.annotator_progress()}
        assert by == {f"annotator{k}": PER_WRITER for k in range(WRITERS)}
        assert len(store.current_segments(vid)) > 0


def _doomed_writer(db: str, vid: int, ack_fd: int) -> None:
    """Write corrections forever, acknowledging each id once its write call has returned;
    every third round is a 10-correction batch, acknowledged only after it committed."""
    with Store(db) as store:
        seg_ids = [s.id for s in store.current_segments(vid) if s.source == "model"]
        i = 0
        while True:
            if i % 3 == 2:
                with store.batch():
                    ids = [store.edit_cause(seg_ids[(i + j) % len(seg_ids)], f"batch {i} item {j}", "doomed")
                           for j in range(10)]
            else:
                ids = [_one_correction(store, vid, seg_ids, "doomed", i)]
            os.write(ack_fd, "".join(f"{cid}\n" for cid in ids).encode())
            i += 1


@pytest.mark.parametrize("acks_before_kill", [15, 60, 250])
def test_sigkill_mid_write_leaves_a_consistent_database(tmp_path, acks_before_kill):
    db = tmp_path / "killed.db"
    vid = _setup(db)
    read_fd, write_fd = os.pipe()
    child = CTX.Process(target=_doomed_writer, args=(str(db), vid, write_fd))
    child.start()
    os.close(write_fd)
    buf = b""
    deadline = time.monotonic() + 60
    while buf.count(b"\n") < acks_before_kill and time.monotonic() < deadline:
        chunk = os.read(read_fd, 4096)
        if not chunk:
            break
        buf += chunk
    os.kill(child.pid, signal.SIGKILL)
    child.join(timeout=30)
    assert child.exitcode == -signal.SIGKILL
    while chunk := os.read(read_fd, 4096):  # acks written just before the kill
        buf += chunk
    os.close(read_fd)
    acked = [int(line) for line in buf.split(b"\n")[:-1]]  # a torn last line is not an ack
    assert len(acked) >= acks_before_kill

    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
    raw.close()
    with Store(db) as store:
        history = store.history(vid)
        assert set(acked) <= {c.id for c in history}
        batches: dict[str, int] = {}
        for c in history:
            if c.kind == "edit_cause" and c.new_value["cause"].startswith("batch "):
                key = c.new_value["cause"].split(" item ")[0]
                batches[key] = batches.get(key, 0) + 1
        assert set(batches.values()) <= {10}  # a batch is all there or not at all
        # the store is fully usable after the crash
        segments = store.current_segments(vid)
        cid = store.accept(segments[0].id, "survivor")
        assert store.history(vid)[-1].id == cid
