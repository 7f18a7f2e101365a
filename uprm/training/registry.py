"""Model versions under a models root: one JSON registry beside the version folders.

    models_root/
        registry.json        {"format": 1, "current": "v0002", "versions": [ModelVersion as JSON, ...]}
        versions/v0001/      a checkpoint folder build_model(...) reads (config.json, uprm.safetensors,
        versions/v0002/      lora_adapter/), plus the run's train_log.jsonl and training_summary.json

Writes take an exclusive ``flock`` on ``registry.lock`` and replace the JSON atomically, so a studio
thread and a CLI can register at the same time without losing a version.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from uprm.training.errors import RegistryError

REGISTRY_FILE = "registry.json"
LOCK_FILE = "registry.lock"
VERSIONS_DIR = "versions"
REGISTRY_FORMAT = 1


@dataclass(frozen=True)
class EvalScores:
    """The paper's identify / locate scores on held-out videos (fractions in [0, 1]; None = undefined,
    e.g. FNR when the held-out videos hold no threat)."""

    n_videos: int
    fnr: float | None
    f2: float | None
    precision: float | None
    recall: float | None
    map_at: dict[str, float | None]  # tIoU threshold ("0.1") -> mAP
    average_map: float | None
    n_gt: int
    n_pred: int
    threshold: float  # per-step threat probability that opened a segment
    rouge_l: float | None = None  # attribute text metrics, when asked for
    bleu: float | None = None  # 0-100 as sacrebleu reports it
    per_video: dict[str, dict[str, Any]] = field(default_factory=dict)  # video -> {gt: [[s, e]], pred: [[s, e, score]]}
    # labelled segments whose category is one of the kind head's kinds, and how many it names over their
    # bounds; None without a kind head
    kinds_right: int | None = None
    kinds_of: int | None = None

    def to_json(self) -> dict[str, Any]:
        return _finite(asdict(self))

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "EvalScores":
        return cls(**d)


def pct_text(x: float | None) -> str:
    """A score fraction as the studio and the loop's verdicts print it: percent, one decimal; "n/a" when undefined."""
    return "n/a" if x is None else f"{100 * x:.1f}"


@dataclass(frozen=True)
class DataSummary:
    """What a version was trained and judged on."""

    train_videos: list[str]
    heldout_videos: list[str]
    train_examples: int
    train_segments: int
    heldout_segments: int
    export_path: str = ""  # the LLaVA JSON the examples came from
    store_path: str = ""
    last_correction_id: int | None = None  # the newest correction the data includes
    split_seed: int = 0
    skipped_videos: list[str] = field(default_factory=list)  # reviewed, but their file is not on this machine


@dataclass(frozen=True)
class ModelVersion:
    version_id: str
    parent: str | None  # the version it was fine-tuned from, or the preset / folder it started from
    created_at: str  # ISO-8601 UTC
    checkpoint: str  # absolute path of the folder uprm.model.build_model reads
    base: str  # the preset (or folder) at the root of this version's lineage
    data: DataSummary | None = None
    before: EvalScores | None = None  # the parent's scores on this version's held-out videos
    after: EvalScores | None = None
    train: dict[str, Any] = field(default_factory=dict)  # steps, examples, final losses, elapsed_s, settings
    promoted: bool = False  # became the current version when registered
    promotion: str = ""  # why it was made current or not (the loop's verdict on its held-out scores)
    notes: str = ""

    def to_json(self, root: Path) -> dict[str, Any]:
        d = asdict(self)
        d["data"] = asdict(self.data) if self.data else None
        d["before"] = self.before.to_json() if self.before else None
        d["after"] = self.after.to_json() if self.after else None
        ck = Path(self.checkpoint)
        with contextlib.suppress(ValueError):  # inside the root: stored relative, so the root can move
            d["checkpoint"] = str(ck.relative_to(root))
        return _finite(d)

    @classmethod
    def from_json(cls, d: dict[str, Any], root: Path) -> "ModelVersion":
        d = dict(d)
        d["data"] = DataSummary(**d["data"]) if d.get("data") else None
        d["before"] = EvalScores.from_json(d["before"]) if d.get("before") else None
        d["after"] = EvalScores.from_json(d["after"]) if d.get("after") else None
        ck = Path(d["checkpoint"])
        d["checkpoint"] = str(ck if ck.is_absolute() else root / ck)
        return cls(**d)


