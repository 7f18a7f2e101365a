"""The studio's layout, declared in one place; events are wired last (Gradio demo order)."""
from __future__ import annotations

import gradio as gr

from ui.config import ASSETS, SAMPLE_VIDEO, AppConfig


def build_demo(cfg: AppConfig) -> gr.Blocks:
    with gr.Blocks(title="UPRM Studio") as demo:
        gr.Markdown("# UPRM Studio\nFind, locate and explain threats in surveillance video.")
        with gr.Row():
            with gr.Column(scale=3):
                player = gr.Video(value=str(SAMPLE_VIDEO), label="Video", elem_id="player",
                                  interactive=False, autoplay=False)
            with gr.Column(scale=2):
                gr.Examples(examples=[[str(SAMPLE_VIDEO)]], inputs=[player], label="Sample")
    return demo


def launch_kwargs(cfg: AppConfig) -> dict:
    return dict(
        server_name=cfg.host, server_port=cfg.port, share=cfg.share,
        auth=list(cfg.auth) or None, max_file_size=f"{cfg.max_upload_mb}mb",
        allowed_paths=[str(ASSETS), str(cfg.work_dir)], show_error=False,
    )
