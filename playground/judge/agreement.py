"""Is the judge right? Its verdicts against your blind votes, and judges against each other.

- Judge and votes: a grading's pairwise verdicts (tuned, base or tie) and the run's blind votes from the
  Chat tab on the same examples, matched by the prompt's text and its input (whitespace normalised).
  Only votes on the pair the grading compared count: the run's final weights against the base model
  (a vote on a checkpoint, or against another model, is left out), on the first message of a
  conversation (a later message was answered with the conversation before it), one vote per example
  (the latest). "Both bad" counts as a tie: neither answer preferred, which is what the judge's tie
  says (the judge has no "both bad"). Reported: how often verdict and vote are the same, Cohen's
  kappa (that agreement corrected for the agreement two raters with the same habits would reach by
  chance: 1 always the same, 0 no better than chance), n, bootstrap 95% intervals over the examples,
  and a warning under MIN_ITEMS examples.
- Judge and exact match: `report.exact_agreement`, per judge.
- Judge and judge: two judges' scores of the same answers (two scores files of one grading folder),
  Pearson and Spearman correlation over the answers both scored, as the book's correlation notebook
  (ch07/03_model-evaluation) does.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import metrics, runs, votes
from ..errors import PlaygroundError
from . import report

CATEGORIES = ("tuned", "base", "tie")
AS_VERDICT = {"tuned": "tuned", "base": "base", "tie": "tie", "both_bad": "tie"}  # a vote read as a verdict
MIN_ITEMS = 20
NO_VERDICT = "votes on examples the judge gave no verdict"
NOT_GRADED = "votes on prompts this grading does not hold"
REPEATED = "earlier votes on the same prompt"

Key = tuple[str, str]


def normalised(text: Any) -> str:
    """Text with its whitespace collapsed, to match a vote's prompt with a graded record."""
    return " ".join(str(text or "").split())


def item_key(prompt: Any, input_text: Any) -> Key:
    """What an example is matched by: its prompt (instruction) and its input."""
    return normalised(prompt), normalised(input_text)


# ---------------------------------------------------------------- two raters on the same items


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float | None:
    """Cohen's kappa, (p_o - p_e) / (1 - p_e): p_o the share of items rated the same, p_e the sum over
    categories of the product of each rater's share of that category. None when undefined: no items,
    or both raters used one and the same category throughout."""
    n = len(first)
    if n == 0:
        return None
    observed = sum(a == b for a, b in zip(first, second)) / n
    chance = sum(list(first).count(c) / n * list(second).count(c) / n for c in set(first) | set(second))
    return None if chance == 1 else (observed - chance) / (1 - chance)


def kappa_interval(first: Sequence[str], second: Sequence[str], resamples: int = report.RESAMPLES,
                   seed: int = 0) -> list[float] | None:
    """As `report.bootstrap_interval`, for kappa: the items resampled with replacement (both ratings of
    an item kept together), the resamples where kappa is undefined left out."""
    if len(first) < 2:
        return None
    codes = {c: k for k, c in enumerate(sorted(set(first) | set(second)))}
    a, b = np.array([codes[x] for x in first]), np.array([codes[x] for x in second])
    picks = np.random.default_rng(seed).integers(0, len(a), size=(resamples, len(a)))
    ra, rb = a[picks], b[picks]
    observed = (ra == rb).mean(axis=1)
    chance = sum((ra == k).mean(axis=1) * (rb == k).mean(axis=1) for k in codes.values())
    defined = chance < 1
    if not defined.any():
        return None
    low, high = np.percentile((observed[defined] - chance[defined]) / (1 - chance[defined]), [2.5, 97.5])
    return [float(low), float(high)]


def few_items(n: int, what: str) -> str:
    """The warning for figures resting on fewer than MIN_ITEMS items ("" when there are enough)."""
    if n >= MIN_ITEMS:
        return ""
    return (f"Only {n} {what}: under {MIN_ITEMS}, the figures and their intervals say little; "
            "add more before trusting them.")


def verdict_agreement(judge: Sequence[str], people: Sequence[str]) -> dict[str, Any]:
    """The judge's verdicts against people's on the same items: n, how many agree and the share with
    its interval, kappa with its interval, and the warning under MIN_ITEMS items."""
    same = [1.0 if a == b else 0.0 for a, b in zip(judge, people)]
    return {"n": len(same), "agree": int(sum(same)), "share": sum(same) / len(same) if same else None,
            "share_interval": report.bootstrap_interval(same), "kappa": cohen_kappa(judge, people),
            "kappa_interval": kappa_interval(judge, people),
            "warning": few_items(len(same), "examples have both your vote and the judge's verdict")}


