"""Thin callbacks: each turns UI values into a call into `uprm` / `annotations` and back.

They are plain functions (callable without a browser) taking the process-wide ``Services`` first; the
layout binds that argument. Failures become a clear message in the page, never a traceback.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import gradio as gr

from ui.services import Services
from uprm.analysis import EXPERT_NAMES, Analysis, AnalysisSettings, analyze_iter

log = logging.getLogger("uprm.studio")
ALL_LAYERS = ("pose", "graph", "masks", "banner")
SEGMENT_COLUMNS = ["#", "start (s)", "end (s)", "score", "category", "cause"]
ABLATIONS = {"full model": (), "w/o HPE": ("no_hpe",), "w/o ORE": ("no_ore",), "w/o VBE": ("no_vbe",),
             "w/o UPE": ("no_upe",), "w/o PTR (basic MoE)": ("no_ptr",)}


@dataclass
class StudioSession:
    """Per-browser-session state (kept in gr.State, never in module globals)."""

    video_path: str | None = None
    analysis: Analysis | None = None
    evidence: object | None = None  # VideoEvidence
    inputs: object | None = None  # ExpertInputs of the analysed video, for chat
    overlay_path: str | None = None
    variants: dict = field(default_factory=dict)  # ablation label -> Analysis (teaching view)


class UserError(Exception):
    """A problem the user can fix; its message is shown in the page as it is."""


def friendly(exc: BaseException) -> str:
    from uprm.video import VideoError

    if isinstance(exc, (UserError, VideoError, ValueError, PermissionError)):
        return str(exc)
    log.exception("unexpected failure", exc_info=exc)
    return f"Something went wrong ({type(exc).__name__}). The details are in the server log; please try again."


def status(stage: str, fraction: float | None = None, ok: bool = True) -> str:
    pct = f" ({fraction * 100:.0f}%)" if fraction is not None else ""
    return f"{'' if ok else 'Problem: '}**{stage}**{pct}"


# ------------------------------------------------------------------------------------- video


def check_video(services: Services, path: str | None) -> str:
    """Validate an upload against the configured limits; returns a status line."""
    if not path:
        raise UserError("No video selected: upload a file or pick the sample.")
    from uprm.video import probe

    size_mb = Path(path).stat().st_size / 1e6
    if size_mb > services.cfg.max_upload_mb:
        raise UserError(f"The file is {size_mb:.0f} MB; this studio accepts up to {services.cfg.max_upload_mb} MB. "
                        "Cut or compress the video and upload it again.")
    info = probe(path)
    if info.duration_s > services.cfg.max_duration_s:
        raise UserError(f"The video lasts {info.duration_s:.0f} s; this studio accepts up to "
                        f"{services.cfg.max_duration_s:.0f} s. Analyse longer videos with "
                        "`python -m uprm analyze VIDEO`, or cut it.")
    return (f"{Path(path).name}: {info.width}x{info.height}, {info.fps:g} fps, {info.frame_count} frames, "
            f"{info.duration_s:.1f} s")


def on_video(services: Services, path: str | None, session: StudioSession) -> tuple[str, StudioSession]:
    """A new video was picked. The player also changes when we show the overlay render: keep that."""
    if path and session.overlay_path and Path(path).name == Path(session.overlay_path).name:
        return gr.skip(), session
    try:
        return status(check_video(services, path)), StudioSession(video_path=path)
    except Exception as exc:
        return status(friendly(exc), ok=False), StudioSession()


# ------------------------------------------------------------------------------------- analysis


def segment_rows(analysis: Analysis | None) -> list[list]:
    if analysis is None:
        return []
    return [[i + 1, s.start_s, s.end_s, round(s.score, 3), s.category, s.cause or "(writing...)"]
            for i, s in enumerate(analysis.segments)]


def page_meta(analysis: Analysis | None) -> str:
    """What the page's script needs: fps for frame stepping, segment starts for next/previous."""
    if analysis is None:
        return json.dumps({})
    return json.dumps({"fps": analysis.video.fps,
                       "segments": [[s.start_s, s.end_s] for s in analysis.segments]})


def render_overlay(services: Services, session: StudioSession, layers: list[str]) -> str:
    from uprm.overlay import render_overlay as render

    a = session.analysis
    key = hashlib.sha256(json.dumps([a.video.content_hash, sorted(layers), a.model_id, list(a.settings.ablation),
                                     [[s.start_s, s.end_s, s.category] for s in a.segments]]).encode()).hexdigest()[:16]
    out = services.renders / f"overlay_{key}.mp4"
    if not out.exists():
        # every native frame (evidence held from the nearest sample) so playback is smooth and frame
        # stepping in the player moves one real frame
        render(session.video_path, session.evidence, out, layers=set(layers),
               segments=[(s.start_s, s.end_s, s.category) for s in a.segments], rate="native")
    return str(out)


