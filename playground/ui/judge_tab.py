"""Judge tab: one click grades a run's base and tuned answers with a Llama 3 judge served by Ollama."""

from __future__ import annotations

import threading
from typing import Any

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from .. import evaluation, judge
from ..errors import PlaygroundError
from ..generation import GenerationSettings
from .chat_tab import run_choices, run_update
from .common import Shared, notice

TABLE_COLUMNS = ["#", "difference", "instruction", "input", "reference", "base_response", "base_score",
                 "tuned_response", "tuned_score"]


def summary_html(summary: dict[str, Any]) -> str:
    cards = []
    for side in ("base", "tuned"):
        part = summary.get(side)
        if part:
            average = "–" if part["average"] is None else f"{part['average']:.1f}"
            extra = ", ".join(f"{part[k]} {k}" for k in ("unparsed", "errors", "skipped", "truncated") if part.get(k))
            cards.append(f'<div class="pg-card" id="judge-{side}"><b>{average}</b><span>{side.capitalize()} average · '
                         f'scored {part["scored"]} of {part["total"]}{" · " + extra if extra else ""}</span></div>')
    if summary.get("average_difference") is not None:
        cards.append(f'<div class="pg-card"><b>{summary["average_difference"]:+.1f}</b><span>tuned − base, '
                     f'per example</span></div>')
    for side, values in summary.get("metrics", {}).items():
        exact = "–" if values["exact_match"] is None else f"{values['exact_match']:.0%}"
        cards.append(f'<div class="pg-card"><b>{exact}</b><span>{side} exact match '
                     f'({values["exact_examples"]} single-answer)</span></div>'
                     f'<div class="pg-card"><b>{values["rouge_l"]:.2f}</b><span>{side} ROUGE-L</span></div>')
    pairwise = summary.get("pairwise")
    if pairwise and pairwise.get("tuned_win_rate") is not None:
        cards.append(f'<div class="pg-card"><b>{pairwise["tuned_win_rate"]:.0%}</b><span>tuned win rate (pairwise; '
                     f'orders disagree on {pairwise["disagreement"]:.0%})</span></div>')
    return f'<div class="pg-cards" id="judge-summary">{"".join(cards)}</div>'


def distribution(rows: list[dict[str, Any]]) -> go.Figure:
    figure = go.Figure()
    for side, color in (("base", "#9ca3af"), ("tuned", "#6366f1")):
        scores = [r[f"{side}_score"] for r in rows if r.get(f"{side}_score") is not None]
        if scores:
            figure.add_trace(go.Histogram(x=scores, name=side, marker_color=color, opacity=0.7,
                                          xbins=dict(start=0, end=101, size=10)))
    figure.update_layout(barmode="overlay", height=280, template="plotly_white", margin=dict(l=50, r=20, t=30, b=40),
                         xaxis_title="judge score (0-100)", yaxis_title="examples", legend=dict(orientation="h", y=1.15),
                         xaxis_range=[0, 101])
    return figure


