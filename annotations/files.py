"""Export files: names that cannot leave the export folder, and writes that never leave a
half-written file under the final name (temp file in the same folder, fsync, atomic rename)."""
from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from annotations.validation import AnnotationError

MAX_STEM_CHARS = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_stem(name: str, default: str = "export") -> str:
    """A file-name stem made only of ``[A-Za-z0-9._-]``: separators, '..', leading dots and
    control characters cannot survive, so the result never names another folder or a hidden file."""
    stem = _UNSAFE.sub("_", str(name)).strip("._-")
    stem = re.sub(r"\.{2,}", ".", stem)[:MAX_STEM_CHARS].strip("._-")
    return stem or default


def inside(folder: Path, name: str) -> Path:
    """``folder / name``, refusing anything that would resolve outside ``folder``."""
    folder = folder.resolve()
    target = (folder / name).resolve()
    if target.parent != folder:
        raise AnnotationError(f"export file name {name!r} would leave the export folder {str(folder)!r}")
    return target


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)``, then fsync and rename ``tmp_path`` onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; exports are meant to be shared
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
