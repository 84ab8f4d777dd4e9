"""Blind A/B votes from the Chat tab, kept with the run: `models/runs/<run>/votes.jsonl`.

A vote compares the run (its final weights, or the checkpoint in `checkpoint`) with another model:
the base model, or the run or checkpoint named in `against` (a `model_refs` text, written only when
it is not the base, so a vote without it is one against the base model). "tuned" in a vote is the
run; "base" (the winner, `base_answer`) is the model it was compared with.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from . import file_writes, run_files, runs
from .model_refs import BASE, ModelRef

WINNERS = run_files.VOTE_WINNERS
FILE = "votes.jsonl"


def votes_path(models_dir: Path, run_id: str) -> Path:
    """Where the run's votes go; a damaged run is refused."""
    return runs.read(models_dir, run_id).folder / FILE


def against_text(against: str | ModelRef | None) -> str:
    """The model a vote compares the run with, as its `model_refs` text ("base" when None)."""
    if isinstance(against, ModelRef):
        return str(against)
    return str(ModelRef.parse(against)) if against else BASE


def vote_against(row: dict) -> str:
    """The model a saved vote compared the run with: "base" for a vote that names none."""
    return row.get("against") or BASE


def save_vote(models_dir: Path, run_id: str, message: str, input_text: str, winner: str, tuned_side: str,
              checkpoint: int | None = None, answers: dict[str, str] | None = None, turn: int | None = None,
              against: str | ModelRef | None = None) -> None:
    """One vote, appended: the message (and its Input section) as text, the winner, where tuned was
    shown, the checkpoint that answered for the run (None: its final weights) and the model it was
    compared with (`against`, None: the base model); with `answers` ({"base": ..., "tuned": ...}) and
    the message's `turn` in its conversation (1: the first), the vote can become a preference pair
    (`preference.pairs_from_votes`)."""
    if winner not in WINNERS:
        raise ValueError(f"unknown winner {winner!r}")
    other = against_text(against)
    row = {"time": time.time(), "prompt": message, "input": input_text, "winner": winner, "tuned_was": tuned_side}
    if checkpoint is not None:
        row["checkpoint"] = checkpoint
    if other != BASE:
        row["against"] = other
    if answers is not None:
        row.update(base_answer=answers["base"], tuned_answer=answers["tuned"])
    if turn is not None:
        row["turn"] = turn
    file_writes.append_text(votes_path(models_dir, run_id), json.dumps(row, ensure_ascii=False) + "\n",
                            inside=runs.runs_dir(models_dir))


def tally(models_dir: Path, run_id: str, checkpoint: int | None = None,
          against: str | ModelRef | None = None) -> dict[str, int]:
    """The votes on one pair: the run's final weights (or its checkpoint at step `checkpoint`)
    against the base model (or the model `against` names)."""
    other = against_text(against)
    counts = dict.fromkeys(WINNERS, 0)
    for row in runs.read(models_dir, run_id).read_file(FILE) or []:
        if row.get("checkpoint") == checkpoint and vote_against(row) == other:
            counts[row["winner"]] += 1
    return counts
