"""Errors perception raises for bad settings or a broken install (bad videos raise VideoError)."""
from __future__ import annotations


class PerceptionError(ValueError):
    """Perception cannot run as asked; the message says what was wrong and what to do."""
