"""The studio end to end in Debian Chromium: analyse, timeline, seek, layers, chat, teaching view.

Slow: the first run perceives the sample (cached afterwards per content hash). Screenshots of every
step land in tests/artifacts/.
"""
from __future__ import annotations

import pytest

from tests.conftest import launch_studio, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ANALYSIS_TIMEOUT_MS = 600_000


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    url, demo, _ = launch_studio(tmp_path_factory.mktemp("studio"))
    yield url
    demo.close()


def _current_time(page) -> float:
    return page.evaluate("document.querySelector('#player video').currentTime")


def test_studio_flow(page, studio):
    page.goto(studio)
    page.locator("#analyse_btn").click()
    # progress is reported while perception runs, then "done"
    page.wait_for_function("() => /perception|fusion|rendering|done/.test(document.querySelector('#status').innerText)",
                           timeout=120_000)
    screenshot(page, "02_progress")
    page.wait_for_function("() => /done:/.test(document.querySelector('#status').innerText)",
                           timeout=ANALYSIS_TIMEOUT_MS)
    status = page.locator("#status").inner_text()
    assert "review queue" in status
    screenshot(page, "03_analysed")

    # the timeline has the threat score and the four gate traces
    page.wait_for_function("() => document.querySelector('#timeline .js-plotly-plot') !== null", timeout=30_000)
    names = page.evaluate("Array.from(document.querySelector('#timeline .js-plotly-plot').data).map(d => d.name)")
    assert "threat score" in names
    assert {"R human pose", "R object relations", "R visual background", "1-G coarse share"} <= set(names)

    # the player now shows the overlay render the app wrote (H.264, plays)
    page.wait_for_function("() => { const v = document.querySelector('#player video');"
                           " return v && /overlay_/.test(v.currentSrc) && v.readyState >= 2; }", timeout=120_000)

    # clicking a point of the timeline seeks the player there
    target = page.evaluate("""() => {
        const gd = document.querySelector('#timeline .js-plotly-plot');
        const i = gd.data.findIndex(d => d.name === 'threat score');
        const x = gd.data[i].x[30];
        gd.emit('plotly_click', {points: [{x: x, customdata: gd.data[i].customdata[30], curveNumber: i}]});
        return x; }""")
    page.wait_for_function(f"() => Math.abs(document.querySelector('#player video').currentTime - {target}) < 0.2",
                           timeout=10_000)
    assert _current_time(page) == pytest.approx(target, abs=0.2)
    screenshot(page, "04_seeked")

    # selecting a segment (when the model found any) seeks to its start and shows its evidence
    rows = page.locator("#segments tbody tr")
    if rows.count() and "(writing" not in rows.first.inner_text() and rows.first.inner_text().strip():
        start = float(rows.first.locator("td").nth(1).inner_text())
        rows.first.locator("td").nth(4).click()
        page.wait_for_function(f"() => Math.abs(document.querySelector('#player video').currentTime - {start}) < 0.2",
                               timeout=10_000)
        assert "Segment 1" in page.locator("#segment_details").inner_text()

    # toggling a layer re-renders the overlay without that layer
    before = page.evaluate("document.querySelector('#player video').currentSrc")
    page.locator("#layers label", has_text="masks").click()
    page.wait_for_function(f"() => document.querySelector('#player video').currentSrc !== {before!r}", timeout=120_000)
    assert "overlay layers: pose, graph, banner" in page.locator("#status").inner_text()
    screenshot(page, "05_layer_toggled")

    # chat: a streamed answer that cites times
    page.locator("#question textarea").fill("what happens at 12 s?")
    page.locator("#question textarea").press("Enter")
    bot = page.locator("#chatbot .message.bot, #chatbot [data-testid='bot']").last
    bot.wait_for(timeout=60_000)
    # the answer cites times (the step asked about, or the bounds of the segment covering it)
    page.wait_for_function("() => /\\d+\\.\\ds/.test(document.querySelector('#chatbot .message.bot, #chatbot').innerText)",
                           timeout=60_000)
    screenshot(page, "06_chat")

    # teaching view: flipping an ablation changes the gate-weight plot
    page.get_by_role("tab", name="Teach: expert weighting").click()
    page.locator("#ablation label", has_text="w/o HPE").click()
    page.wait_for_function("() => document.querySelector('#teach_plot .js-plotly-plot') !== null", timeout=120_000)
    first = page.evaluate("JSON.stringify(document.querySelector('#teach_plot .js-plotly-plot').data.filter(t => t.name === 'R human pose').pop().y.slice(0, 5))")
    page.locator("#ablation label", has_text="w/o PTR").click()
    page.wait_for_function(
        f"() => JSON.stringify(document.querySelector('#teach_plot .js-plotly-plot').data.filter(t => t.name === 'R human pose').pop().y.slice(0, 5)) !== {first!r}",
        timeout=120_000)
    assert "w/o PTR" in page.locator("#teach_note").inner_text()
    screenshot(page, "07_teach")
