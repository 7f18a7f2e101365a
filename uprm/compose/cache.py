"""Where the compositor keeps what is slow to recompute (plates, sprite banks), keyed by content hash and
the code that made them."""
from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path


def cache_dir() -> Path:
    """``$UPRM_CACHE_DIR/compose`` (default ~/.cache/uprm/compose), as the rest of uprm caches."""
    return Path(os.environ.get("UPRM_CACHE_DIR", Path.home() / ".cache" / "uprm")) / "compose"


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 of what decides a composed clip's pixels besides its plan: this package's source and the
    versions of the libraries that decode, cut, blend and encode. Plates, sprite banks and clips are kept
    only under the fingerprint that made them, so a work folder never mixes in pixels of older code (it did:
    clips reused from disk because an older compositor planned the same ground truth made a build that
    could not be repeated from nothing)."""
    import av
    import cv2
    import numpy as np

    digest = hashlib.sha256(json.dumps([av.__version__, cv2.__version__, np.__version__]).encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()
