"""The report card of a grading: averages with their uncertainty, and the judge's known biases.

- each side's average with a bootstrap 95% interval over its scored examples;
- pairwise: one verdict per example from both orders (two orders that disagree are a tie),
  wins/ties/losses, the tuned win rate with its interval, and how often the two orders agree;
- length: mean answer length per side, and a length-controlled tuned win rate (as AlpacaEval's:
  a logistic regression of the verdict on the length difference, read at a difference of zero);
- per group (the task family by default): averages and win rates;
- on single-answer examples: how often the judge (score >= 50) and exact match agree.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .runner import Judgment, PairJudgment

RESAMPLES = 2000
PASS_MARK = 50  # a judge score at least this counts as "correct" when compared with exact match


def bootstrap_interval(values: Sequence[float], statistic: Callable[[np.ndarray], float] = np.mean,
                       resamples: int = RESAMPLES, seed: int = 0) -> list[float] | None:
    """The 2.5th and 97.5th percentiles of the statistic over resamples with replacement."""
    if len(values) < 2:
        return None
    data = np.asarray(values, dtype=float)
    picks = np.random.default_rng(seed).integers(0, len(data), size=(resamples, len(data)))
    estimates = np.array([statistic(data[row]) for row in picks])
    low, high = np.percentile(estimates, [2.5, 97.5])
    return [float(low), float(high)]


def summarize(judgments: list[Judgment]) -> dict[str, Any]:
    """Per side: average over scored items with its interval, and the counts; with both sides,
    per-example differences (tuned - base) over examples scored on both sides."""
    summary: dict[str, Any] = {}
    for side in dict.fromkeys(j.side for j in judgments):
        mine = [j for j in judgments if j.side == side]
        scores = [j.score for j in mine if j.status == "scored" and j.score is not None]
        summary[side] = {"average": sum(scores) / len(scores) if scores else None,
                         "interval": bootstrap_interval(scores), "scored": len(scores),
                         "total": len(mine), "unparsed": sum(j.status == "unparsed" for j in mine),
                         "errors": sum(j.status == "error" for j in mine),
                         "skipped": sum(j.status == "skipped" for j in mine),
                         "truncated": sum(j.truncated for j in mine),
                         "problems": problems((j.status, j.kind, j.error) for j in mine)}
    if "base" in summary and "tuned" in summary:
        base = {j.key: j.score for j in judgments if j.side == "base" and j.score is not None}
        tuned = {j.key: j.score for j in judgments if j.side == "tuned" and j.score is not None}
        differences = [{"key": k, "base": base[k], "tuned": tuned[k], "difference": tuned[k] - base[k]}
                       for k in tuned if k in base]
        summary["differences"] = differences
        values = [d["difference"] for d in differences]
        summary["average_difference"] = sum(values) / len(values) if values else None
        summary["difference_interval"] = bootstrap_interval(values)
    return summary


WIN = {"tuned": 1.0, "tie": 0.5, "base": 0.0}


def summarize_pairwise(judgments: list[PairJudgment]) -> dict[str, Any]:
    """One verdict per example judged in both orders (disagreeing orders count as a tie)."""
    verdicts = [j.verdict for j in judgments if j.verdict is not None]
    both = [j for j in judgments if j.disagree is not None]
    statuses = [s for j in judgments for s in j.statuses]
    outcomes = [WIN[v] for v in verdicts]
    return {"examples": len(judgments), "judged": len(verdicts), "tuned_wins": verdicts.count("tuned"),
            "ties": verdicts.count("tie"), "base_wins": verdicts.count("base"),
            "tuned_win_rate": sum(outcomes) / len(outcomes) if outcomes else None,
            "interval": bootstrap_interval(outcomes),
            "swap_consistency": sum(not j.disagree for j in both) / len(both) if both else None,
            "disagreement": sum(j.disagree for j in both) / len(both) if both else None,
            "unparsed": statuses.count("unparsed"), "errors": statuses.count("error"),
            "skipped": statuses.count("skipped"),
            "problems": problems(entry for j in judgments for entry in zip(j.statuses, j.kinds, j.errors))}


def problems(entries: Iterable[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """Errors and skipped items counted by kind, most frequent first, each with its first message:
    from (status, kind, message) per item."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for status, kind, message in entries:
        if status in ("error", "skipped"):
            entry = found.setdefault((status, kind or status), {"status": status, "kind": kind or status,
                                                                "count": 0, "message": message})
            entry["count"] += 1
    return sorted(found.values(), key=lambda e: -e["count"])


def problem_lines(problems_found: list[dict[str, Any]], what: str) -> list[str]:
    """One line per kind of failure: "3 tuned answers: error (timeout): No answer from ..."."""
    return [f"{e['count']} {what}: {e['status']} ({e['kind']}): {e['message']}" for e in problems_found]


def length_controlled_win_rate(outcomes: Sequence[float], length_differences: Sequence[float]) -> float | None:
    """P(tuned wins) at equal lengths: a logistic regression of the outcome (1 win, 0.5 tie, 0 loss)
    on the standardised length difference (tuned - base), read at zero difference."""
    if len(outcomes) < 2:
        return None
    y = np.asarray(outcomes, dtype=float)
    d = np.asarray(length_differences, dtype=float)
    spread = d.std()
    if spread == 0:
        return float(y.mean())
    x = np.column_stack([np.ones_like(d), d / spread])
    beta = np.zeros(2)
    for _ in range(100):  # Newton's method on the log-likelihood, with a small ridge for separable data
        p = 1 / (1 + np.exp(-x @ beta))
        gradient = x.T @ (y - p) - 1e-3 * beta
        hessian = x.T @ (x * (p * (1 - p))[:, None]) + 1e-3 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        beta += step
        if np.abs(step).max() < 1e-9:
            break
    return float(1 / (1 + math.exp(-beta[0])))


