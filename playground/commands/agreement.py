"""`judge --agreement --run RUN`: is the judge right? Its verdicts against the run's blind votes, its
agreement with exact match, and the correlation between judges that scored the same answers."""

from __future__ import annotations

import argparse
from typing import Any

from .. import runs
from ..errors import PlaygroundError
from ..judge import agreement


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--agreement` and the grading it reads (`--run` and `--models-dir` are the judge command's)."""
    parser.add_argument("--agreement", action="store_true",
                        help="with --run: compare a grading's judge with your blind votes (Chat tab), with exact "
                             "match, and with the other judges that scored the same answers; nothing is graded")
    parser.add_argument("--grading", help="with --agreement: the grading folder under the run's judge/ "
                                          "(default: the latest graded by a judge)")


def print_agreement(args: argparse.Namespace) -> int:
    """Print the agreement of a run's grading (see `judge.agreement.run_agreement`)."""
    if not args.run:
        raise PlaygroundError("give --run RUN: --agreement reads that run's votes and gradings")
    run_id = runs.check_run_id(args.models_dir, args.run)
    found = agreement.run_agreement(args.models_dir, run_id, getattr(args, "grading", None))
    if found is None or not found["judges"]:
        raise PlaygroundError(f"Run {run_id} has no grading by a judge yet: grade it first "
                              f"(judge --run {run_id} --pairwise).")
    for line in agreement_lines(found):
        print(line)
    return 0


def percent(value: float | None, interval: list[float] | None) -> str:
    """"83% [95% interval 61%–100%]"."""
    text = "n/a" if value is None else f"{value:.0%}"
    return text + (f" [95% interval {interval[0]:.0%}–{interval[1]:.0%}]" if interval else "")


def number(value: float | None, interval: list[float] | None = None) -> str:
    """"0.71 [0.45–0.95]", "n/a" when undefined."""
    text = "n/a" if value is None else f"{value:.2f}"
    return text + (f" [95% interval {interval[0]:.2f}–{interval[1]:.2f}]" if interval else "")


def vote_lines(found: dict[str, Any] | None, votes: int) -> list[str]:
    """One judge's agreement with the votes, what was left out, and the warning."""
    if not votes:
        return []
    if found is None:
        return [(f"  with your votes: this grading has no pairwise verdicts (grade with --pairwise to compare the "
                 f"judge with your {votes} votes)")]
    lines = [(f"  with your votes: agree on {found['agree']} of {found['n']} examples "
              f"({percent(found['share'], found['share_interval'])}); Cohen's kappa "
              f"{number(found['kappa'], found['kappa_interval'])}, n {found['n']}; "
              f"{found['same_answers']} of {found['n']} votes saw the very answers the judge compared")]
    if found["left_out"]:
        lines.append("  left out: " + "; ".join(f"{why} ({count})" for why, count in found["left_out"].items()))
    return lines + ([f"  warning: {found['warning']}"] if found["warning"] else [])


def judge_lines(judge: dict[str, Any], votes: int) -> list[str]:
    """One judge: its name and file, its agreement with the votes and with exact match."""
    lines = [f"{judge['model']} ({judge['scores']}):", *vote_lines(judge["votes"], votes)]
    exact = judge["exact"]
    if exact:
        lines.append(f"  with exact match (score >= {exact['pass_mark']}): agree on {exact['agree']} of "
                     f"{exact['answers']} single-answer answers")
    return lines


def agreement_lines(found: dict[str, Any]) -> list[str]:
    """The whole report as text."""
    against = "" if found["against"] == "base" else f" against {found['against']}"
    lines = [(f"Grading {found['grading']} of run {found['run']}{against}: {len(found['judges'])} judge(s), "
              f"{found['votes']} blind vote(s)")]
    if not found["votes"]:
        lines.append("No blind votes on this run: vote in the Chat tab (Blind A/B) to compare the judge with "
                     "your own choices.")
    for judge in found["judges"]:
        lines += judge_lines(judge, found["votes"])
    for pair in found["correlations"]:
        lines.append(f"{pair['first']} and {pair['second']}: Pearson {number(pair['pearson'])}, Spearman "
                     f"{number(pair['spearman'])} over {pair['n']} answers both scored")
        lines += [f"  warning: {pair['warning']}"] if pair["warning"] else []
    if len(found["judges"]) == 1:
        lines.append("One judge scored these answers: grade them again with another --judge-model (or --prompt) "
                     "to compare judges.")
    return lines
