"""The paper's three DeepSVU instructions and their answer shapes (verbatim), in one place."""
from __future__ import annotations

IDENTIFY = "Please determine whether there exist threats in the video"
LOCATE = "Please locate the exact timestamps where the threats occur"
ATTRIBUTE = "Please give me a detailed explanation of the root causes of the threat"
INSTRUCTIONS = {"identify": IDENTIFY, "locate": LOCATE, "attribute": ATTRIBUTE}


def identify_answer(has_threat: bool) -> str:
    return "Yes, there exists a threat" if has_threat else "No, there exists no threat"


def format_time_s(t_s: float) -> str:
    """Seconds as the answers write them: one decimal, e.g. '22.4s'."""
    return f"{t_s:.1f}s"


def locate_answer(intervals_s: list[tuple[float, float]]) -> str:
    if not intervals_s:
        return "There is no threat in the video"
    parts = [f"between {format_time_s(s)} and {format_time_s(e)}" for s, e in intervals_s]
    return "The threat occurs " + ", and ".join(parts)


def attribute_answer(cause: str) -> str:
    cause = cause.strip().rstrip(".")
    if cause.lower().startswith("the threat is attributed to"):
        return cause + "."
    return f"The threat is attributed to {cause[:1].lower() + cause[1:]}." if cause else ""
