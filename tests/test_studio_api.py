"""The studio's API through gradio_client: analyse the sample, then ask about it (same session)."""
from __future__ import annotations

import pytest

from tests.conftest import launch_studio

pytestmark = pytest.mark.slow


def test_analyze_and_chat_through_gradio_client(tmp_path):
    from gradio_client import Client, handle_file

    from ui.config import SAMPLE_VIDEO

    url, demo, _ = launch_studio(tmp_path)
    try:
        client = Client(url, verbose=False)
        status, timeline, rows, player, meta, *_ = client.predict(
            handle_file(str(SAMPLE_VIDEO)), ["pose", "graph"], api_name="/analyze")
        assert "done:" in status and "review queue" in status
        path = player if isinstance(player, str) else player["video"]
        assert "overlay_" in str(path) and str(path).endswith(".mp4")
        assert '"fps": 10.0' in meta
        history, _ = client.predict("is there a threat in the video?", [], api_name="/chat")
        answer = history[-1]["content"]
        text = answer if isinstance(answer, str) else " ".join(p.get("text", "") for p in answer)
        assert text.startswith(("Yes, there exists a threat", "No, there exists no threat"))
    finally:
        demo.close()
