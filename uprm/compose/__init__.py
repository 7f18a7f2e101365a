"""The event compositor: ground-truth threat events composed from real normal footage.

Real people are cut out of a static camera's own frames (selfie segmentation x background
subtraction against a clean plate), then pasted back, scaled for perspective, relit, feathered and
shadowed, acting out scripted events: threats (fall, struggle, crowd_run, loiter, left_object) with
exact ActivityNet ground truth, and harmless look-alikes made the same way that have none.
"""
from uprm.compose.compositor import ComposedVideo, Footage, compose, prepare
from uprm.compose.dataset import Dataset, make_dataset
from uprm.compose.errors import ComposeError
from uprm.compose.events import EVENT_KINDS, HARMLESS_KINDS, THREAT_KINDS, ComposedEvent, EventSpec

__all__ = [
    "ComposeError", "ComposedEvent", "ComposedVideo", "Dataset", "EVENT_KINDS", "EventSpec", "Footage",
    "HARMLESS_KINDS", "THREAT_KINDS", "compose", "make_dataset", "prepare",
]