def table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Per example, worst regressions (lowest tuned − base) first; ungraded rows last."""
    frame = pd.DataFrame(rows)
    for column in TABLE_COLUMNS:
        if column not in frame:
            frame[column] = None
    return frame[TABLE_COLUMNS].sort_values("difference", na_position="last", kind="stable")


def build(shared: Shared) -> dict[str, Any]:
    manager = shared.manager
    stops: dict[str, threading.Event] = {}  # per browser session
    gr.Markdown("Generates the base and tuned answers on a split, then asks a Llama 3 judge on an Ollama server to "
                "score each 0–100 against the reference (temperature 0, fixed seed and context). Replies that are "
                "not a score are retried once, then counted as **unparsed**, never as 0. Exact match and ROUGE-L "
                "need no server.")
    with gr.Row(equal_height=True):
        run = gr.Dropdown(run_choices(manager), label="Tuned run", scale=3, elem_id="judge-run")
        split = gr.Dropdown([("test", "test"), ("validation", "validation"), ("train (what it learned from)", "train")],
                            value="test", label="The run's own split", scale=1)
        count = gr.Slider(1, 200, value=20, step=1, label="Examples", scale=2, elem_id="judge-count")
    with gr.Row(equal_height=True):
        host = gr.Textbox(value=judge.JudgeSettings().host, label="Ollama server", scale=3, elem_id="judge-host")
        model = gr.Textbox(value="llama3", label="Judge model (any tag)", scale=2, elem_id="judge-model")
        check = gr.Button("Check server", scale=1, elem_id="judge-check")
        pull = gr.Button("Pull model", scale=1, visible=False, elem_id="judge-pull")
    server = gr.HTML(elem_id="judge-server")
    with gr.Accordion("Judge settings", open=False):
        with gr.Row():
            concurrency = gr.Slider(1, 16, value=4, step=1, label="Requests in flight")
            timeout = gr.Number(value=120, label="Timeout (s)")
            max_new = gr.Slider(8, 256, value=64, step=8, label="Max new tokens per answer")
        with gr.Row():
            structured = gr.Checkbox(label="Structured reply: JSON {reasoning, score}")
            pairwise = gr.Checkbox(label="Also compare base and tuned pairwise, both orders")
            metrics_only = gr.Checkbox(label="Reference metrics only (no server)", elem_id="judge-metrics-only")
        template = gr.Textbox(value=judge.DEFAULT_TEMPLATE, lines=6, label="Judge prompt ({instruction}, {input}, "
                              "{reference}, {response})")
    with gr.Row():
        grade = gr.Button("Grade with Llama 3", variant="primary", elem_id="judge-grade")
        stop = gr.Button("Stop", variant="stop", elem_id="judge-stop")
    message = gr.HTML(elem_id="judge-message")
    summary = gr.HTML()
    plot = gr.Plot(label="Score distributions")
    rows = gr.Dataframe(interactive=False, wrap=True, max_height=600, elem_id="judge-table",
                        column_widths=["4%", "7%", "17%", "10%", "12%", "17%", "6%", "17%", "6%"],
                        label="Per example, worst regressions first (sortable)")
    downloads = gr.File(label="Downloads: both answers, the book's file for the tuned model, the scores",
                        file_count="multiple", elem_id="judge-downloads")

    def settings_from(host_value, model_value, concurrency_value, timeout_value, structured_on, template_value):
        settings = judge.JudgeSettings(host=(host_value or "").strip(), model=(model_value or "").strip(),
                                       concurrency=int(concurrency_value), timeout=float(timeout_value or 120),
                                       structured=bool(structured_on), template=template_value)
        settings.check()
        return settings

    server_inputs = [host, model, concurrency, timeout, structured, template]

    def on_check(*values):
        try:
            status = judge.preflight(settings_from(*values))
        except PlaygroundError as exc:
            return notice(str(exc), "error"), gr.update(visible=False)
        kind = "ok" if status.ok else ("warn" if status.state == "model_missing" else "error")
        return notice(status.message, kind), gr.update(visible=status.state == "model_missing")

    check.click(on_check, server_inputs, [server, pull])

    def on_pull(host_value, model_value, concurrency_value, timeout_value, structured_on, template_value,
                progress=gr.Progress()):
        try:
            settings = settings_from(host_value, model_value, concurrency_value, timeout_value, structured_on,
                                     template_value)
            judge.pull(settings, on_progress=lambda fraction, text: progress(fraction, desc=text))
        except PlaygroundError as exc:
            return notice(str(exc), "error"), gr.update()
        return notice(f"Pulled {settings.model}; ready to grade.", "ok"), gr.update(visible=False)

    pull.click(on_pull, server_inputs, [server, pull])

    def on_grade(run_id, split_name, limit, max_tokens, pairwise_on, metrics_on, host_value, model_value,
                 concurrency_value, timeout_value, structured_on, template_value, request: gr.Request,
                 progress=gr.Progress()):
        stop_event = stops.setdefault(request.session_hash if request else "", threading.Event())
        stop_event.clear()
        skip = (gr.skip(),) * 4
        if not run_id:
            return notice("Pick a tuned run first (train one in the Train tab).", "error"), *skip
        try:
            settings = settings_from(host_value, model_value, concurrency_value, timeout_value, structured_on,
                                     template_value)
            if not metrics_on:
                status = judge.preflight(settings)
                if not status.ok:
                    return notice(status.message, "error"), *skip
            path = evaluation.generate_responses(
                manager, run_id, split_name, int(limit), GenerationSettings(max_new_tokens=int(max_tokens)),
                on_progress=lambda f, text: progress(f * 0.5, desc=text), stop=stop_event)
            result = evaluation.grade_responses(
                path, settings, evaluation.judge_dir(manager.models_dir, run_id) / "cache.jsonl", pairwise=pairwise_on,
                on_progress=lambda f, text: progress(0.5 + f * 0.5, desc=text), stop=stop_event,
                use_judge=not metrics_on)
        except PlaygroundError as exc:
            return notice(str(exc), "error"), *skip
        done = notice(" · ".join(evaluation.summary_lines(result.summary)[:2]) or "Reference metrics computed.", "ok")
        note = manager.run_data(run_id).note
        if note:
            done += notice(note, "warn")
        files = [str(path), str(path.with_name(evaluation.BOOK_FILE)), str(result.scores_path)]
        return done, summary_html(result.summary), distribution(result.rows), table(result.rows), files

    grade.click(on_grade, [run, split, count, max_new, pairwise, metrics_only, *server_inputs],
                [message, summary, plot, rows, downloads])

    def on_stop(request: gr.Request):
        stops.setdefault(request.session_hash if request else "", threading.Event()).set()
        return notice("Stopping: what was graded is kept; grade again to finish the rest.", "warn")

    stop.click(on_stop, None, message)

    def refresh_runs(current):
        return run_update(manager, current)

    return {"refreshers": [(refresh_runs, [run], [run])], "refresh_runs": (refresh_runs, [run], [run])}

