"""The Judge tab's report card: cards, plots and the per-example table, drawn from a grading's summary."""

from __future__ import annotations

import html
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from .common import notice

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
    """Both sides' scores in bins of 10, side by side in each bin."""
    figure = go.Figure()
    for side, color in (("base", "#9ca3af"), ("tuned", "#6366f1")):
        scores = [r[f"{side}_score"] for r in rows if r.get(f"{side}_score") is not None]
        figure.add_trace(go.Histogram(x=scores, name=f"{side} ({len(scores)} scored)", marker_color=color,
                                      xbins=dict(start=0, end=101, size=10), showlegend=True))
    figure.update_layout(barmode="group", bargap=0.15, height=300, template="plotly_white",
                         margin=dict(l=50, r=20, t=56, b=40), xaxis_title="judge score (0-100)",
                         yaxis_title="examples", yaxis=dict(rangemode="tozero", tickformat="d", dtick=1
                                                            if len(rows) <= 10 else None),
                         legend=dict(orientation="h", y=1.04, yanchor="bottom", x=1, xanchor="right"),
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
                                marker_color=color, showlegend=True,
                                customdata=[groups[n]["examples"] for n in names],
                                hovertemplate="%{x}: %{y:.1f} (%{customdata} examples)<extra>" + side + "</extra>"))
    figure.update_layout(barmode="group", height=300, template="plotly_white", margin=dict(l=50, r=20, t=56, b=90),
                         yaxis_title="judge average", yaxis_range=[0, 100],
                         xaxis_title=summary["groups"]["by"],
                         legend=dict(orientation="h", y=1.04, yanchor="bottom", x=1, xanchor="right"))
    return figure


# The table's columns and their headers: scores first, the texts cut to a line (the drill-down has them whole).
TABLE_HEADERS = {"record": "record", "group": "task", "base_score": "base", "tuned_score": "tuned",
                 "difference": "Δ", "pairwise": "pairwise", "instruction": "instruction",
                 "tuned_response": "tuned answer", "base_response": "base answer"}


def sorted_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Worst regressions (lowest tuned − base) first; rows without both scores last, in order."""
    scored = sorted((r for r in rows if r.get("difference") is not None), key=lambda r: r["difference"])
    return scored + [r for r in rows if r.get("difference") is None]


COLUMN_WIDTHS = {"record": "70px", "group": "130px", "base_score": "60px", "tuned_score": "60px",
                 "difference": "60px", "pairwise": "80px", "instruction": "300px", "tuned_response": "230px",
                 "base_response": "230px"}


def table_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The table's columns: the pairwise verdict only when the grading has one."""
    return [c for c in TABLE_HEADERS if c != "pairwise" or any(r.get("pairwise") for r in rows)]


def table(rows: list[dict[str, Any]], group_by: str = "task") -> pd.DataFrame:
    """One line per example, in the order of `rows` (see sorted_rows); Δ is tuned − base."""
    columns = table_columns(rows)
    frame = pd.DataFrame([{column: row.get(column) for column in columns} for row in rows], columns=columns)
    return frame.rename(columns={**TABLE_HEADERS, "group": group_by})


def _field(title: str, text: str | None) -> str:
    """A titled text box in the app's text style (.pg-text), scrolling when long."""
    return (f'<div style="margin:6px 0"><div style="font-size:12px;color:#6b7280">{html.escape(title)}</div>'
            f'<div class="pg-text" style="max-height:220px;overflow:auto">'
            f'{html.escape(text or "") or "<i>(empty)</i>"}</div></div>')


def drill_down(row: dict[str, Any]) -> str:
    """One example in full: the texts, each side's score, status and the judge's own reply (or why
    there is none), and the pairwise verdict with both orders' replies."""
    parts = [f'<div id="judge-detail"><b>Record {row.get("record")}</b>'
             + (f' · {html.escape(str(row.get("group")))}' if row.get("group") else "")
             + _field("Instruction", row.get("instruction")) + (_field("Input", row["input"]) if row.get("input") else "")
             + _field("Reference", row.get("reference"))]
    for side in ("base", "tuned"):
        if f"{side}_response" not in row:
            continue
        score = row.get(f"{side}_score")
        status = row.get(f"{side}_status") or ""
        parts.append(_field(f"{side.capitalize()} answer · score {'–' if score is None else score} ({status})",
                            row.get(f"{side}_response")))
        if row.get(f"{side}_error"):
            parts.append(notice(f"{side.capitalize()}: {row[f'{side}_error']}", "error"))
        elif row.get(f"{side}_reply"):
            parts.append(_field(f"The judge's reply ({side})", row.get(f"{side}_reply")))
    if row.get("pairwise_replies"):
        first, second = row["pairwise_replies"]
        parts.append(_field(f"Pairwise verdict: {row.get('pairwise') or 'none'} · base shown as A", first)
                     + _field("tuned shown as A", second))
    return "".join(parts) + "</div>"
