"""The one error type of the compositor: bad input it can explain (a ValueError, never a deep traceback)."""
from __future__ import annotations


class ComposeError(ValueError):
    """A source video, event spec or option the compositor cannot use; the message says what to do."""
