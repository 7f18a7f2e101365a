"""Process-wide services shared by every session: the model and the annotation store, loaded on first
use (not at import), with a lock because ablation switches mutate the shared model."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ui.config import AppConfig

if TYPE_CHECKING:  # the loop's modules load torch: imported where a job runs, not at start-up
    from uprm.training.registry import ModelVersion

log = logging.getLogger("uprm.studio")


def studio_categories() -> tuple[str, ...]:
    """The store's categories plus every category the analysis can name, so reviewers can pick them."""
    from annotations.categories import DEFAULT_CATEGORIES
    from uprm.analysis import ANALYSIS_CATEGORIES

    return tuple(dict.fromkeys((*ANALYSIS_CATEGORIES, *DEFAULT_CATEGORIES)))


@dataclass
class TrainingJob:
    """The correction loop running in a background thread; the page polls it."""

    stage: str = "starting"
    fraction: float = 0.0
    done: bool = False
    error: str = ""
    version: ModelVersion | None = None  # what the loop registered (promoted or not, and why)
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


@dataclass
class Services:
    cfg: AppConfig
    _model: object | None = None
    _store: object | None = None
    # A plain Lock, not an RLock: Gradio advances a streaming callback's generator on different worker
    # threads, so a lock held across yields may be released by another thread than the one that took it.
    model_lock: threading.Lock = field(default_factory=threading.Lock)
    _load_lock: threading.Lock = field(default_factory=threading.Lock)
    job: TrainingJob | None = None
    _variants: dict = field(default_factory=dict)  # alpha -> model trained with that L_z weight

    def alpha_variants(self) -> dict[float, object]:
        """Router variants trained at several alpha values (assets/alpha_variants/alpha_<a>/), loaded once."""
        from ui.config import ASSETS

        root = ASSETS / "alpha_variants"
        with self._load_lock:
            if not self._variants and root.is_dir():
                from uprm.model import build_model

                for folder in sorted(root.glob("alpha_*")):
                    alpha = float(folder.name.removeprefix("alpha_"))
                    model = build_model(folder)
                    model.eval()
                    self._variants[alpha] = model
            return dict(self._variants)

    @property
    def models_root(self) -> Path:
        return Path(self.cfg.work_dir) / "models"

    def model(self):
        """The current model version of the registry if the correction loop made one, else --model."""
        with self._load_lock:
            if self._model is None:
                self._model = self._load(None)
            return self._model

    def _load(self, version_id: str | None):
        from uprm.training.registry import Registry

        registry = Registry(self.models_root)
        version = registry.get(version_id) if version_id else registry.current()
        if version is None:
            from uprm.model import build_model

            log.info("loading model %s", self.cfg.model)
            model = build_model(self.cfg.model)
        else:
            from uprm.training.loop import load_version

            log.info("loading model version %s", version.version_id)
            model = load_version(self.models_root, version.version_id)
        model.eval()
        return model

    def use_version(self, version_id: str | None) -> str:
        """Switch every session to a registered version (None: back to --model); returns its id."""
        from uprm.training.registry import Registry

        model = self._load(version_id)
        with self.model_lock, self._load_lock:
            Registry(self.models_root).set_current(version_id)
            self._model = model
        return model.model_id

    def start_training(self) -> TrainingJob:
        """Run the correction loop on the store's reviewed corrections in the background (one at a time)."""
        if self.job is not None and not self.job.done:
            raise RuntimeError("a training job is already running: wait for it or cancel it")
        job = TrainingJob()

        def report(stage: str, fraction: float) -> None:
            job.stage, job.fraction = stage, float(fraction)

        def work() -> None:
            from uprm.training.loop import run_correction_loop

            try:
                version = run_correction_loop(self.store(), self.models_root, base=self.cfg.model,
                                              progress=report, cancel=job.cancel)
                job.version = version
                if version.promoted:  # the loop made it current: serve it from now on
                    self.use_version(version.version_id)
                job.stage = "done"
            except Exception as exc:  # shown in the page; the studio keeps serving
                log.exception("training job failed")
                job.error = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
            finally:
                job.done = True

        job.thread = threading.Thread(target=work, daemon=True, name="uprm-training")
        self.job = job
        job.thread.start()
        return job

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
