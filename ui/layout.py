"""The studio's layout, declared in one place; events are wired last (Gradio demo order)."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import gradio as gr

from ui import callbacks as cb
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

        # ---- events (wired last)
        player.change(partial(cb.on_video, services), inputs=[player, session], outputs=[status_md, session])
        analyse_btn.click(partial(_run_analysis, services), inputs=[player, layers, session],
                          outputs=[status_md, timeline, segments, player, meta, session],
                          concurrency_limit=1, show_progress="minimal")
        layers.change(partial(cb.change_layers, services), inputs=[layers, session], outputs=[player, status_md])
        segments.select(_select_segment, inputs=[session], outputs=[seek_to, details]).then(
            None, inputs=[seek_to], js="(t) => { window.uprmSeek(t); }")
        question.submit(partial(cb.chat, services), inputs=[question, chatbot, session],
                        outputs=[chatbot, question])
        ablation.change(partial(cb.compare_ablation, services), inputs=[ablation, session],
                        outputs=[teach_plot, teach_note, session]).then(
            cb.formula_at, inputs=[session, step_time, ablation], outputs=[formula])
        step_time.change(cb.formula_at, inputs=[session, step_time, ablation], outputs=[formula])
    return demo


def _run_analysis(services, path, layers, session, progress=gr.Progress()):
    yield from cb.run_analysis(services, path, layers, session, progress=progress)


def _select_segment(session: cb.StudioSession, evt: gr.SelectData):
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    return cb.segment_details(session, int(row))


def launch_kwargs(cfg: AppConfig) -> dict:
    return dict(
        server_name=cfg.host, server_port=cfg.port, share=cfg.share,
        auth=list(cfg.auth) or None, max_file_size=f"{cfg.max_upload_mb}mb",
        allowed_paths=[str(ASSETS), str(cfg.work_dir)], show_error=False,
        css=CSS, head=f"<script>{(STATIC / 'studio.js').read_text(encoding='utf-8')}</script>",
    )