def alert_threshold(value: float | None) -> float | None:
    """The Analyse tab's threshold slider: 0 (or nothing, from the API) = the model's tuned rule (None)."""
    if value is None or float(value) == 0.0:
        return None
    if not 0.0 < float(value) < 1.0:
        raise UserError(f"The alert threshold must be between 0 and 1 (a probability), got {value:g}: "
                        "set 0 to use the model's tuned rule.")
    return float(value)


def run_analysis(services: Services, path: str | None, layers: list[str], threshold: float | None,
                 session: StudioSession, progress: gr.Progress = gr.Progress()) -> Iterator[tuple]:
    """Generator for the Analyse button: yields (status, timeline, rows, player, meta, session)."""
    from uprm.plots import timeline_figure

    # progress lines and failures leave timeline, table, player and page data as they are: sending None
    # would clear the player, whose change event would then reset the session mid-analysis
    keep = (gr.skip(), gr.skip(), gr.skip(), gr.skip())
    try:
        check_video(services, path)
        session = StudioSession(video_path=path)
        model = services.model()
        settings = AnalysisSettings(threshold=alert_threshold(threshold),
                                    sam2_checkpoint=str(services.cfg.sam2_checkpoint)
                                    if services.cfg.sam2_checkpoint else None)
        last_yield = 0.0
        with services.model_lock:
            updates = analyze_iter(path, model, settings)  # records model.model_id (the served version)
            for up in updates:
                if progress is not None:
                    progress(up.fraction, desc=up.stage)
                if up.analysis is None:
                    now = time.monotonic()
                    if now - last_yield > 0.5:  # do not flood the socket with progress lines
                        last_yield = now
                        yield (status(up.stage, up.fraction), *keep, session)
                    continue
                first_result = session.analysis is None
                session.analysis, session.evidence, session.inputs = up.analysis, up.evidence, up.inputs
                fig = timeline_figure(up.analysis)
                # the player is only ever set to the overlay render (on_video ignores that change)
                yield (status(up.stage, up.fraction), fig, segment_rows(up.analysis), gr.skip(),
                       page_meta(up.analysis), session)
                if first_result:
                    # overlays as soon as the segments exist; causes keep streaming into the table after
                    yield (status("rendering overlays", up.fraction), fig, segment_rows(up.analysis),
                           gr.skip(), page_meta(up.analysis), session)
                    session.overlay_path = render_overlay(services, session, layers)
                    yield (status("overlays ready", up.fraction), fig, segment_rows(up.analysis),
                           session.overlay_path, page_meta(up.analysis), session)
        a = session.analysis
        from ui.review import record_analysis  # here: ui.review imports this module

        try:
            vid = record_analysis(services, session)
            stored = f" · in the review queue as video #{vid}"
        except Exception as exc:  # the analysis stands even if the store is unavailable
            stored = f" · not stored for review: {friendly(exc)}"
        summary = (f"{len(a.segments)} threat segment(s)" if a.segments else "no threat found") + \
            f" in {a.video.duration_s:.1f} s · model {a.model_id} · {a.settings.rule().text()}{stored}"
        warn = ("  \nWarning: " + "; ".join(a.warnings)) if a.warnings else ""
        yield (status(f"done: {summary}", 1.0) + warn, timeline_figure(a), segment_rows(a),
               gr.skip(), page_meta(a), session)
    except Exception as exc:
        yield (status(friendly(exc), ok=False), *keep, session)


def change_layers(services: Services, layers: list[str], session: StudioSession) -> tuple[str | None, str]:
    if session.analysis is None or session.evidence is None:
        return session.video_path, status("Analyse a video first to draw overlays.", ok=False)
    try:
        session.overlay_path = render_overlay(services, session, layers)
        shown = ", ".join(layers) or "none"
        return session.overlay_path, status(f"overlay layers: {shown}")
    except Exception as exc:
        return session.video_path, status(friendly(exc), ok=False)


