"""Where the compositor keeps what is slow to recompute (plates, sprite banks), keyed by content hash."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$UPRM_CACHE_DIR/compose`` (default ~/.cache/uprm/compose), as the rest of uprm caches."""
    return Path(os.environ.get("UPRM_CACHE_DIR", Path.home() / ".cache" / "uprm")) / "compose"
