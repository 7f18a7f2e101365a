"""The studio's API through gradio_client: analyse the sample, then ask about it (same session)."""
from __future__ import annotations

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.slow


def test_analyze_and_chat_through_gradio_client(tmp_path):
    from gradio_client import Client, handle_file

    from ui.config import SAMPLE_VIDEO, AppConfig
    from ui.layout import build_demo, launch_kwargs

    cfg = AppConfig(port=free_port(), db_path=tmp_path / "a.sqlite", work_dir=tmp_path / "work")
    demo = build_demo(cfg)
    demo.queue().launch(**launch_kwargs(cfg), prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{cfg.port}/", verbose=False)
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