def segment_details(session: StudioSession, index: int) -> tuple[float, str]:
    """(seek time, Markdown) for the segment at ``index`` (0-based)."""
    a = session.analysis
    if a is None or not (0 <= index < len(a.segments)):
        return 0.0, ""
    s = a.segments[index]
    ev = s.evidence
    gates = " · ".join(f"{EXPERT_NAMES[k]} **{v:.2f}**" for k, v in ev.mean_gates.items())
    rel = "\n".join(f"- {r}" for r in ev.relations[:8]) or "- no relation edges"
    people = ", ".join(f"person#{t}" for t in ev.track_ids) or "no tracked person"
    md = (f"### Segment {index + 1}: {s.start_s:.1f}s - {s.end_s:.1f}s · {s.category} · score {s.score:.2f}\n"
          f"**Who:** {people}  \n**Pose:** {', '.join(f'{k} x{v}' for k, v in ev.pose_states.items()) or 'no lying or running'}"
          f"  \n**Expert weights:** {gates} (dominant: **{EXPERT_NAMES[ev.dominant_expert]}**)  \n"
          f"**Fight-clip probability:** {ev.fight_prob_mean:.2f}  \n**Relations:**\n{rel}\n\n"
          f"**Cause:** {s.cause or '(not written yet)'}")
    return s.start_s, md


# ------------------------------------------------------------------------------------- chat


def chat(services: Services, message: str, history: list, session: StudioSession) -> Iterator[tuple[list, str]]:
    """Stream an answer grounded in the session's analysis into the chatbot."""
    from uprm.chat import ChatEngine

    history = list(history or []) + [{"role": "user", "content": message}]
    if session.analysis is None:
        yield history + [{"role": "assistant", "content": "Analyse a video first; then ask me about its threats."}], ""
        return
    engine = ChatEngine(services.model(), session.analysis, session.inputs)
    answer = ""
    try:
        with services.model_lock:
            for piece in engine.ask(message):
                answer += piece
                yield history + [{"role": "assistant", "content": answer}], ""
    except Exception as exc:
        yield history + [{"role": "assistant", "content": answer + "\n\n" + friendly(exc)}], ""


# ------------------------------------------------------------------------------------- teaching


def compare_ablation(services: Services, label: str, session: StudioSession):
    """Re-run the fusion with an ablation switched on; (comparison figure, note, session)."""
    from uprm.analysis import analyze
    from uprm.plots import comparison_figure

    if session.analysis is None or session.evidence is None:
        return None, status("Analyse a video first, then compare ablations.", ok=False), session
    try:
        ablation = ABLATIONS[label]
        if label not in session.variants:
            settings = replace(session.analysis.settings, ablation=ablation, explain=False)
            with services.model_lock:
                session.variants[label] = analyze(session.video_path, services.model(), settings,
                                                  evidence=session.evidence, model_id=session.analysis.model_id)
        variant = session.variants[label]
        base = session.analysis
        note = (f"{label}: {len(variant.segments)} segment(s) vs {len(base.segments)} for the full model. "
                "Switches act at inference on the same trained weights.")
        own = sorted(set(ablation) & set(services.model().ablation.active))
        if own:  # e.g. the default is trained without VBE: this row is the loaded model as it is
            note += f" The loaded model was trained with {', '.join(own)}, so here it is unchanged."
        return comparison_figure(base, variant, label), status(note), session
    except Exception as exc:
        return None, status(friendly(exc), ok=False), session


def teach_time_slider(session: StudioSession):
    """The formula's time slider spans the analysed video."""
    if session.analysis is None:
        return gr.skip()
    return gr.Slider(maximum=max(session.analysis.times_s[-1], 0.5) if session.analysis.times_s else 1,
                     step=1.0 / session.analysis.settings.sample_fps)


def formula_at(session: StudioSession, time_s: float, label: str) -> str:
    from uprm.plots import router_formula

    a = session.variants.get(label) if label != "full model" else session.analysis
    a = a or session.analysis
    if a is None:
        return "Analyse a video to see the router's numbers."
    step = min(range(len(a.times_s)), key=lambda i: abs(a.times_s[i] - time_s)) if a.times_s else 0
    return router_formula(a, step)


def alpha_view(services: Services, session: StudioSession):
    """Gate weights of the variants trained at several alpha values on the session's video."""
    from uprm.analysis import run_model
    from uprm.plots import alpha_figure

    if session.evidence is None:
        return None, status("Analyse a video first to compare the alpha variants on it.", ok=False)
    try:
        variants = services.alpha_variants()
        if not variants:
            return None, status("No alpha variants are installed (assets/alpha_variants/): rebuild them with "
                                 "`python assets/build_default_model.py`.", ok=False)
        gates = {}
        with services.model_lock:
            for alpha, model in variants.items():
                gates[alpha] = run_model(model, session.evidence).gates.tolist()
        note = (f"Router variants trained with L = threat BCE + alpha * L_z at alpha = "
                f"{', '.join(f'{a:g}' for a in sorted(gates))}: the same composed training data, recipe and random "
                "start, only alpha differs; run on this video. alpha only acts during training, so each bar "
                "group is a separately trained model.")
        return alpha_figure(gates), status(note)
    except Exception as exc:
        return None, status(friendly(exc), ok=False)
