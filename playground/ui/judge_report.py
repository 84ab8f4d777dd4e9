"""The Judge tab's report card: cards, plots and the per-example table, drawn from a grading's summary."""

from __future__ import annotations

import html
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from .common import notice

TABLE_COLUMNS = ["record", "group", "difference", "instruction", "input", "reference", "base_response", "base_score",
                 "tuned_response", "tuned_score", "pairwise", "base_reply", "tuned_reply"]


def _card(value: str, caption: str, element: str = "") -> str:
    anchor = f' id="{element}"' if element else ""
    return f'<div class="pg-card"{anchor}><b>{html.escape(value)}</b><span>{html.escape(caption)}</span></div>'


def _interval(values: list[float] | None, percent: bool = False) -> str:
    if not values:
        return ""
    low, high = values
    return f" · 95% interval {low:.0%}–{high:.0%}" if percent else f" · 95% interval {low:.1f}–{high:.1f}"


def summary_html(summary: dict[str, Any], facts: dict[str, Any]) -> str:
    cards = []
    for side in ("base", "tuned"):
        part = summary.get(side)
        if part:
            average = "–" if part["average"] is None else f"{part['average']:.1f}"
            extra = ", ".join(f"{part[k]} {k}" for k in ("unparsed", "errors", "skipped", "truncated") if part.get(k))
            cards.append(_card(average, f"{side.capitalize()} average · scored {part['scored']} of {part['total']}"
                               f"{_interval(part.get('interval'))}{' · ' + extra if extra else ''}", f"judge-{side}"))
    if summary.get("average_difference") is not None:
        cards.append(_card(f"{summary['average_difference']:+.1f}", "tuned − base, per example"
                           + _interval(summary.get("difference_interval"))))
    pairwise = summary.get("pairwise")
    if pairwise and pairwise.get("tuned_win_rate") is not None:
        cards.append(_card(f"{pairwise['tuned_win_rate']:.0%}",
                           f"tuned win rate, pairwise{_interval(pairwise.get('interval'), True)} · W/T/L "
                           f"{pairwise['tuned_wins']}/{pairwise['ties']}/{pairwise['base_wins']} · orders agree on "
                           f"{pairwise['swap_consistency']:.0%}", "judge-pairwise"))
    length = summary.get("length")
    if length and length.get("length_controlled_win_rate") is not None:
        cards.append(_card(f"{length['length_controlled_win_rate']:.0%}",
                           f"length-controlled tuned win rate ({length['verdicts_from']}; raw "
                           f"{length['tuned_win_rate']:.0%}) · {length['base_mean_words']:.0f} vs "
                           f"{length['tuned_mean_words']:.0f} words", "judge-length"))
    for side, values in summary.get("metrics", {}).items():
        exact = "–" if values["exact_match"] is None else f"{values['exact_match']:.0%}"
        cards.append(_card(exact, f"{side} exact match ({values['exact_examples']} single-answer)"))
        cards.append(_card(f"{values['rouge_l']:.2f}", f"{side} ROUGE-L"))
    agreement = summary.get("exact_agreement")
    if agreement:
        cards.append(_card(f"{agreement['agree']}/{agreement['answers']}",
                           f"judge ≥ {agreement['pass_mark']} agrees with exact match", "judge-agreement"))
    body = f'<div class="pg-cards" id="judge-summary">{"".join(cards)}</div>'
    if facts.get("used"):
        body += (f'<div class="pg-facts" id="judge-facts">Judge <b>{html.escape(facts["model"])}</b> '
                 f'({html.escape(facts["parameters"] or "size unknown")}'
                 + (f", digest {html.escape(facts['digest'][:12])}" if facts["digest"] else "")
                 + f') via {html.escape(facts["backend"])} at {html.escape(facts["host"])} · prompt '
                 f'{html.escape(facts["prompt"])} (template {facts["template_sha256"]}) · options '
                 f'{html.escape(str(facts["options"]))}</div>')
    body += "".join(notice(text, "warn") for text in summary.get("warnings", []))
    return body


def distribution(rows: list[dict[str, Any]]) -> go.Figure:
    figure = go.Figure()
    for side, color in (("base", "#9ca3af"), ("tuned", "#6366f1")):
        scores = [r[f"{side}_score"] for r in rows if r.get(f"{side}_score") is not None]
        if scores:
            figure.add_trace(go.Histogram(x=scores, name=side, marker_color=color,
                                          xbins=dict(start=0, end=101, size=10)))
    figure.update_layout(barmode="group", height=280, template="plotly_white", margin=dict(l=50, r=20, t=40, b=40),
                         xaxis_title="judge score (0-100)", yaxis_title="examples",
                         legend=dict(orientation="h", y=1.02, yanchor="bottom", x=1, xanchor="right"),
                         xaxis_range=[0, 101])
    return figure


def groups_figure(summary: dict[str, Any]) -> go.Figure | None:
    """Base and tuned averages per group (task family), side by side."""
    groups = (summary.get("groups") or {}).get("values") or {}
    if not groups:
        return None
    names = list(groups)
    figure = go.Figure()
    for side, color in (("base", "#9ca3af"), ("tuned", "#6366f1")):
        figure.add_trace(go.Bar(x=names, y=[groups[n][f"{side}_average"] for n in names], name=side,
                                marker_color=color,
                                customdata=[groups[n]["examples"] for n in names],
                                hovertemplate="%{x}: %{y:.1f} (%{customdata} examples)<extra>" + side + "</extra>"))
    figure.update_layout(barmode="group", height=320, template="plotly_white", margin=dict(l=50, r=20, t=40, b=90),
                         yaxis_title="judge average", yaxis_range=[0, 100],
                         xaxis_title=summary["groups"]["by"],
                         legend=dict(orientation="h", y=1.02, yanchor="bottom", x=1, xanchor="right"))
    return figure


def table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Per example, worst regressions (lowest tuned − base) first; ungraded rows last."""
    frame = pd.DataFrame(rows)
    for column in TABLE_COLUMNS:
        if column not in frame:
            frame[column] = None
    return frame[TABLE_COLUMNS].sort_values("difference", na_position="last", kind="stable")
