"""Review-mode callbacks against a real SQLite store (no browser): the annotator's loop end to end."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tests.test_analysis_units import _analysis
from ui import review as rv
from ui.callbacks import StudioSession
from ui.config import AppConfig
from ui.services import Services


@pytest.fixture()
def services(tmp_path):
    return Services(AppConfig(db_path=tmp_path / "a.sqlite", work_dir=tmp_path / "work"))


def test_review_loop_from_analysis_to_export(services, tmp_path):
    session = StudioSession(video_path="/v/clip.mp4", analysis=_analysis())
    vid = rv.record_analysis(services, session)
    rows, progress = rv.queue_rows(services)
    assert rows[0][:4] == [vid, "clip", "unreviewed", 1] and "0/1 video(s) reviewed" in progress
    player, segs, msg, state = rv.open_video(services, vid, rv.ReviewState())
    assert player is None and "not on this machine" in msg  # the synthetic path does not exist
    assert segs[0][1:6] == [22.0, 24.0, 220, 240, "fall"]
    start, end, cat, cause, frames, seek, state = rv.select_segment(services, state, segs[0])
    assert (start, end, seek, state.segment_id) == (22.0, 24.0, 22.0, segs[0][0])
    assert frames.startswith("22.000 s = frame 220")

    # bad input: clear messages, nothing written
    rows, msg = rv.act(services, "accept", state, "", None, None, "", "")
    assert "Type your annotator name" in msg
    rows, msg = rv.act(services, "bounds", state, "ann", 25.0, 23.0, "", "")
    assert rows is not None and not isinstance(rows, list)  # gr.skip(): the table keeps its rows
    assert msg.startswith("Problem") and "start" in msg.lower()
    rows, msg = rv.act(services, "category", state, "ann", None, None, "no such class", "")
    assert msg.startswith("Problem")

    rows, msg = rv.act(services, "bounds", state, "ann", 21.94, 24.26, "", "")
    assert "correction #" in msg and rows[0][1:5] == [21.9, 24.3, 219, 243]  # snapped to frames
    rows, msg = rv.act(services, "accept", state, "ann", None, None, "", "")
    rows, msg = rv.act(services, "add", state, "ann", 5.0, 7.5, "fighting", "two people push each other")
    assert len(rows) == 2 and "correction #" in msg
    rows, msg = rv.act(services, "reviewed", state, "ann", None, None, "", "")
    assert "reviewed saved" in msg
    hist = rv.history_rows(services, state)
    assert [h[3] for h in hist] == ["edit_bounds", "accept", "add_segment", "mark_reviewed"]
    before = rv.segment_rows(services, state, as_of=hist[0][0])  # the earlier state is still there
    assert len(before) == 1 and before[0][1:3] == [21.9, 24.3]

    files, msg = rv.export(services, "llava", True)
    data = json.loads(open(files[0]).read())
    assert "exported 2 segment(s) of 1 video(s)" in msg
    answers = [c["value"] for c in data[0]["conversations"] if c["from"] == "gpt"]
    assert any("5.0s and 7.5s" in a for a in answers) and any("21.9s and 24.3s" in a for a in answers)

    assert "nothing matched" in rv.agreement(services, state, "ann", "ann") or "F1 1.00" in rv.agreement(
        services, state, "ann", "ann")


def test_auth_on_requires_login(tmp_path):
    services = Services(AppConfig(db_path=tmp_path / "a.sqlite", auth=(("ann", "pw"),)))
    rows, msg = rv.queue_rows(services, request=None)
    assert rows == [] and "Log in" in msg
    state = rv.ReviewState(video_id=1, segment_id=1)
    _, msg = rv.act(services, "accept", state, "mallory", None, None, "", "", request=SimpleNamespace(username=None))
    assert "Log in" in msg
    assert rv.annotator_name(services, "typed-name-ignored", SimpleNamespace(username="ann")) == "ann"
