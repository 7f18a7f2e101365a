"""Shared fixtures: paths to the real reference data, a free loopback port, a live app, a browser."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ARTIFACTS = ROOT / "tests" / "artifacts"  # screenshots of browser tests (git-ignored)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"reference data folder {SHARED} is absent (it sits beside the repository)")
    return SHARED


@pytest.fixture(scope="session")
def vtest_path(shared_dir: Path) -> Path:
    path = shared_dir / "media" / "vtest.avi"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: run `make setup` (installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    yield pg
    ctx.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def launch_studio(tmp: Path, services_factory=None):
    """Launch the studio in-process on a free loopback port; returns (url, demo, services)."""
    from ui.config import AppConfig
    from ui.layout import build_demo, launch_kwargs
    from ui.services import Services

    cfg = AppConfig(port=free_port(), db_path=tmp / "a.sqlite", work_dir=tmp / "work")
    services = (services_factory or Services)(cfg)
    demo = build_demo(cfg, services)
    demo.queue().launch(**launch_kwargs(cfg), prevent_thread_lock=True, quiet=True)
    return f"http://127.0.0.1:{cfg.port}/", demo, services
