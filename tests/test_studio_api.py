"""The studio's API through gradio_client: analyse the sample, then ask about it (same session)."""
from __future__ import annotations

import re

import pytest

from tests.conftest import launch_studio

pytestmark = pytest.mark.slow


def demo_threshold() -> float:
    import json

    from ui.config import ASSETS

    return json.loads((ASSETS / "uprm-small" / "config.json").read_text())["threat_threshold"]


def segment_count(status: str) -> int:
    """Threat segments an Analyse status reports ("no threat found" or "N threat segment(s)")."""
    if "no threat found" in status:
        return 0
    found = re.search(r"(\d+) threat segment", status)
    assert found, status
    return int(found.group(1))


def test_analyze_and_chat_through_gradio_client(tmp_path):
    from gradio_client import Client, handle_file

    from ui.config import SAMPLE_VIDEO
    from uprm.analysis import AnalysisSettings, analyze

    url, demo, services = launch_studio(tmp_path)
    try:
        client = Client(url, verbose=False)
        job = client.submit(handle_file(str(SAMPLE_VIDEO)), ["pose", "graph"], api_name="/analyze")
        final = job.result()  # the generator's last update; job.outputs() holds every streamed one
        status, meta = final[0], final[4]
        assert "done:" in status and "review queue" in status
        assert '"fps": 10.0' in meta
        # the player is set once, to the overlay the app rendered; other updates leave it alone
        players = [o[3] for o in job.outputs() if isinstance(o[3], str)]
        assert len(players) == 1 and "overlay_" in players[0] and players[0].endswith(".mp4")
        assert f"threshold {demo_threshold():g}" in status  # threshold left out (slider at 0): the tuned rule
        # a chosen threshold reaches the analysis: the studio reports what uprm.analysis finds at 0.95;
        # one beyond the slider is refused by name
        strict = client.predict(handle_file(str(SAMPLE_VIDEO)), ["pose"], 0.95, api_name="/analyze")[0]
        expected = analyze(SAMPLE_VIDEO, services.model(), AnalysisSettings(threshold=0.95, explain=False))
        assert "threshold 0.95" in strict and segment_count(strict) == len(expected.segments)
        with pytest.raises(Exception, match="greater than maximum value 0.95"):
            client.predict(handle_file(str(SAMPLE_VIDEO)), ["pose"], 1.5, api_name="/analyze")
        history, _ = client.predict("is there a threat in the video?", [], api_name="/chat")
        answer = history[-1]["content"]
        text = answer if isinstance(answer, str) else " ".join(p.get("text", "") for p in answer)
        assert text.startswith(("Yes, there exists a threat", "No, there exists no threat"))
    finally:
        demo.close()


def test_teaching_view_says_when_a_switch_is_already_the_models_own(tmp_path):
    from ui.callbacks import StudioSession, compare_ablation
    from ui.config import AppConfig, SAMPLE_VIDEO
    from ui.services import Services
    from uprm.analysis import AnalysisSettings, analyze
    from uprm.perception import perceive

    services = Services(AppConfig(db_path=tmp_path / "a.sqlite", work_dir=tmp_path / "work"))
    model = services.model()
    assert "no_vbe" in model.ablation.active  # the shipped default (see assets/MODEL_CARD.md)
    evidence = perceive(SAMPLE_VIDEO)
    analysis = analyze(SAMPLE_VIDEO, model, AnalysisSettings(explain=False), evidence=evidence)
    # categories come from the shipped kind head: one of the kinds it was fitted on
    assert analysis.segments and all(s.category in model.config.event_kinds for s in analysis.segments)
    session = StudioSession(video_path=str(SAMPLE_VIDEO), analysis=analysis, evidence=evidence)
    _, note, _ = compare_ablation(services, "w/o VBE", session)
    assert "trained with no_vbe, so here it is unchanged" in note
    assert len(session.variants["w/o VBE"].segments) == len(analysis.segments)
    _, note, _ = compare_ablation(services, "w/o HPE", session)
    assert "segment(s) vs" in note and "unchanged" not in note


def test_alert_threshold_zero_means_the_tuned_rule_and_nonsense_is_refused():
    from ui.callbacks import UserError, alert_threshold

    assert alert_threshold(0) is None and alert_threshold(None) is None and alert_threshold(0.45) == 0.45
    with pytest.raises(UserError, match="between 0 and 1.*set 0"):
        alert_threshold(1.5)
