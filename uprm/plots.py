"""Plotly figures of an analysis: threat score, segments and the router's gate weights on one time axis.

Each trace carries the seconds it stands for in ``customdata`` so a click handler in the page can seek
the player there (segment bands give their start, points their own time).
"""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from uprm.analysis import EXPERT_NAMES, EXPERTS, Analysis

EXPERT_COLOURS = {"hpe": "#e45756", "ore": "#4c78a8", "vbe": "#54a24b", "coarse": "#bab0ac"}
SEGMENT_COLOUR = "rgba(228, 87, 86, 0.22)"
# With PTR the fine weights R sum to 1 and the coarse expert adds 1 - G on top (eq. 6), so the stack
# reaches 2 - G; without PTR all four weights are one softmax and the stack is exactly 1.
GATE_AXIS = "weight in z"


def _gate_traces(fig: go.Figure, analysis: Analysis, row: int, col: int, legend: bool, group: str) -> None:
    for k, name in enumerate(EXPERTS):
        label = f"R {EXPERT_NAMES[name]}" if name != "coarse" else "1-G coarse share"
        fig.add_trace(go.Scatter(
            x=analysis.times_s, y=[g[k] for g in analysis.gates], name=label, legendgroup=name,
            showlegend=legend, stackgroup=group, mode="lines", line=dict(width=0.5, color=EXPERT_COLOURS[name]),
            customdata=analysis.times_s, hovertemplate=f"{label}: %{{y:.2f}} at %{{x:.1f}}s<extra></extra>",
        ), row=row, col=col)


def _segment_bars(fig: go.Figure, analysis: Analysis, row: int, col: int) -> None:
    if not analysis.segments:
        return
    segs = analysis.segments
    fig.add_trace(go.Bar(
        x=[(s.start_s + s.end_s) / 2 for s in segs], y=[1.0] * len(segs),
        width=[max(s.end_s - s.start_s, 0.1) for s in segs], marker_color=SEGMENT_COLOUR,
        name="threat segments", customdata=[s.start_s for s in segs],
        text=[s.category for s in segs], textposition="inside", insidetextanchor="start",
        hovertemplate="%{text}<br>%{customdata:.1f}s (click to seek)<extra></extra>",
    ), row=row, col=col)


