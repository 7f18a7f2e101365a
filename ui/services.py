"""Process-wide services shared by every session: the model and the annotation store, loaded on first
use (not at import), with a lock because ablation switches mutate the shared model."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ui.config import AppConfig

log = logging.getLogger("uprm.studio")


def studio_categories() -> tuple[str, ...]:
    """The store's categories plus every category the analysis can name, so reviewers can pick them."""
    from annotations.categories import DEFAULT_CATEGORIES
    from uprm.analysis import ANALYSIS_CATEGORIES

    return tuple(dict.fromkeys((*ANALYSIS_CATEGORIES, *DEFAULT_CATEGORIES)))


@dataclass
class Services:
    cfg: AppConfig
    _model: object | None = None
    _store: object | None = None
    model_lock: threading.RLock = field(default_factory=threading.RLock)
    _load_lock: threading.Lock = field(default_factory=threading.Lock)

    def model(self):
        with self._load_lock:
            if self._model is None:
                from uprm.model import build_model

                log.info("loading model %s", self.cfg.model)
                self._model = build_model(self.cfg.model)
                self._model.eval()
            return self._model

    def store(self):
        with self._load_lock:
            if self._store is None:
                from annotations.store import Store

                Path(self.cfg.db_path).parent.mkdir(parents=True, exist_ok=True)
                self._store = Store(self.cfg.db_path, categories=studio_categories())
            return self._store

    @property
    def renders(self) -> Path:
        path = Path(self.cfg.work_dir) / "renders"
        path.mkdir(parents=True, exist_ok=True)
        return path
