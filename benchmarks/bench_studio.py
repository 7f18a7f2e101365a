"""Studio timings in a real browser (Debian Chromium), printed as figures, not asserted.

    python benchmarks/bench_studio.py [--video assets/sample_vtest_30s.mp4] [--cold]

Measures: page load (navigation to the player being ready), time from clicking Analyse to the first
visible result (the first progress line in the page) and to the timeline, to the full result ("done"),
and to the overlay video playing. --cold points the evidence cache at an empty folder so perception
runs; otherwise the cache answers. The model is loaded before the click (its load time is printed
separately) so the figures are those of the analysis itself.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", default=str(ROOT / "assets" / "sample_vtest_30s.mp4"))
    p.add_argument("--cold", action="store_true", help="perceive from scratch (empty evidence cache)")
    args = p.parse_args()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from playwright.sync_api import sync_playwright

    from tests.conftest import CHROMIUM, CHROMIUM_ARGS, free_port
    from ui.config import AppConfig
    from ui.layout import build_demo, launch_kwargs
    from ui.services import Services

    tmp = Path(tempfile.mkdtemp(prefix="uprm-bench-"))
    if args.cold:  # an empty cache root, but keep the converted language model (not what we measure)
        from uprm.model.language import smollm2_dir

        lm_dir = smollm2_dir()
        (tmp / "cache").mkdir()
        (tmp / "cache" / lm_dir.name).symlink_to(lm_dir)
        os.environ["UPRM_CACHE_DIR"] = str(tmp / "cache")
    cfg = AppConfig(port=free_port(), db_path=tmp / "a.sqlite", work_dir=tmp / "work")
    services = Services(cfg)
    t = time.perf_counter()
    services.model()
    print(f"model load: {time.perf_counter() - t:.2f} s")
    demo = build_demo(cfg, services)
    demo.queue().launch(**launch_kwargs(cfg), prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{cfg.port}/"
    js_status = "() => document.querySelector('#status').innerText"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        t = time.perf_counter()
        page.goto(url)
        page.wait_for_function("() => { const v = document.querySelector('#player video'); return v && v.readyState >= 2; }",
                               timeout=120_000)
        print(f"page load to playable sample: {time.perf_counter() - t:.2f} s")
        if args.video != str(ROOT / "assets" / "sample_vtest_30s.mp4"):
            page.locator("#player input[type=file]").set_input_files(args.video)
        initial = page.evaluate(js_status)
        t0 = time.perf_counter()
        page.locator("#analyse_btn").click()
        page.wait_for_function(f"() => document.querySelector('#status').innerText !== {initial!r}", timeout=600_000)
        first = time.perf_counter() - t0
        page.wait_for_function("() => document.querySelector('#timeline .js-plotly-plot') !== null", timeout=900_000)
        timeline = time.perf_counter() - t0
        page.wait_for_function("() => { const v = document.querySelector('#player video');"
                               " return v && /overlay_/.test(v.currentSrc) && v.readyState >= 2; }", timeout=900_000)
        overlay = time.perf_counter() - t0
        page.wait_for_function("() => /done:/.test(document.querySelector('#status').innerText)", timeout=900_000)
        done = time.perf_counter() - t0
        print(f"click -> first visible progress: {first:.2f} s")
        print(f"click -> timeline and segments:  {timeline:.2f} s")
        print(f"click -> overlay video playing:  {overlay:.2f} s")
        print(f"click -> full result (causes):   {done:.2f} s")
        print(f"status: {page.evaluate(js_status)}")
        browser.close()
    demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
