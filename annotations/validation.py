"""Input checks with messages that say what was wrong and what to do.

Every check raises :class:`AnnotationError` (a ``ValueError``), never a library traceback.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from annotations.timebase import FrameSpan, snap

MAX_CAUSE_CHARS = 2000  # a paragraph; the longest of CUVA's 980 real causes has 363 characters
MAX_LABEL_CHARS = 64
MAX_ANNOTATOR_CHARS = 64
MAX_VIDEO_NAME_CHARS = 255
MAX_PATH_CHARS = 4096
MAX_MODEL_ID_CHARS = 200
MAX_SETTINGS_BYTES = 64 * 1024
MAX_FPS = 1000.0

# Login names and e-mail addresses: letters, digits, . _ @ + - and single inner spaces.
_ANNOTATOR_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+\-]*(?: [A-Za-z0-9._@+\-]+)*")
# Control characters other than tab and newline have no business in free text.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class AnnotationError(ValueError):
    """Bad annotation input; the message says what was wrong and what to do."""


class StoreBusyError(RuntimeError):
    """The database stayed locked by other writers for longer than the busy timeout."""


def check_annotator(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise AnnotationError("annotator name is empty: pass the reviewer's login name")
    name = name.strip()
    if len(name) > MAX_ANNOTATOR_CHARS:
        raise AnnotationError(
            f"annotator name is {len(name)} characters long: use at most {MAX_ANNOTATOR_CHARS}"
        )
    if not _ANNOTATOR_RE.fullmatch(name):
        raise AnnotationError(
            f"annotator name {name!r} has characters that are not allowed: use letters, digits, "
            "'.', '_', '@', '+', '-' and single spaces, starting with a letter or digit"
        )
    return name


def check_text(value: object, what: str, max_chars: int, *, allow_empty: bool) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise AnnotationError(f"{what} must be text, got {type(value).__name__}")
    value = value.strip()
    if not value and not allow_empty:
        raise AnnotationError(f"{what} is empty: write something, or leave it unchanged")
    if len(value) > max_chars:
        raise AnnotationError(
            f"{what} is {len(value)} characters long: the limit is {max_chars}; shorten it"
        )
    if _CONTROL_RE.search(value):
        raise AnnotationError(f"{what} contains control characters: remove them")
    return value


def check_cause(cause: object, *, allow_empty: bool) -> str:
    return check_text(cause, "cause", MAX_CAUSE_CHARS, allow_empty=allow_empty)


def check_seconds(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AnnotationError(f"{what} must be a number of seconds, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise AnnotationError(f"{what} must be a finite number of seconds, got {value}")
    return value


def check_fps(fps: object) -> float:
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps):
        raise AnnotationError(f"fps must be a finite number, got {fps!r}")
    if not 0 < fps <= MAX_FPS:
        raise AnnotationError(f"fps must be in (0, {MAX_FPS:g}], got {fps}")
    return float(fps)


def check_span(start_s: object, end_s: object, fps: float, total_frames: int | None) -> FrameSpan:
    """Snap ``[start_s, end_s)`` to frames and check it lies inside the video and is non-empty."""
    start_s = check_seconds(start_s, "start_s")
    end_s = check_seconds(end_s, "end_s")
    if start_s < 0:
        raise AnnotationError(f"start_s is {start_s} s: segments cannot start before 0 s")
    if start_s > end_s:
        raise AnnotationError(
            f"start_s ({start_s} s) is after end_s ({end_s} s): swap them"
        )
    span = snap(start_s, end_s, fps)
    if span.end_frame <= span.start_frame:
        raise AnnotationError(
            f"segment {start_s}-{end_s} s is shorter than one frame at {fps:g} fps once snapped "
            f"to frames: make it at least {1 / fps:.4g} s long"
        )
    if total_frames is not None and span.end_frame > total_frames:
        raise AnnotationError(
            f"segment {start_s}-{end_s} s ends after the video ({total_frames / fps:.4g} s, "
            f"{total_frames} frames at {fps:g} fps): end it at {total_frames / fps:.4g} s or earlier"
        )
    return span


def check_settings(settings: object) -> str:
    """Analysis settings as canonical JSON text (sorted keys)."""
    if settings is None:
        settings = {}
    if not isinstance(settings, Mapping):
        raise AnnotationError(f"settings must be a mapping, got {type(settings).__name__}")
    try:
        text = json.dumps(dict(settings), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise AnnotationError(
            f"settings are not JSON-serialisable ({exc}): pass plain numbers, strings, lists, dicts"
        ) from None
    if len(text.encode()) > MAX_SETTINGS_BYTES:
        raise AnnotationError(
            f"settings take {len(text.encode())} bytes as JSON: the limit is {MAX_SETTINGS_BYTES}"
        )
    return text


def check_optional_int(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) and not (
        isinstance(value, float) and value.is_integer()
    ):
        raise AnnotationError(f"{what} must be a whole number, got {value!r}")
    if value < 0:
        raise AnnotationError(f"{what} cannot be negative, got {value}")
    return int(value)
