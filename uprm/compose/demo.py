"""The demo clip: the bundled 30 s sample with two clearly labelled synthetic threats and two harmless
passers-by composed the same way. The banner is for the demo only, never for training clips."""
from __future__ import annotations

from pathlib import Path

from uprm.compose.compositor import ComposedVideo, compose
from uprm.compose.events import EventSpec

ROOT = Path(__file__).resolve().parents[2]
DEMO_SOURCE = ROOT / "assets" / "sample_vtest_30s.mp4"
DEMO_EVENTS = (
    EventSpec("struggle", start_s=6.0, duration_s=5.0),
    EventSpec("fall", start_s=19.0),
    EventSpec("normal_walk", start_s=1.0, duration_s=6.0),
    EventSpec("pause_walk", start_s=12.0, duration_s=7.0),
)


def make_demo(out: str | Path = ROOT / "assets" / "demo_composed.mp4", source: str | Path = DEMO_SOURCE,
              seed: int = 7) -> ComposedVideo:
    """Write the labelled demo clip and its ground truth JSON (same name, .json) beside it."""
    return compose(source, list(DEMO_EVENTS), seed, out, label=True)
