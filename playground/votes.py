"""Blind A/B votes from the Chat tab, kept with the run: `models/runs/<run>/votes.jsonl`."""

from __future__ import annotations

import json
import time
from pathlib import Path

from . import file_writes, run_files, runs

WINNERS = run_files.VOTE_WINNERS
FILE = "votes.jsonl"


def votes_path(models_dir: Path, run_id: str) -> Path:
    """Where the run's votes go; a damaged run is refused."""
    return runs.read(models_dir, run_id).folder / FILE


def save_vote(models_dir: Path, run_id: str, message: str, input_text: str, winner: str, tuned_side: str,
              checkpoint: int | None = None, answers: dict[str, str] | None = None, turn: int | None = None) -> None:
    """One vote, appended: the message (and its Input section) as text, the winner, where tuned was
    shown, and the checkpoint that answered for the run (None: its final weights); with `answers`
    ({"base": ..., "tuned": ...}) and the message's `turn` in its conversation (1: the first), the
    vote can become a preference pair (`preference.pairs_from_votes`)."""
    if winner not in WINNERS:
        raise ValueError(f"unknown winner {winner!r}")
    row = {"time": time.time(), "prompt": message, "input": input_text, "winner": winner, "tuned_was": tuned_side}
    if checkpoint is not None:
        row["checkpoint"] = checkpoint
    if answers is not None:
        row.update(base_answer=answers["base"], tuned_answer=answers["tuned"])
    if turn is not None:
        row["turn"] = turn
    file_writes.append_text(votes_path(models_dir, run_id), json.dumps(row, ensure_ascii=False) + "\n",
                            inside=runs.runs_dir(models_dir))


def tally(models_dir: Path, run_id: str, checkpoint: int | None = None) -> dict[str, int]:
    """The votes on the run's final weights, or on its checkpoint at step `checkpoint`."""
    counts = dict.fromkeys(WINNERS, 0)
    for row in runs.read(models_dir, run_id).read_file(FILE) or []:
        if row.get("checkpoint") == checkpoint:
            counts[row["winner"]] += 1
    return counts
