"""The app launched in-process on a free loopback port, driven by Debian Chromium."""
from __future__ import annotations

import pytest

from tests.conftest import launch_studio, screenshot

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    url, demo, _ = launch_studio(tmp_path_factory.mktemp("studio"))
    yield url
    demo.close()


def test_sample_video_plays_in_chromium(page, app_url):
    page.goto(app_url)
    video = page.locator("#player video")
    video.wait_for(state="attached", timeout=60_000)
    page.wait_for_function(
        "() => { const v = document.querySelector('#player video'); return v && v.readyState >= 2; }",
        timeout=60_000,
    )
    duration = page.evaluate("document.querySelector('#player video').duration")
    assert duration == pytest.approx(30.0, abs=0.15)
    screenshot(page, "01_sample_loaded")