def timeline_figure(analysis: Analysis, title: str = "") -> go.Figure:
    """Threat score with segment bands (top) and stacked gate weights (bottom), shared time axis."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06, row_heights=[0.5, 0.5],
                        subplot_titles=("threat score and segments", "router gate weights"))
    _segment_bars(fig, analysis, 1, 1)
    fig.add_trace(go.Scatter(
        x=analysis.times_s, y=analysis.threat_prob, name="threat score", mode="lines+markers",
        marker=dict(size=4), line=dict(color="#d62728"), customdata=analysis.times_s,
        hovertemplate="score %{y:.2f} at %{x:.1f}s (click to seek)<extra></extra>",
    ), row=1, col=1)
    _gate_traces(fig, analysis, 2, 1, legend=True, group="gates")
    duration = analysis.video.duration_s
    fig.update_xaxes(range=[0, duration], title_text="time (s)", row=2, col=1)
    fig.update_yaxes(range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(rangemode="tozero", title_text=GATE_AXIS, row=2, col=1)
    fig.update_layout(height=420, margin=dict(l=40, r=10, t=40, b=40), barmode="overlay", bargap=0,
                      legend=dict(orientation="h", y=-0.18), title=title or None,
                      shapes=[_cursor_shape(0.0)], clickmode="event")
    # after update_layout(shapes=...), which replaces every shape added before it
    fig.add_hline(y=analysis.settings.threshold, line=dict(dash="dot", color="#888"), row=1, col=1)
    if analysis.settings.keep_threshold is not None:  # hysteresis: where segments may reach out to
        fig.add_hline(y=analysis.settings.keep_threshold, line=dict(dash="dot", color="#ccc"), row=1, col=1)
    return fig


def _cursor_shape(t_s: float) -> dict:
    # the cursor where the video starts; in the studio the page draws its own moving one over the plot
    return dict(type="line", xref="x", yref="paper", x0=t_s, x1=t_s, y0=0, y1=1,
                line=dict(color="#111", width=1.5), name="now")


def comparison_figure(full: Analysis, variant: Analysis, variant_label: str) -> go.Figure:
    """Gate weights and threat score of the full model beside a variant (e.g. without PTR)."""
    fig = make_subplots(rows=2, cols=2, shared_xaxes=True, vertical_spacing=0.08, horizontal_spacing=0.05,
                        subplot_titles=("full model: gate weights", f"{variant_label}: gate weights",
                                        "full model: threat score", f"{variant_label}: threat score"))
    for col, a in ((1, full), (2, variant)):
        _gate_traces(fig, a, 1, col, legend=(col == 1), group=f"gates{col}")
        _segment_bars(fig, a, 2, col)
        fig.add_trace(go.Scatter(x=a.times_s, y=a.threat_prob, mode="lines", showlegend=False,
                                 line=dict(color="#d62728"), name="threat score"), row=2, col=col)
        fig.update_yaxes(rangemode="tozero", row=1, col=col)
        fig.update_yaxes(range=[0, 1.02], row=2, col=col)
    fig.update_layout(height=460, margin=dict(l=40, r=10, t=40, b=30), barmode="overlay",
                      legend=dict(orientation="h", y=-0.12))
    return fig


def router_formula(analysis: Analysis, step: int) -> str:
    """Eq. 6 of the paper with the numbers of one time step filled in (Markdown + LaTeX)."""
    step = max(0, min(step, len(analysis.times_s) - 1))
    r_hpe, r_ore, r_vbe, coarse = analysis.gates[step]
    ptr = "no_ptr" not in analysis.settings.ablation
    t = analysis.times_s[step]
    if ptr:
        g = max(r_hpe, r_ore, r_vbe)
        return (f"**t = {t:.1f}s** (step {step})\n\n"
                f"$$R(h) = \\mathrm{{softmax}}(\\mathrm{{FFN}}(h)) = ({r_hpe:.3f},\\ {r_ore:.3f},\\ {r_vbe:.3f})$$\n\n"
                f"$$G = \\max_i R(h)_i = {g:.3f}$$\n\n"
                f"$$z = {r_hpe:.3f}\\,E_{{hpe}} + {r_ore:.3f}\\,E_{{ore}} + {r_vbe:.3f}\\,E_{{vbe}} + "
                f"(1 - {g:.3f})\\,E_g = \\ldots + {coarse:.3f}\\,E_g$$")
    return (f"**t = {t:.1f}s** (step {step}), basic MoE (w/o PTR): plain softmax over all four experts\n\n"
            f"$$z = {r_hpe:.3f}\\,E_{{hpe}} + {r_ore:.3f}\\,E_{{ore}} + {r_vbe:.3f}\\,E_{{vbe}} + {coarse:.3f}\\,E_g$$")


def alpha_figure(gates_by_alpha: dict[float, list[list[float]]]) -> go.Figure:
    """Mean gate weight of each expert over a video, one bar group per trained alpha (L_z weight)."""
    fig = go.Figure()
    for k, name in enumerate(EXPERTS):
        label = f"R {EXPERT_NAMES[name]}" if name != "coarse" else "1-G coarse share"
        alphas = sorted(gates_by_alpha)
        means = [sum(g[k] for g in gates_by_alpha[a]) / max(len(gates_by_alpha[a]), 1) for a in alphas]
        fig.add_trace(go.Bar(x=[f"alpha = {a:g}" for a in alphas], y=means, name=label,
                             marker_color=EXPERT_COLOURS[name],
                             hovertemplate=f"{label}: %{{y:.3f}}<extra></extra>"))
    fig.update_layout(barmode="group", height=320, margin=dict(l=40, r=10, t=30, b=30),
                      yaxis_title="mean weight over the video", legend=dict(orientation="h", y=-0.2))
    return fig