def words(text: str) -> int:
    return len(text.split())


def length_report(rows: list[dict[str, Any]], pairwise: dict[str, str] | None) -> dict[str, Any]:
    """Mean answer length (words) per side, and the tuned win rate with and without length control.

    Verdicts come from the pairwise comparison when there is one, else from the two scores."""
    report: dict[str, Any] = {}
    for side in ("base", "tuned"):
        answers = [r[f"{side}_response"] for r in rows if r.get(f"{side}_response") is not None]
        report[f"{side}_mean_words"] = sum(map(words, answers)) / len(answers) if answers else None
    outcomes, differences = [], []
    for row in rows:
        if pairwise is not None:
            verdict = pairwise.get(str(row["#"]))
            outcome = WIN.get(verdict) if verdict else None
        elif row.get("base_score") is not None and row.get("tuned_score") is not None:
            outcome = 1.0 if row["tuned_score"] > row["base_score"] else 0.0 if row["tuned_score"] < row["base_score"] else 0.5
        else:
            outcome = None
        if outcome is not None:
            outcomes.append(outcome)
            differences.append(words(row["tuned_response"]) - words(row["base_response"]))
    report["verdicts_from"] = "pairwise" if pairwise is not None else "scores"
    report["examples"] = len(outcomes)
    report["tuned_win_rate"] = sum(outcomes) / len(outcomes) if outcomes else None
    report["length_controlled_win_rate"] = length_controlled_win_rate(outcomes, differences)
    return report


def by_group(rows: list[dict[str, Any]], column: str) -> dict[str, dict[str, Any]]:
    """Per value of `column` (e.g. the task family): examples, both averages, the tuned win rate by score."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(str(row.get(column) or "(none)"), []).append(row)
    result = {}
    for name, members in sorted(groups.items()):
        entry: dict[str, Any] = {"examples": len(members)}
        for side in ("base", "tuned"):
            scores = [r[f"{side}_score"] for r in members if r.get(f"{side}_score") is not None]
            entry[f"{side}_average"] = sum(scores) / len(scores) if scores else None
        both = [r for r in members if r.get("base_score") is not None and r.get("tuned_score") is not None]
        wins = [1.0 if r["tuned_score"] > r["base_score"] else 0.0 if r["tuned_score"] < r["base_score"] else 0.5
                for r in both]
        entry["tuned_win_rate"] = sum(wins) / len(wins) if wins else None
        result[name] = entry
    return result


def exact_agreement(rows: list[dict[str, Any]], exact_match: Callable[[str, str], bool]) -> dict[str, Any] | None:
    """On single-answer examples: the judge (score >= PASS_MARK) against exact match, per answer."""
    pairs = []
    for row in rows:
        if not row.get("exact"):
            continue
        for side in ("base", "tuned"):
            if row.get(f"{side}_score") is not None:
                pairs.append((row[f"{side}_score"], exact_match(row[f"{side}_response"], row["reference"])))
    if not pairs:
        return None
    right = [score for score, correct in pairs if correct]
    wrong = [score for score, correct in pairs if not correct]
    return {"answers": len(pairs), "agree": sum((score >= PASS_MARK) == correct for score, correct in pairs),
            "pass_mark": PASS_MARK,
            "mean_score_when_exact": sum(right) / len(right) if right else None,
            "mean_score_when_not": sum(wrong) / len(wrong) if wrong else None}


def warnings(summary: dict[str, Any], parameters: str) -> list[str]:
    """What makes the figures less trustworthy: few examples, a small judge, unparsed or cut prompts."""
    found = []
    scored = [summary[side]["scored"] for side in ("base", "tuned") if side in summary]
    if scored and min(scored) == 0:
        found.append("One side has no scored example: it has no average to compare.")
    elif scored and min(scored) < 50:
        found.append(f"Only {min(scored)} scored examples on one side: its interval is wide or missing; grade at "
                     "least 50 for a comparison to rest on.")
    size = parameter_count(parameters)
    if size is None:
        found.append("The judge's size is not reported by its server; judges under 10B parameters agree "
                     "poorly with people.")
    elif size < 10:
        found.append(f"The judge has {parameters} parameters: judges under 10B parameters agree poorly with "
                     "people and favour long answers; read the scores as a rough signal.")
    for side in ("base", "tuned"):
        part = summary.get(side) or {}
        if part.get("truncated"):
            found.append(f"{part['truncated']} {side} prompts did not fit the judge's context (cut or refused).")
        if part.get("unparsed"):
            replies = "reply" if part["unparsed"] == 1 else "replies"
            found.append(f"{part['unparsed']} {side} {replies} held no score (counted as unparsed, not as 0).")
        found += problem_lines(part.get("problems") or [], f"{side} answers not graded")
    found += problem_lines((summary.get("pairwise") or {}).get("problems") or [], "pairwise questions not answered")
    return found


def parameter_count(parameters: str) -> float | None:
    """Billions of parameters from a size such as "8.0B" or "270M"; None when unknown."""
    text = (parameters or "").strip().upper()
    try:
        if text.endswith("B"):
            return float(text[:-1])
        if text.endswith("M"):
            return float(text[:-1]) / 1000
    except ValueError:
        return None
    return None
