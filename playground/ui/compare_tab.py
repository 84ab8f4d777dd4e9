"""Compare tab: several runs' loss curves overlaid, their final figures, and the settings that differ."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from .. import comparison, runs
from ..errors import PlaygroundError
from .common import Shared, notice, run_label

PALETTE = ["#6366f1", "#f59e0b", "#10b981", "#ef4444", "#0ea5e9", "#a855f7", "#84cc16", "#64748b"]
EMPTY = "Pick two or more runs (up to 8): their curves, final figures and the settings that differ appear here."


def smoothed(values: list[float], weight: float = 0.8) -> list[float]:
    """An exponential moving average, as the Train tab draws the noisy train loss."""
    out, value = [], values[0] if values else 0.0
    for v in values:
        value = weight * value + (1 - weight) * v
        out.append(value)
    return out


def curves_figure(summaries: list[comparison.RunSummary], by_time: bool) -> go.Figure:
    """Validation loss (lines with markers) and smoothed train loss (dotted), one colour per run."""
    figure = go.Figure()
    for n, s in enumerate(summaries):
        color = PALETTE[n % len(PALETTE)]
        x = (lambda points: [p.elapsed / 60 for p in points]) if by_time else (lambda points: [p.step for p in points])
        if s.train:
            figure.add_trace(go.Scatter(x=x(s.train), y=smoothed([p.loss for p in s.train]), mode="lines",
                                        name=f"{s.name} train (smoothed)", legendgroup=s.run_id,
                                        line=dict(color=color, dash="dot", width=1.5)))
        if s.validation:
            figure.add_trace(go.Scatter(x=x(s.validation), y=[p.loss for p in s.validation], mode="lines+markers",
                                        name=f"{s.name} validation", legendgroup=s.run_id,
                                        line=dict(color=color, width=2.5)))
    figure.update_layout(height=420, template="plotly_white", margin=dict(l=50, r=20, t=20, b=110),
                         xaxis_title="minutes since the run started" if by_time else "optimizer step",
                         yaxis_title="cross-entropy loss",  # the legend below: run ids are long
                         legend=dict(font=dict(size=11), orientation="h", y=-0.22, yanchor="top", x=0))
    return figure


def figures_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The final figures with a row per figure and a column per run, like the settings table: a run adds
    one column, where a row per run needed some fifteen and overflowed the page."""
    names = [row["run"] for row in rows]
    figures = list(dict.fromkeys(key for row in rows for key in row if key != "run"))
    return pd.DataFrame([{"figure": figure, **{name: row.get(figure) for name, row in zip(names, rows)}}
                         for figure in figures], columns=["figure", *names]).fillna("")


def run_options(models_dir: Any) -> list[tuple[str, str]]:
    return [(run_label(r, r.config.label), r.run_id) for r in runs.list_runs(models_dir)]


def build(shared: Shared, tab: gr.Tab) -> None:
    manager = shared.manager
    gr.Markdown("Runs side by side, from what each recorded: the loss curves by step and by wall time, the final "
                "figures (validation loss; exact match, ROUGE-L and judge averages from each run's latest grading, "
                "when it was graded), and only the settings that differ.")
    with gr.Row(equal_height=True):
        picked = gr.Dropdown([], multiselect=True, label="Runs", scale=5, elem_id="compare-runs")
        go_button = gr.Button("Compare", variant="primary", scale=1, elem_id="compare-go")
    message = gr.HTML(notice(EMPTY), elem_id="compare-message")
    with gr.Column(visible=False) as results:
        with gr.Row():
            by_step = gr.Plot(show_label=False, elem_id="compare-by-step")
            by_time = gr.Plot(show_label=False, elem_id="compare-by-time")
        gr.Markdown("**Final figures** (graded figures are the tuned side's and the base's on each run's own split)")
        figures = gr.Dataframe(interactive=False, elem_id="compare-figures")
        gr.Markdown("**Settings that differ**")
        settings = gr.Dataframe(interactive=False, elem_id="compare-settings")

    def on_compare(run_ids):
        try:
            summaries = comparison.compare(manager.models_dir, list(run_ids or []))
        except PlaygroundError as exc:
            return notice(str(exc), "error"), gr.update(visible=False), None, None, None, None
        differing = comparison.differing_settings(summaries)
        text = (f"{len(summaries)} run{'s' * (len(summaries) > 1)}; {len(differing)} setting"
                f"{'s' * (len(differing) != 1)} differ.")
        caveat = comparison.loss_caveat(summaries)
        table = pd.DataFrame(differing) if differing else pd.DataFrame({"setting": ["(all the same)"]})
        return (notice(text, "ok") + (notice(caveat, "warn") if caveat else ""), gr.update(visible=True), curves_figure(summaries, False),
                curves_figure(summaries, True), figures_frame(comparison.final_figures(summaries)), table)

    go_button.click(on_compare, picked, [message, results, by_step, by_time, figures, settings])

    def refresh(current, saved):
        """The runs; the picks kept, or after a reload the ones this browser picked last."""
        options = run_options(manager.models_dir)
        ids = {value for _, value in options}
        wanted = current or (saved or {}).get(SAVED, [])
        return gr.update(choices=options, value=[r for r in wanted if r in ids])

    gr.on([shared.app.load, tab.select], refresh, [picked, shared.browser], picked)
    picked.change(lambda saved, ids: {**(saved or {}), SAVED: list(ids or [])}, [shared.browser, picked],
                  shared.browser, show_progress="hidden")


SAVED = "compare-runs"  # the picked runs, under this key of the browser's stored settings