# ---------------------------------------------------------------- votes matched to a grading


def pair_of(entry: dict[str, Any]) -> tuple[str, Any]:
    """Which two models a vote or a grading compares the run with: (the other model, the run's checkpoint);
    ("base", None) is the run's final weights against the base model."""
    return entry.get("against") or "base", entry.get("checkpoint")


def left_out_why(vote: dict[str, Any], pair: tuple[str, Any]) -> str:
    """Why a vote does not count against a grading of `pair` ("" when it counts)."""
    other, checkpoint = pair_of(vote)
    if other != pair[0]:
        return "votes against another model"
    if checkpoint != pair[1]:
        return "votes on other weights than the graded ones (a checkpoint)"
    return "votes on a later message of a conversation" if vote.get("turn", 1) != 1 else ""


def counted_votes(vote_rows: list[dict[str, Any]], pair: tuple[str, Any]) -> tuple[dict[Key, dict[str, Any]],
                                                                                    dict[str, int]]:
    """The latest vote per example on the grading's `pair`, by its key; and the votes left out, by reason."""
    kept: dict[Key, dict[str, Any]] = {}
    left_out: dict[str, int] = {}
    for vote in vote_rows:
        key = item_key(vote.get("prompt"), vote.get("input"))
        reason = left_out_why(vote, pair) or (REPEATED if key in kept else "")
        if reason:
            left_out[reason] = left_out.get(reason, 0) + 1
        if reason in ("", REPEATED):
            kept[key] = vote
    return kept, left_out


def graded_verdicts(rows: list[dict[str, Any]]) -> dict[Key, dict[str, Any]] | None:
    """A grading's examples by key (the first of repeats), those with a pairwise question only; None
    when the grading asked none."""
    if not any("pairwise" in row for row in rows):
        return None
    found: dict[Key, dict[str, Any]] = {}
    for row in rows:
        if "pairwise" in row:
            found.setdefault(item_key(row.get("instruction"), row.get("input")), row)
    return found


def judge_vs_votes(rows: list[dict[str, Any]], vote_rows: list[dict[str, Any]],
                   pair: tuple[str, Any] = ("base", None)) -> dict[str, Any] | None:
    """The judge's pairwise verdicts against the votes on the same examples (`verdict_agreement`), with
    the votes left out by reason and how many matched votes saw the very answers the judge compared;
    None when the grading has no pairwise verdicts."""
    graded = graded_verdicts(rows)
    if graded is None:
        return None
    kept, left_out = counted_votes(vote_rows, pair)
    matched = []
    for key, vote in kept.items():
        reason = (NOT_GRADED if key not in graded else NO_VERDICT if graded[key].get("pairwise") not in CATEGORIES
                  else "")
        if reason:
            left_out[reason] = left_out.get(reason, 0) + 1
        else:
            matched.append((graded[key], vote))
    result = verdict_agreement([row["pairwise"] for row, _ in matched], [AS_VERDICT[v["winner"]] for _, v in matched])
    result["same_answers"] = sum(v.get("tuned_answer") == row.get("tuned_response")
                                 and v.get("base_answer") == row.get("base_response") for row, v in matched)
    return {**result, "votes": len(vote_rows), "left_out": left_out}


