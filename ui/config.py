"""Options of the studio, parsed once by app.py and passed down (no module globals)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
SAMPLE_VIDEO = ASSETS / "sample_vtest_30s.mp4"


def default_data_dir() -> Path:
    return Path(os.environ.get("UPRM_DATA_DIR", Path.home() / ".cache" / "uprm" / "studio"))


@dataclass(frozen=True)
class AppConfig:
    host: str = "127.0.0.1"
    port: int = 7860
    db_path: Path = field(default_factory=lambda: default_data_dir() / "annotations.sqlite")
    model: str = "small"  # "small", "paper", or a checkpoint directory
    sam2_checkpoint: Path | None = None
    auth: tuple[tuple[str, str], ...] = ()  # (user, password) pairs; empty = no login
    share: bool = False
    max_upload_mb: int = 200
    max_duration_s: float = 600.0
    work_dir: Path = field(default_factory=lambda: default_data_dir() / "work")

    @property
    def auth_enabled(self) -> bool:
        return bool(self.auth)


def parse_auth(spec: str | None) -> tuple[tuple[str, str], ...]:
    """`user:password[,user2:password2]`, or `@FILE` with one `user:password` per line."""
    if not spec:
        return ()
    if spec.startswith("@"):
        text = Path(spec[1:]).read_text(encoding="utf-8")
        items = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    else:
        items = [s.strip() for s in spec.split(",") if s.strip()]
    pairs = []
    for item in items:
        user, sep, password = item.partition(":")
        if not sep or not user or not password:
            raise ValueError(f"bad --auth entry {item!r}: expected user:password")
        pairs.append((user, password))
    return tuple(pairs)
