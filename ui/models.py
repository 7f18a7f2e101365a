"""Models-tab callbacks: registered versions with their scores, switching, and the correction loop."""
from __future__ import annotations

import gradio as gr

from ui.callbacks import friendly, status
from ui.services import Services

VERSION_COLUMNS = ["version", "current", "parent", "created", "train videos", "held-out videos",
                   "before F2", "after F2", "before mAP@0.5", "after mAP@0.5", "before FNR", "after FNR",
                   "before kinds named", "after kinds named", "verdict"]


def _named(s) -> str:
    """Held-out segments whose category the kind head names, of those it has a kind for."""
    return "n/a" if s is None or s.kinds_of is None else f"{s.kinds_right}/{s.kinds_of}"


def version_rows(services: Services) -> list[list]:
    from uprm.training.registry import Registry, pct_text

    registry = Registry(services.models_root)
    current = registry.current()
    rows = []
    for v in reversed(registry.versions()):
        b, a = v.before, v.after
        rows.append([v.version_id, "yes" if current and current.version_id == v.version_id else "", v.parent or "",
                     v.created_at[:19], len(v.data.train_videos) if v.data else 0,
                     len(v.data.heldout_videos) if v.data else 0,
                     pct_text(b.f2 if b else None), pct_text(a.f2 if a else None),
                     pct_text(b.map_at.get("0.5") if b else None), pct_text(a.map_at.get("0.5") if a else None),
                     pct_text(b.fnr if b else None), pct_text(a.fnr if a else None), _named(b), _named(a), v.promotion])
    return rows


def overview(services: Services) -> tuple[list[list], str]:
    try:
        rows = version_rows(services)
        serving = services._model.model_id if services._model is not None else f"{services.cfg.model} (loads on first use)"
        return rows, f"**Serving:** {serving} · {len(rows)} registered version(s)"
    except Exception as exc:
        return [], status(friendly(exc), ok=False)


def switch(services: Services, version_id: str, request: gr.Request | None = None) -> tuple[list[list], str]:
    try:
        if services.cfg.auth_enabled and not getattr(request, "username", None):
            raise PermissionError("Log in to switch models.")
        vid = (version_id or "").strip() or None
        model_id = services.use_version(vid)  # swaps under the model lock: never under a running analysis
        return version_rows(services), status(f"now serving {model_id}: new analyses use it and record it")
    except Exception as exc:
        return gr.skip(), status(friendly(exc), ok=False)


def start(services: Services, request: gr.Request | None = None) -> str:
    try:
        if services.cfg.auth_enabled and not getattr(request, "username", None):
            raise PermissionError("Log in to start training.")
        services.start_training()
        return status("training started from the reviewed corrections", 0.0)
    except Exception as exc:
        return status(friendly(exc), ok=False)


def cancel(services: Services) -> str:
    job = services.job
    if job is None or job.done:
        return status("no training job is running")
    job.cancel.set()
    return status("cancelling after the current step")


def poll(services: Services) -> tuple[str, gr.Timer]:
    """The job's progress line, read by a timer (which stops once the job has ended)."""
    job = services.job
    if job is None:
        return "No training job yet. Review some videos, then press *Retrain from corrections*.", gr.Timer(active=False)
    if job.error:
        return status(f"training stopped: {job.error}", ok=False), gr.Timer(active=False)
    if job.done:
        v = job.version
        served = ("now serving it" if v.promoted else
                  "still serving the previous model (serve the new one below to use it anyway)")
        why = f": {v.promotion}" if v.promotion else ""
        return status(f"training done: registered version {v.version_id}, {served}{why}", 1.0), gr.Timer(active=False)
    return status(f"training: {job.stage}", job.fraction), gr.Timer(active=True)