def _finite(obj: Any) -> Any:
    """NaN / inf -> None, so the registry stays strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Registry:
    def __init__(self, models_root: str | Path):
        self.root = Path(models_root).expanduser().resolve()

    @property
    def path(self) -> Path:
        return self.root / REGISTRY_FILE

    @contextlib.contextmanager
    def _locked(self):
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK_FILE, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _read(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {"format": REGISTRY_FORMAT, "current": None, "versions": []}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RegistryError(f"{self.path} is damaged ({exc}); restore it from a backup or move it aside") from None
        if (not isinstance(data, dict) or data.get("format") != REGISTRY_FORMAT
                or not isinstance(data.get("versions"), list)):
            raise RegistryError(f"{self.path} is not a UPRM model registry (format {REGISTRY_FORMAT})")
        return data

    def _write(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_name(self.path.name + f".tmp{os.getpid()}")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(data, indent=1, allow_nan=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    # ------------------------------------------------------------------ reading

    def versions(self) -> list[ModelVersion]:
        """Every registered version, oldest first."""
        return [ModelVersion.from_json(v, self.root) for v in self._read()["versions"]]

    def get(self, version_id: str) -> ModelVersion:
        for v in self.versions():
            if v.version_id == version_id:
                return v
        known = [v.version_id for v in self.versions()]
        raise RegistryError(f"no model version {version_id!r} in {self.path}; known: {known or 'none yet'}")

    def current(self) -> ModelVersion | None:
        cur = self._read().get("current")
        return self.get(cur) if cur else None

    # ------------------------------------------------------------------ writing

    def reserve(self) -> tuple[str, Path]:
        """A fresh version id and its (created, empty) folder; the id is taken even if never registered."""
        with self._locked():
            taken = {v["version_id"] for v in self._read()["versions"]}
            base = self.root / VERSIONS_DIR
            base.mkdir(parents=True, exist_ok=True)
            n = 1 + max([int(p.name[1:]) for p in base.iterdir() if p.name[1:].isdigit()] +
                        [int(t[1:]) for t in taken if t[1:].isdigit()] + [0])
            vid = f"v{n:04d}"
            folder = base / vid
            folder.mkdir()
            return vid, folder

    def register(self, version: ModelVersion, make_current: bool = True) -> ModelVersion:
        ck = Path(version.checkpoint)
        if not (ck / "config.json").is_file():
            raise RegistryError(f"{ck} is not a saved model (no config.json): save it before registering")
        with self._locked():
            data = self._read()
            if any(v["version_id"] == version.version_id for v in data["versions"]):
                raise RegistryError(f"version {version.version_id!r} is already registered")
            data["versions"].append(version.to_json(self.root))
            if make_current:
                data["current"] = version.version_id
            self._write(data)
        return version

    def set_current(self, version_id: str | None) -> None:
        """Make a registered version the one the app loads (None: back to the preset)."""
        with self._locked():
            data = self._read()
            if version_id is not None and not any(v["version_id"] == version_id for v in data["versions"]):
                raise RegistryError(f"no model version {version_id!r} in {self.path}")
            data["current"] = version_id
            self._write(data)


def list_versions(models_root: str | Path) -> list[ModelVersion]:
    """Every registered version under ``models_root``, oldest first (empty when none yet)."""
    return Registry(models_root).versions()


def current_version(models_root: str | Path) -> ModelVersion | None:
    return Registry(models_root).current()
