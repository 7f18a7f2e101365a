"""`python -m annotations`: every command documented with an example, thin over the library."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from annotations import Store, VideoRecord
from annotations.cli import PROG, build_parser, main
from uprm.segments import Segment

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared reference folder {SHARED} is absent")


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices


def test_every_command_has_help_with_an_example():
    commands = _subparsers()
    assert set(commands) == {"init", "import", "export", "segments", "history", "queue", "progress", "agreement"}
    for name, p in commands.items():
        text = p.format_help()
        assert f"{PROG} {name} --db" in text, f"`{name}` help shows no example"


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "a.db"
    with Store(path) as store:
        vid = store.add_video(VideoRecord(name="vtest", fps=10.0, frame_count=795, duration_s=79.5,
                                          path="/media/vtest.avi"))
        store.add_analysis(vid, "uprm-small", {}, [Segment("vtest", 12.0, 18.5, "threat", 0.9)])
        (seg,) = store.current_segments(vid)
        store.edit_bounds(seg.id, 12.5, 18.0, "alice")
        store.accept(seg.id, "bob")
    return path


def test_export_command_writes_the_requested_videos(db, tmp_path, capsys):
    out = tmp_path / "exports"
    assert main(["export", "--db", str(db), "--format", "llava", "--out", str(out), "--video", "vtest"]) == 0
    written = Path(capsys.readouterr().out.strip())
    assert written.parent == out.resolve()
    (entry,) = json.loads(written.read_text())
    assert entry["id"] == "vtest" and "between 12.5s and 18.0s" in entry["conversations"][3]["value"]


def test_read_commands(db, capsys):
    assert main(["segments", "--db", str(db), "--video", "vtest", "--json"]) == 0
    (seg,) = json.loads(capsys.readouterr().out)
    assert (seg["start_frame"], seg["status"], seg["edited"]) == (125, "accepted", True)
    assert main(["segments", "--db", str(db), "--video", "vtest", "--as-of", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["start_s"] == 12.5
    assert main(["history", "--db", str(db), "--video", "1", "--annotator", "bob"]) == 0
    assert "accept" in capsys.readouterr().out
    assert main(["queue", "--db", str(db)]) == 0
    assert "reviewed (1)" in capsys.readouterr().out
    assert main(["progress", "--db", str(db), "--by-annotator", "--json"]) == 0
    assert [p["annotator"] for p in json.loads(capsys.readouterr().out)] == ["alice", "bob"]
    assert main(["agreement", "--db", str(db), "--video", "vtest", "--a", "alice", "--b", "bob"]) == 0
    assert json.loads(capsys.readouterr().out)["f1"] == 1.0


def test_bad_input_exits_2_with_a_message(db, tmp_path, capsys):
    assert main(["segments", "--db", str(tmp_path / "missing.db"), "--video", "x"]) == 2
    assert "no annotation database" in capsys.readouterr().err
    assert main(["segments", "--db", str(db), "--video", "nope"]) == 2
    assert "no video named 'nope'" in capsys.readouterr().err
    assert main(["agreement", "--db", str(db), "--video", "vtest", "--a", "alice", "--b", "eve"]) == 2
    assert "unknown annotator 'eve'" in capsys.readouterr().err


@needs_shared
def test_import_then_export_through_the_real_entry_point(tmp_path):
    db, out = tmp_path / "ucf.db", tmp_path / "out"
    run = lambda *args: subprocess.run([sys.executable, "-m", "annotations", *args], cwd=ROOT,  # noqa: E731
                                       capture_output=True, text=True, timeout=120)
    res = run("import", "--db", str(db), "--format", "ucf_crime",
              "--in", str(SHARED / "data" / "ucf_crime" / "Temporal_Anomaly_Annotation.txt"))
    assert res.returncode == 0, res.stderr
    assert "imported 156 segment(s) from 290 video(s)" in res.stdout
    res = run("export", "--db", str(db), "--format", "activitynet", "--out", str(out),
              "--video", "Arson011_x264", "Normal_Videos_003_x264")
    assert res.returncode == 0, res.stderr
    gt = json.loads(Path(res.stdout.strip()).read_text())["database"]
    assert [a["segment"] for a in gt["Arson011_x264"]["annotations"]] == [[5.0, 14.0], [680 / 30, 1267 / 30]]
    assert gt["Normal_Videos_003_x264"]["annotations"] == []
