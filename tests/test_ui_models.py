"""Models-tab callbacks (no browser): the version table and the training job's last line say whether the
new version is served and why."""
from __future__ import annotations

from dataclasses import replace

from tests.test_training_data import _version
from ui import models as mv
from ui.config import AppConfig
from ui.services import Services, TrainingJob
from uprm.training.registry import Registry


def _services(tmp_path) -> Services:
    return Services(AppConfig(db_path=tmp_path / "a.sqlite", work_dir=tmp_path / "work"))


def test_version_table_shows_each_verdict(tmp_path):
    services = _services(tmp_path)
    reg = Registry(services.models_root)
    reg.register(replace(_version(reg, "small", 0.4), promoted=True, promotion="average mAP 30.0 -> 40.0: at least"))
    reg.register(replace(_version(reg, "v0001", 0.2), promotion="average mAP 40.0 -> 20.0: lower"), make_current=False)
    rows = mv.version_rows(services)
    assert len(mv.VERSION_COLUMNS) == len(rows[0])
    assert [(r[0], r[1], r[-1]) for r in rows] == [("v0002", "", "average mAP 40.0 -> 20.0: lower"),
                                                   ("v0001", "yes", "average mAP 30.0 -> 40.0: at least")]


def test_finished_job_says_which_model_is_served_and_why(tmp_path):
    services = _services(tmp_path)
    reg = Registry(services.models_root)
    version = replace(_version(reg, "small", 0.5), version_id="v0003", promoted=False,
                      promotion="held-out average mAP 60.0 -> 50.0, F2 70.0 -> 72.0: lower than its parent's")
    services.job = TrainingJob(done=True, version=version)
    line, _ = mv.poll(services)
    assert "registered version v0003, still serving the previous model" in line
    assert "60.0 -> 50.0" in line and "serve the new one below" in line
    services.job = replace(services.job, version=replace(version, promoted=True,
                                                         promotion="held-out average mAP 50.0 -> 60.0: at least its parent's"))
    line, _ = mv.poll(services)
    assert "registered version v0003, now serving it: held-out average mAP 50.0 -> 60.0" in line