# ---------------------------------------------------------------- judge against judge


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks from 1, tied values sharing the mean of their ranks (as Spearman's correlation needs)."""
    data = np.asarray(values, dtype=float)
    ranks = np.empty(len(data))
    ranks[np.argsort(data, kind="stable")] = np.arange(1, len(data) + 1)
    _, group, counts = np.unique(data, return_inverse=True, return_counts=True)
    return np.bincount(group, weights=ranks)[group] / counts[group]


def pearson(first: Sequence[float], second: Sequence[float]) -> float | None:
    """Pearson's correlation (np.corrcoef, as the book); None under 2 items or when one side never varies."""
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def spearman(first: Sequence[float], second: Sequence[float]) -> float | None:
    """Spearman's correlation: Pearson's of the ranks, ties averaged."""
    if len(first) < 2:
        return None
    return pearson(average_ranks(first), average_ranks(second))


def answer_scores(rows: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """A grading's judge scores per answer: (example number, side) -> score, scored answers only."""
    return {(str(row["#"]), side): row[f"{side}_score"] for row in rows for side in ("base", "tuned")
            if row.get(f"{side}_score") is not None}


def judge_correlation(first_rows: list[dict[str, Any]], second_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Two judges' scores of the same answers: n answers scored by both, Pearson, Spearman, warning."""
    first, second = answer_scores(first_rows), answer_scores(second_rows)
    both = [key for key in first if key in second]
    a, b = [first[k] for k in both], [second[k] for k in both]
    return {"n": len(both), "pearson": pearson(a, b), "spearman": spearman(a, b),
            "warning": few_items(len(both), "answers were scored by both judges")}


# ---------------------------------------------------------------- a run's grading


def judge_files(record: runs.RunRecord, grading: str) -> list[tuple[str, dict[str, Any]]]:
    """The grading's scores files made by a judge, oldest first: (path in the run folder, content)."""
    folder = record.folder / "judge" / grading
    found = sorted(folder.glob("scores-*.json"), key=lambda path: (path.stat().st_mtime, path.name))
    names = [f"judge/{grading}/{p.name}" for p in found if p.is_file() and not p.name.startswith(".")]
    saved = [(name, record.read_file(name)) for name in names]
    return [(name, content) for name, content in saved if (content.get("judge") or {}).get("used")]


def latest_judged(record: runs.RunRecord) -> str | None:
    """The folder of the run's latest grading with a judge's scores; None when it has none."""
    folder = record.folder / "judge"
    found = sorted(folder.glob("*/scores-*.json"), key=lambda path: path.stat().st_mtime) if folder.is_dir() else []
    found = [p for p in found if p.is_file() and not p.name.startswith(".") and p.stem != "scores-metrics"]
    return found[-1].parent.name if found else None


def checked_grading(record: runs.RunRecord, grading: str) -> str:
    """A grading folder's name, refused unless it is one of the run's gradings."""
    folder = record.folder / "judge"
    names = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if grading not in names:
        raise PlaygroundError(f"Run {record.run_id} has no grading {grading!r}; its gradings: "
                              f"{', '.join(names) or 'none'}.")
    return grading


def run_agreement(models_dir: Path, run_id: str, grading: str | None = None) -> dict[str, Any] | None:
    """For one grading of the run (default: the latest with a judge): per judge (named by its model, and
    its scores file when two share a model), its verdicts against the run's votes and its agreement with
    exact match; per pair of judges, their correlation. None when the run has no grading by a judge."""
    record = runs.read(models_dir, run_id)
    grading = checked_grading(record, grading) if grading else latest_judged(record)
    if grading is None:
        return None
    files = judge_files(record, grading)
    pair = pair_of(record.read_file(f"judge/{grading}/grading.json") or {})
    vote_rows = record.read_file(votes.FILE) or []
    models = [saved["judge"].get("model", "?") for _, saved in files]
    judges = [{"scores": name.rsplit("/", 1)[-1], "model": model,
               "label": model if models.count(model) == 1 else f"{model} ({name.rsplit('/', 1)[-1]})",
               "votes": judge_vs_votes(saved["rows"], vote_rows, pair) if vote_rows else None,
               "exact": report.exact_agreement(saved["rows"], metrics.exact_match)}
              for model, (name, saved) in zip(models, files)]
    pairs = [{"first": a["label"], "second": b["label"], **judge_correlation(ra["rows"], rb["rows"])}
             for (a, (_, ra)), (b, (_, rb)) in itertools.combinations(zip(judges, files), 2)]
    return {"run": record.run_id, "grading": grading, "against": pair[0], "votes": len(vote_rows), "judges": judges,
            "correlations": pairs}


def of_saved_grading(saved: dict[str, Any]) -> dict[str, Any] | None:
    """`run_agreement` for a grading as `evaluation.latest_grading` gives it (the run and its store found
    from where its scores file lies); None for a scores file outside a run's judge folder."""
    scores = next((Path(f) for f in saved.get("files") or [] if Path(f).name.startswith("scores-")), None)
    if scores is None or len(scores.parents) < 5:
        return None
    if (scores.parents[1].name, scores.parents[3].name) != ("judge", "runs"):
        return None
    run_folder = scores.parents[2]
    return run_agreement(run_folder.parents[1], run_folder.name, scores.parent.name)
