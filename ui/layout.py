"""The studio's layout, declared in one place; events are wired last (Gradio demo order)."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from ui import callbacks as cb
from ui import models as mv
from ui import review as rv
from ui.binding import bind
from ui.config import ASSETS, SAMPLE_VIDEO, AppConfig
from ui.services import Services

STATIC = Path(__file__).resolve().parent / "static"
CSS = """
#timeline {min-height: 430px}
.uprm-help kbd {border:1px solid #bbb;border-radius:3px;padding:0 4px;font-size:0.85em}
"""
HELP = ("Keys: <kbd>space</kbd>/<kbd>k</kbd> play/pause · <kbd>,</kbd> <kbd>.</kbd> step a frame · "
        "<kbd>&lt;</kbd> <kbd>&gt;</kbd> ten frames · <kbd>n</kbd>/<kbd>p</kbd> next/previous segment · "
        "click the timeline to seek")


def examples() -> list[list[str]]:
    items = [[str(SAMPLE_VIDEO)]]
    demo_clip = ASSETS / "demo_composed.mp4"
    if demo_clip.exists():
        items.append([str(demo_clip)])
    return items


def build_demo(cfg: AppConfig, services: Services | None = None) -> gr.Blocks:
    services = services or Services(cfg)
    with gr.Blocks(title="UPRM Studio") as demo:
        session = gr.State(cb.StudioSession(video_path=str(SAMPLE_VIDEO)))
        gr.Markdown("# UPRM Studio\nIdentify, locate and explain threats in surveillance video with four "
                    "physical-world experts (pose, object relations, background, coarse video) and a gated router.")
        with gr.Tabs():
            with gr.Tab("Analyse", id="analyse"):
                with gr.Row():
                    with gr.Column(scale=3):
                        player = gr.Video(value=str(SAMPLE_VIDEO), label="Video (upload your own or pick an example)",
                                          elem_id="player", sources=["upload"], autoplay=False)
                        gr.HTML(f"<div class='uprm-help'>{HELP} · <span id='current_time'></span></div>")
                    with gr.Column(scale=2):
                        gr.Examples(examples=examples(), inputs=[player], label="Examples")
                        analyse_btn = gr.Button("Analyse", variant="primary", elem_id="analyse_btn")
                        status_md = gr.Markdown(cb.status("ready: pick a video and press Analyse"),
                                                elem_id="status")
                        layers = gr.CheckboxGroup(choices=list(cb.ALL_LAYERS), value=list(cb.ALL_LAYERS),
                                                  label="Overlay layers", elem_id="layers")
                        threshold = gr.Slider(0.0, 0.95, value=0.0, step=0.05, elem_id="threshold",
                                              label="Alert threshold (0: the model's tuned rule)",
                                              info="Per-step threat probability that opens a segment (which "
                                                   "then widens while the score stays above the model's lower "
                                                   "keep level, the lighter dotted line). Lower finds more "
                                                   "threats and raises more false alarms: the model card's "
                                                   "operating points show the trade.")
                        meta = gr.Textbox(visible="hidden", elem_id="uprm_meta")
                        seek_to = gr.Number(visible="hidden", elem_id="seek_to")
                timeline = gr.Plot(label="Timeline: threat score, segments and gate weights",
                                   elem_id="timeline", elem_classes=["uprm-seekable"])
                with gr.Row():
                    with gr.Column(scale=3):
                        segments = gr.Dataframe(headers=cb.SEGMENT_COLUMNS, label="Threat segments (select to seek)",
                                                interactive=False, elem_id="segments", wrap=True)
                    with gr.Column(scale=2):
                        details = gr.Markdown(elem_id="segment_details")
                with gr.Accordion("Chat about the causes", open=True):
                    chatbot = gr.Chatbot(label="UPRM", elem_id="chatbot", height=320)
                    question = gr.Textbox(placeholder="e.g. why is 22-24 s a threat? who is involved? "
                                          "what did the pose expert see?", label="Question", elem_id="question")
            with gr.Tab("Teach: expert weighting", id="teach"):
                gr.Markdown(
                    "Switch an expert off (the ablations of the paper's table) and compare the router's gate "
                    "weights and the segments with the full model, on the video analysed in the first tab. "
                    "Without PTR the router is a basic MoE: a plain softmax over all four experts and no "
                    "trade-off loss.")
                ablation = gr.Radio(choices=[k for k in cb.ABLATIONS if k != "full model"],
                                    value="w/o PTR (basic MoE)", label="Variant", elem_id="ablation")
                teach_note = gr.Markdown(elem_id="teach_note")
                teach_plot = gr.Plot(elem_id="teach_plot")
                step_time = gr.Slider(0, 1, value=0, step=0.5, label="Time (s) for the router formula",
                                      elem_id="step_time")
                formula = gr.Markdown(latex_delimiters=[{"left": "$$", "right": "$$", "display": True}],
                                      elem_id="formula")
                gr.Markdown("### The trade-off loss weight alpha\nalpha weighs L_z in the training loss "
                            "(L = L_ce + alpha L_z), so it changes nothing at inference. This compares router "
                            "variants actually trained at several alpha values, on the analysed video.")
                alpha_btn = gr.Button("Compare trained alpha variants", elem_id="alpha_btn")
                alpha_note = gr.Markdown(elem_id="alpha_note")
                alpha_plot = gr.Plot(elem_id="alpha_plot")

            with gr.Tab("Review", id="review"):
                review_state = gr.State(rv.ReviewState())
                gr.Markdown("Walk through a video's segments: accept (<kbd>a</kbd>), reject (<kbd>r</kbd>), "
                            "set bounds at the player's time (<kbd>[</kbd> <kbd>]</kbd>), next/previous "
                            "segment (<kbd>j</kbd>/<kbd>u</kbd>), step frames (<kbd>,</kbd> <kbd>.</kbd>). "
                            "Times snap to frames. Every analysis you run lands in the queue.",
                            elem_classes=["uprm-help"])
                with gr.Row():
                    annotator = gr.Textbox(label="Annotator" + (" (your login)" if cfg.auth_enabled else ""),
                                           placeholder="your name", elem_id="rv_annotator",
                                           interactive=not cfg.auth_enabled)
                    refresh_btn = gr.Button("Refresh queue", elem_id="rv_refresh")
                rv_status = gr.Markdown(elem_id="rv_status")
                queue = gr.Dataframe(headers=rv.QUEUE_COLUMNS, label="Queue (select a video)", interactive=False,
                                     elem_id="rv_queue")
                progress_md = gr.Markdown(elem_id="rv_progress")
                with gr.Row():
                    with gr.Column(scale=3):
                        review_player = gr.Video(label="Video", elem_id="review_player", interactive=False)
                    with gr.Column(scale=2):
                        with gr.Row():
                            rv_start = gr.Number(label="start (s)", elem_id="rv_start", precision=3)
                            rv_end = gr.Number(label="end (s)", elem_id="rv_end", precision=3)
                        rv_frames = gr.Markdown(elem_id="rv_frames")
                        with gr.Row():
                            set_start_btn = gr.Button("[ start = now", elem_id="rv_set_start", size="sm")
                            set_end_btn = gr.Button("] end = now", elem_id="rv_set_end", size="sm")
                            bounds_btn = gr.Button("Save bounds", elem_id="rv_bounds", size="sm")
                        rv_category = gr.Dropdown(label="category", choices=_categories(), allow_custom_value=False,
                                                  elem_id="rv_category")
                        rv_cause = gr.Textbox(label="cause", lines=2, elem_id="rv_cause")
                        with gr.Row():
                            accept_btn = gr.Button("Accept (a)", variant="primary", elem_id="rv_accept", size="sm")
                            reject_btn = gr.Button("Reject (r)", variant="stop", elem_id="rv_reject", size="sm")
                            cause_btn = gr.Button("Save cause", elem_id="rv_cause_btn", size="sm")
                            category_btn = gr.Button("Save category", elem_id="rv_category_btn", size="sm")
                        with gr.Row():
                            prev_btn = gr.Button("Previous (u)", elem_id="rv_prev", size="sm")
                            next_btn = gr.Button("Next (j)", elem_id="rv_next", size="sm")
                            add_btn = gr.Button("Add missed segment", elem_id="rv_add", size="sm")
                            reviewed_btn = gr.Button("Mark video reviewed", elem_id="rv_reviewed", size="sm")
                rv_segments = gr.Dataframe(headers=rv.SEGMENT_COLUMNS, label="Segments (select one)",
                                           interactive=False, elem_id="rv_segments", wrap=True)
                rv_seek = gr.Number(visible="hidden", elem_id="rv_seek")
                rv_now = gr.Number(visible="hidden", elem_id="rv_now")
                with gr.Accordion("History, agreement and export", open=False):
                    history_btn = gr.Button("Show history", size="sm")
                    history = gr.Dataframe(headers=["#", "time", "annotator", "kind", "segment", "new", "previous"],
                                           interactive=False, elem_id="rv_history", wrap=True)
                    with gr.Row():
                        as_of = gr.Number(label="show segments as of correction #", precision=0, elem_id="rv_as_of")
                        as_of_btn = gr.Button("Show earlier state", size="sm")
                    with gr.Row():
                        ann_a = gr.Textbox(label="annotator A", elem_id="rv_ann_a")
                        ann_b = gr.Textbox(label="annotator B", elem_id="rv_ann_b")
                        agree_btn = gr.Button("Compare (tIoU)", size="sm")
                    agree_md = gr.Markdown(elem_id="rv_agreement")
                    with gr.Row():
                        export_fmt = gr.Dropdown(choices=list(rv.EXPORT_FORMATS), value="llava", label="format",
                                                 elem_id="rv_export_fmt")
                        export_reviewed = gr.Checkbox(value=True, label="only reviewed videos")
                        export_btn = gr.Button("Export", elem_id="rv_export")
                    export_file = gr.File(label="exported files", file_count="multiple", elem_id="rv_export_file")
            with gr.Tab("Models", id="models"):
                gr.Markdown("Turn reviewed corrections into a better model: the loop exports them as "
                            "instruction data, splits videos into train and held-out, fine-tunes the serving "
                            "model in the background (corrected categories that are one of its threat kinds "
                            "teach its kind head), scores it before and after on the held-out videos, and "
                            "registers the result, serving it if it scores at least as well as the model it "
                            "came from. Every analysis records the version that made it.")
                models_md = gr.Markdown(elem_id="models_status")
                versions = gr.Dataframe(headers=mv.VERSION_COLUMNS, interactive=False, elem_id="versions",
                                        label="Registered versions (newest first)")
                with gr.Row():
                    train_btn = gr.Button("Retrain from corrections", variant="primary", elem_id="train_btn")
                    cancel_btn = gr.Button("Cancel training", elem_id="cancel_btn")
                job_md = gr.Markdown(elem_id="job_status")
                with gr.Row():
                    version_box = gr.Textbox(label="version to serve (empty: the --model default)",
                                             elem_id="version_box")
                    switch_btn = gr.Button("Serve this version", elem_id="switch_btn")
                job_timer = gr.Timer(2.0, active=False)
            with gr.Tab("Model card", id="card"):
                gr.Markdown(_model_card())

        # ---- events (wired last)
        player.change(bind(cb.on_video, services), inputs=[player, session], outputs=[status_md, session])
        analyse_btn.click(bind(cb.run_analysis, services), inputs=[player, layers, threshold, session],
                          outputs=[status_md, timeline, segments, player, meta, session],
                          concurrency_limit=1, show_progress="minimal", api_name="analyze").then(
            cb.teach_time_slider, inputs=[session], outputs=[step_time]).then(
            cb.formula_at, inputs=[session, step_time, ablation], outputs=[formula])
        layers.change(bind(cb.change_layers, services), inputs=[layers, session], outputs=[player, status_md])
        segments.select(_select_segment, inputs=[session], outputs=[seek_to, details]).then(
            None, inputs=[seek_to], js="(t) => { window.uprmSeek(t); }")
        question.submit(bind(cb.chat, services), inputs=[question, chatbot, session],
                        outputs=[chatbot, question], api_name="chat")
        edit = [rv_start, rv_end, rv_category, rv_cause, rv_frames, rv_seek, review_state]
        seek_review = dict(fn=None, inputs=[rv_seek], js="(t) => { window.uprmSeek(t); }")
        refresh_btn.click(bind(rv.queue_rows, services), outputs=[queue, progress_md])
        queue.select(bind(_open_queue_row, services), inputs=[review_state], outputs=[
            review_player, rv_segments, rv_status, review_state])
        rv_segments.select(bind(_select_review_row, services), inputs=[review_state], outputs=edit).then(**seek_review)
        for btn, action in ((accept_btn, "accept"), (reject_btn, "reject"), (bounds_btn, "bounds"),
                            (cause_btn, "cause"), (category_btn, "category"), (add_btn, "add"),
                            (reviewed_btn, "reviewed")):
            btn.click(bind(rv.act, services, action), inputs=[review_state, annotator, rv_start, rv_end,
                      rv_category, rv_cause], outputs=[rv_segments, rv_status]).then(
                bind(rv.queue_rows, services), outputs=[queue, progress_md])
        for btn, target in ((set_start_btn, rv_start), (set_end_btn, rv_end)):
            btn.click(None, js="() => window.uprmCurrentTime()", outputs=[target])
        for box in (rv_start, rv_end):
            box.change(lambda a, b, st: rv.frames_label(a, b, st.fps), inputs=[rv_start, rv_end, review_state],
                       outputs=[rv_frames])
        prev_btn.click(bind(rv.step_segment, services, direction=-1), inputs=[review_state], outputs=edit).then(**seek_review)
        next_btn.click(bind(rv.step_segment, services, direction=1), inputs=[review_state], outputs=edit).then(**seek_review)
        history_btn.click(bind(rv.history_rows, services), inputs=[review_state], outputs=[history])
        as_of_btn.click(bind(rv.segment_rows, services), inputs=[review_state, as_of], outputs=[rv_segments])
        agree_btn.click(bind(rv.agreement, services), inputs=[review_state, ann_a, ann_b], outputs=[agree_md])
        export_btn.click(bind(rv.export, services), inputs=[export_fmt, export_reviewed],
                         outputs=[export_file, rv_status])
        demo.load(bind(rv.queue_rows, services), outputs=[queue, progress_md])
        demo.load(bind(mv.overview, services), outputs=[versions, models_md])
        train_btn.click(bind(mv.start, services), outputs=[job_md]).then(
            lambda: gr.Timer(active=True), outputs=[job_timer])
        cancel_btn.click(bind(mv.cancel, services), outputs=[job_md])
        job_timer.tick(bind(mv.poll, services), outputs=[job_md, job_timer]).then(
            bind(mv.overview, services), outputs=[versions, models_md])
        switch_btn.click(bind(mv.switch, services), inputs=[version_box], outputs=[versions, models_md])
        ablation.change(bind(cb.compare_ablation, services), inputs=[ablation, session],
                        outputs=[teach_plot, teach_note, session]).then(
            cb.formula_at, inputs=[session, step_time, ablation], outputs=[formula])
        alpha_btn.click(bind(cb.alpha_view, services), inputs=[session], outputs=[alpha_plot, alpha_note])
        step_time.change(cb.formula_at, inputs=[session, step_time, ablation], outputs=[formula])
    return demo


def _select_segment(session: cb.StudioSession, evt: gr.SelectData):
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    return cb.segment_details(session, int(row))


def _open_queue_row(services: Services, state: rv.ReviewState, evt: gr.SelectData, request: gr.Request):
    row = evt.row_value if getattr(evt, "row_value", None) else None
    if not row:
        return gr.skip(), gr.skip(), cb.status("select a row of the queue", ok=False), state
    return rv.open_video(services, row[0], state, request)


def _select_review_row(services: Services, state: rv.ReviewState, evt: gr.SelectData):
    row = evt.row_value if getattr(evt, "row_value", None) else None
    if not row:
        return (gr.skip(),) * 6 + (state,)
    return rv.select_segment(services, state, row)


def _categories() -> list[str]:
    from ui.services import studio_categories

    return list(studio_categories())


def _model_card() -> str:
    card = ASSETS / "MODEL_CARD.md"
    return card.read_text(encoding="utf-8") if card.exists() else "No model card found in assets/."


def launch_kwargs(cfg: AppConfig) -> dict:
    return dict(
        server_name=cfg.host, server_port=cfg.port, share=cfg.share,
        auth=list(cfg.auth) or None, max_file_size=f"{cfg.max_upload_mb}mb",
        allowed_paths=[str(ASSETS), str(cfg.work_dir)], show_error=False,
        css=CSS, head=f"<script>{(STATIC / 'studio.js').read_text(encoding='utf-8')}</script>",
    )
