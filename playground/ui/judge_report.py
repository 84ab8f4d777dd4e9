"""The Judge tab's report card: cards, plots and the per-example table, drawn from a grading's summary."""

from __future__ import annotations

import html
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from ..errors import PlaygroundError
from ..judge import agreement as judge_agreement
from ..model_refs import side_name
from .common import LEGEND_ABOVE_LEFT, notice

def _card(value: str, caption: str, element: str = "") -> str:
    anchor = f' id="{element}"' if element else ""
    return f'<div class="pg-card"{anchor}><b>{html.escape(value)}</b><span>{html.escape(caption)}</span></div>'


def _interval(values: list[float] | None, percent: bool = False) -> str:
    if not values:
        return ""
    low, high = values
    return f" · 95% interval {low:.0%}–{high:.0%}" if percent else f" · 95% interval {low:.1f}–{high:.1f}"


def side_names(other: str = "base") -> dict[str, str]:
    """How the report names each side: the run is "tuned", the model it is compared with `other`
    ("base", or a label such as "run X")."""
    return {"base": other, "tuned": "tuned"}


def summary_html(summary: dict[str, Any], facts: dict[str, Any], other: str = "base") -> str:
    cards, names = [], side_names(other)
    for side in ("base", "tuned"):
        part = summary.get(side)
        if part:
            average = "–" if part["average"] is None else f"{part['average']:.1f}"
            extra = ", ".join(f"{part[k]} {k}" for k in ("unparsed", "errors", "skipped", "truncated") if part.get(k))
            title = names[side][:1].upper() + names[side][1:]
            cards.append(_card(average, f"{title} average · scored {part['scored']} of {part['total']}"
                               f"{_interval(part.get('interval'))}{' · ' + extra if extra else ''}", f"judge-{side}"))
    if summary.get("average_difference") is not None:
        cards.append(_card(f"{summary['average_difference']:+.1f}", f"tuned − {other}, per example"
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
        cards.append(_card(exact, f"{names.get(side, side)} exact match ({values['exact_examples']} single-answer)"))
        cards.append(_card(f"{values['rouge_l']:.2f}", f"{names.get(side, side)} ROUGE-L"))
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


def distribution(rows: list[dict[str, Any]], judged: bool = True, other: str = "base") -> go.Figure:
    """Both sides' judge scores in bins of 10 (or, without a judge, ROUGE-L in bins of 0.1), side by side."""
    key, top, step = ("score", 100, 10) if judged else ("rouge_l", 1, 0.1)
    figure, names = go.Figure(), side_names(other)
    for side, color in (("base", "#9ca3af"), ("tuned", "#6366f1")):
        values = [r[f"{side}_{key}"] for r in rows if r.get(f"{side}_{key}") is not None]
        counted = f"{len(values)} {'scored' if judged else 'answers'}"
        figure.add_trace(go.Histogram(x=values, name=f"{names[side]} ({counted})",
                                      marker_color=color, xbins=dict(start=0, end=top * 1.01, size=step),
                                      showlegend=True))
    figure.update_layout(barmode="group", bargap=0.15, height=300, template="plotly_white",
                         margin=dict(l=50, r=20, t=56, b=40),
                         xaxis_title="judge score (0-100)" if judged else "ROUGE-L against the reference (0-1)",
                         yaxis_title="examples", yaxis=dict(rangemode="tozero", tickformat="d", dtick=1
                                                            if len(rows) <= 10 else None),
                         legend=LEGEND_ABOVE_LEFT,
                         xaxis_range=[0, top * 1.01])
    return figure


def groups_figure(summary: dict[str, Any], rows: list[dict[str, Any]] | None = None,
                  judged: bool = True, other: str = "base") -> go.Figure | None:
    """Base and tuned averages per group (task family), side by side: the judge's, or ROUGE-L without one."""
    groups = (summary.get("groups") or {}).get("values") or {} if judged else rouge_by_group(rows or [])
    if not groups:
        return None
    names, shown = list(groups), side_names(other)
    figure = go.Figure()
    for side, color in (("base", "#9ca3af"), ("tuned", "#6366f1")):
        figure.add_trace(go.Bar(x=names, y=[groups[n][f"{side}_average"] for n in names], name=shown[side],
                                marker_color=color, showlegend=True,
                                customdata=[groups[n]["examples"] for n in names],
                                hovertemplate=("%{x}: %{y:.1f}" if judged else "%{x}: %{y:.2f}")
                                + " (%{customdata} examples)<extra>" + shown[side] + "</extra>"))
    figure.update_layout(barmode="group", height=300, template="plotly_white", margin=dict(l=50, r=20, t=56, b=90),
                         yaxis_title="judge average" if judged else "ROUGE-L average",
                         yaxis_range=[0, 100] if judged else [0, 1],
                         xaxis_title=(summary.get("groups") or {}).get("by", "task"),
                         legend=LEGEND_ABOVE_LEFT)
    return figure


def rouge_by_group(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean ROUGE-L per side and group, for a grading without a judge."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(str(row.get("group") or "(none)"), []).append(row)

    def mean(members: list[dict[str, Any]], key: str) -> float | None:
        values = [r[key] for r in members if r.get(key) is not None]
        return sum(values) / len(values) if values else None

    return {name: {"base_average": mean(members, "base_rouge_l"), "tuned_average": mean(members, "tuned_rouge_l"),
                   "examples": len(members)} for name, members in sorted(groups.items())}


# The table's columns and their headers: scores first, the texts cut to a line (the drill-down has them whole).
TABLE_HEADERS = {"record": "record", "group": "task", "base_score": "base", "tuned_score": "tuned",
                 "difference": "Δ", "pairwise": "pairwise", "instruction": "instruction",
                 "tuned_response": "tuned answer", "base_response": "base answer"}
# A grading without a judge: each answer's ROUGE-L and, on single-answer tasks, exact match.
METRIC_HEADERS = {"record": "record", "group": "task", "base_rouge_l": "base ROUGE-L",
                  "tuned_rouge_l": "tuned ROUGE-L", "rouge_l_difference": "Δ", "base_exact": "base exact",
                  "tuned_exact": "tuned exact", "instruction": "instruction", "tuned_response": "tuned answer",
                  "base_response": "base answer"}


def is_judged(saved: dict[str, Any]) -> bool:
    """Whether a saved grading has a judge's scores (else reference metrics only)."""
    return bool((saved.get("judge") or {}).get("used"))


def sorted_rows(rows: list[dict[str, Any]], judged: bool = True) -> list[dict[str, Any]]:
    """Worst regressions (lowest tuned − base, judge score or ROUGE-L) first; rows without both last, in order."""
    key = "difference" if judged else "rouge_l_difference"
    scored = sorted((r for r in rows if r.get(key) is not None), key=lambda r: r[key])
    return scored + [r for r in rows if r.get(key) is None]


COLUMN_WIDTHS = {"record": "70px", "group": "130px", "base_score": "60px", "tuned_score": "60px",
                 "difference": "60px", "pairwise": "80px", "instruction": "300px", "tuned_response": "230px",
                 "base_response": "230px", "base_rouge_l": "80px", "tuned_rouge_l": "80px",
                 "rouge_l_difference": "60px", "base_exact": "70px", "tuned_exact": "70px"}


def table_columns(rows: list[dict[str, Any]], judged: bool = True) -> list[str]:
    """The table's columns: the pairwise verdict only when the grading has one, exact match only when a
    single-answer task is among the examples."""
    headers = TABLE_HEADERS if judged else METRIC_HEADERS
    return [c for c in headers if (c != "pairwise" or any(r.get("pairwise") for r in rows))
            and (c not in ("base_exact", "tuned_exact") or any(r.get("exact") for r in rows))]


def _cell(column: str, value: Any) -> Any:
    if column.endswith("_exact"):
        return "" if value is None else ("yes" if value else "no")
    if "rouge_l" in column and value is not None:
        return round(value, 2)
    return value


def table(rows: list[dict[str, Any]], group_by: str = "task", judged: bool = True,
          other: str = "base") -> pd.DataFrame:
    """One line per example, in the order of `rows` (see sorted_rows); Δ is tuned − base (or `other`,
    the model the run is compared with, which names the base columns)."""
    columns = table_columns(rows, judged)
    frame = pd.DataFrame([{column: _cell(column, row.get(column)) for column in columns} for row in rows],
                         columns=columns)
    headers = {key: other + text[len("base"):] if key.startswith("base_") else text
               for key, text in (TABLE_HEADERS if judged else METRIC_HEADERS).items()}
    if "pairwise" in frame.columns:
        frame["pairwise"] = frame["pairwise"].replace({"base": other})
    return frame.rename(columns={**headers, "group": group_by})


def compared_name(saved: dict[str, Any]) -> str:
    """How a saved grading's report names the model the run was compared with ("base" for older gradings)."""
    return side_name(saved.get("against"))


def _spread(values: list[float] | None) -> str:
    """" · 95% interval 0.45–0.95" for a figure shown with two decimals."""
    return f" · 95% interval {values[0]:.2f}–{values[1]:.2f}" if values else ""


def _figure(value: float | None) -> str:
    """A kappa or a correlation with two decimals, "–" when undefined."""
    return "–" if value is None else f"{value:.2f}"


def agreement_html(found: dict[str, Any] | None) -> str:
    """The report card's "Is the judge right?" part (see `judge.agreement.run_agreement`): per judge, how
    often its pairwise verdict is your blind vote and Cohen's kappa, with n and intervals, and the warning
    under 20 examples; per pair of judges, their correlation. "" when there is nothing to show."""
    if not found:
        return ""
    cards, warnings = [], []
    for judge in found["judges"]:
        votes, name = judge["votes"], judge["label"]
        if votes and votes["n"]:
            cards.append(_card(f"{votes['share']:.0%}", f"{name} agrees with your votes on {votes['agree']} of "
                                                          f"{votes['n']}{_interval(votes['share_interval'], True)}"))
            cards.append(_card(_figure(votes["kappa"]), f"Cohen's kappa, {name} and your votes · n {votes['n']}"
                                                          f"{_spread(votes['kappa_interval'])}"))
        if votes and votes["left_out"]:  # why a vote did not count: a grading can hold none of them
            warnings.append(f"{name}: your votes left out: " + "; ".join(
                f"{reason} ({count})" for reason, count in votes["left_out"].items()) + ".")
        warnings += [votes["warning"]] if votes and votes["warning"] else []
    for pair in found["correlations"]:
        cards.append(_card(_figure(pair["pearson"]), f"Pearson r, {pair['first']} and {pair['second']} · Spearman "
                                                     f"{_figure(pair['spearman'])} · n {pair['n']} answers"))
        warnings += [pair["warning"]] if pair["warning"] else []
    if not cards and not warnings:
        return ""
    return (f'<div id="judge-agreement-section"><b>Is the judge right?</b><div class="pg-cards">{"".join(cards)}'
            f'</div>{"".join(notice(text, "warn") for text in warnings)}</div>')


def agreement_section(saved: dict[str, Any]) -> str:
    """`agreement_html` for a saved grading with a judge; a damaged votes or scores file says so instead."""
    if not is_judged(saved):
        return ""
    try:
        return agreement_html(judge_agreement.of_saved_grading(saved))
    except PlaygroundError as exc:
        return notice(str(exc), "error")


def views(saved: dict[str, Any]) -> tuple[Any, ...]:
    """A saved grading's report: (cards, distribution, groups figure, table, column widths, rows in table order)."""
    judged, other = is_judged(saved), compared_name(saved)
    summary, facts = saved["summary"], saved.get("judge") or {}
    ordered = sorted_rows(saved["rows"], judged)
    group_by = (summary.get("groups") or {}).get("by", "task")
    return (summary_html(summary, facts, other) + agreement_section(saved), distribution(saved["rows"], judged, other),
            groups_figure(summary, saved["rows"], judged, other), table(ordered, group_by, judged, other),
            [COLUMN_WIDTHS[c] for c in table_columns(ordered, judged)], ordered)


def _field(title: str, text: str | None) -> str:
    """A titled text box in the app's text style (.pg-text), scrolling when long."""
    return (f'<div style="margin:6px 0"><div style="font-size:12px;color:#6b7280">{html.escape(title)}</div>'
            f'<div class="pg-text" style="max-height:220px;overflow:auto">'
            f'{html.escape(text or "") or "<i>(empty)</i>"}</div></div>')


def drill_down(row: dict[str, Any], other: str = "base") -> str:
    """One example in full: the texts, each side's score, status and the judge's own reply (or why
    there is none), and the pairwise verdict with both orders' replies."""
    parts = [f'<div id="judge-detail"><b>Record {row.get("record")}</b>'
             + (f' · {html.escape(str(row.get("group")))}' if row.get("group") else "")
             + _field("Instruction", row.get("instruction")) + (_field("Input", row["input"]) if row.get("input") else "")
             + _field("Reference", row.get("reference"))]
    names = side_names(other)
    for side in ("base", "tuned"):
        if f"{side}_response" not in row:
            continue
        score, status, rouge = row.get(f"{side}_score"), row.get(f"{side}_status") or "", row.get(f"{side}_rouge_l")
        graded = f"score {'–' if score is None else score} ({status})" if status or score is not None else ""
        measured = " · ".join(part for part in (graded, "" if rouge is None else f"ROUGE-L {rouge:.2f}") if part)
        title = names[side][:1].upper() + names[side][1:]
        parts.append(_field(f"{title} answer" + (f" · {measured}" if measured else ""),
                            row.get(f"{side}_response")))
        if row.get(f"{side}_error"):
            parts.append(notice(f"{title}: {row[f'{side}_error']}", "error"))
        elif row.get(f"{side}_reply"):
            parts.append(_field(f"The judge's reply ({names[side]})", row.get(f"{side}_reply")))
    if row.get("pairwise_replies"):
        first, second = row["pairwise_replies"]
        verdict = names.get(row.get("pairwise"), row.get("pairwise") or "none")
        parts.append(_field(f"Pairwise verdict: {verdict} · {other} shown as A", first)
                     + _field("tuned shown as A", second))
    return "".join(parts) + "</div>"
