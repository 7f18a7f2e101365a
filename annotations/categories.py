"""Segment categories: a configurable list, matched case-insensitively to one canonical spelling."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from annotations.validation import MAX_LABEL_CHARS, AnnotationError

# The 13 anomaly classes of UCF-Crime (Sultani et al., CVPR 2018), spelled as in its
# Temporal_Anomaly_Annotation.txt ("Normal" is a video class, not a segment category).
UCF_CRIME_CLASSES = (
    "Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting",
    "RoadAccidents", "Robbery", "Shooting", "Shoplifting", "Stealing", "Vandalism",
)
# The 11 top-level CUVA classes, spelled as in the CUVA repository's Category.txt
# (tests check this against /work/shared/data/cuva/Category.txt).
CUVA_CLASSES = (
    "Fighting", "Animals Hurting People", "Water Incidents", "Vandalism", "TrafficAccidents",
    "Robbery", "Theft", "Pedestrian Incidents", "Fire", "Traffic Violations", "Burning",
)
# The model's own generic label comes first; duplicates across datasets appear once.
DEFAULT_CATEGORIES = tuple(dict.fromkeys(("threat", *UCF_CRIME_CLASSES, *CUVA_CLASSES)))


class Categories:
    """An allowed set of categories; ``canonical("fighting") == "Fighting"``."""

    def __init__(self, names: Iterable[str] = DEFAULT_CATEGORIES) -> None:
        self._by_key: dict[str, str] = {}
        for raw in names:
            name = " ".join(str(raw).split())
            if not name:
                continue
            if len(name) > MAX_LABEL_CHARS:
                raise AnnotationError(
                    f"category {name[:40]!r}... is longer than {MAX_LABEL_CHARS} characters: shorten it"
                )
            self._by_key.setdefault(name.casefold(), name)
        if not self._by_key:
            raise AnnotationError("the category list is empty: give at least one category")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_key.values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and " ".join(name.split()).casefold() in self._by_key

    def __iter__(self):
        return iter(self.names)

    def __len__(self) -> int:
        return len(self._by_key)

    def canonical(self, name: str) -> str:
        """The allowed spelling of ``name``, or AnnotationError naming a few allowed ones."""
        if not isinstance(name, str) or not name.strip():
            raise AnnotationError("category is empty: pick one of the configured categories")
        key = " ".join(name.split()).casefold()
        if key not in self._by_key:
            shown = ", ".join(self.names[:8]) + (", ..." if len(self) > 8 else "")
            raise AnnotationError(
                f"unknown category {name[:80]!r}: use one of {shown} "
                f"(or configure the store with a category list that includes it)"
            )
        return self._by_key[key]


def read_category_file(path: str | Path) -> list[str]:
    """Categories from a text file, one per line; '#' starts a comment.

    CUVA's Category.txt style (``1-Fighting`` with sub-classes ``1-1 Street``) is understood:
    top-level ``N-Name`` lines give ``Name``, sub-class lines are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"category file {str(path)!r} does not exist")
    names: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        head, sep, rest = line.partition("-")
        if sep and head.isdigit():
            if rest[:1].isdigit():  # "1-1 Street": a CUVA sub-class
                continue
            line = rest.strip()
        names.append(line)
    return names
