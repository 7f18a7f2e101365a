"""Review mode in Debian Chromium: queue, segment selection seeks, keyboard accept and frame stepping."""
from __future__ import annotations

import pytest

from tests.conftest import launch_studio, screenshot

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def review_app(tmp_path_factory):
    from annotations.records import VideoRecord
    from ui.config import SAMPLE_VIDEO
    from uprm.segments import Segment
    from uprm.video import probe

    url, demo, services = launch_studio(tmp_path_factory.mktemp("review"))
    store = services.store()
    vid = store.add_video(VideoRecord.from_video_info(probe(SAMPLE_VIDEO)))
    store.add_analysis(vid, "test-model", {}, [Segment("sample", 12.0, 15.5, "fall", 0.9, "a person falls")])
    yield url, store, vid
    demo.close()


def test_review_with_keyboard(page, review_app):
    url, store, vid = review_app
    page.goto(url)
    page.get_by_role("tab", name="Review").click()
    page.locator("#rv_annotator textarea, #rv_annotator input").first.fill("alice")
    page.locator("#rv_queue").get_by_text("sample_vtest_30s").filter(visible=True).first.click()
    page.wait_for_function("() => /reviewing/.test(document.querySelector('#rv_status').innerText)", timeout=30_000)
    page.wait_for_function("() => { const v = document.querySelector('#review_player video');"
                           " return v && v.readyState >= 1; }", timeout=60_000)
    page.locator("#rv_segments").get_by_text("fall").filter(visible=True).first.click()
    page.wait_for_function("() => Math.abs(document.querySelector('#review_player video').currentTime - 12.0) < 0.05",
                           timeout=30_000)
    assert "frame 120" in page.locator("#rv_frames").inner_text()

    page.locator("body").click(position={"x": 5, "y": 5})  # focus off inputs so keys reach the page
    page.keyboard.press(".")  # one frame forward at 10 fps
    page.wait_for_function("() => Math.abs(document.querySelector('#review_player video').currentTime - 12.1) < 0.02",
                           timeout=10_000)
    page.keyboard.press("]")  # end bound = the player's time
    page.wait_for_function("() => /12\\.1/.test(document.querySelector('#rv_end input').value)", timeout=10_000)
    page.keyboard.press("a")
    page.wait_for_function("() => /accept saved as correction/.test(document.querySelector('#rv_status').innerText)",
                           timeout=30_000)
    screenshot(page, "08_review")
    segs = store.current_segments(vid)
    assert segs[0].status == "accepted" and segs[0].annotators == ("alice",)
