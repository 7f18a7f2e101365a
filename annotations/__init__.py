"""Annotation store for UPRM Studio: videos, model analyses, an append-only correction history
from which every review state is derived, and import/export in the formats the field speaks.

Nothing here imports gradio: the review UI in ``ui/`` calls this library.
"""
from annotations.categories import DEFAULT_CATEGORIES, Categories
from annotations.records import (
    Agreement,
    AnalysisRecord,
    AnnotatorProgress,
    Correction,
    ReviewedSegment,
    ReviewQueue,
    VideoProgress,
    VideoRecord,
    VideoState,
)
from annotations.store import Store
from annotations.validation import AnnotationError, StoreBusyError

__all__ = [
    "DEFAULT_CATEGORIES", "Categories", "Agreement", "AnalysisRecord", "AnnotatorProgress",
    "Correction", "ReviewedSegment", "ReviewQueue", "VideoProgress", "VideoRecord", "VideoState", "Store",
    "AnnotationError", "StoreBusyError",
]
