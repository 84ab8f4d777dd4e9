"""Blind A/B votes from the Chat tab, kept with the run: `models/runs/<run>/votes.jsonl`."""

from __future__ import annotations

import json
import time
from pathlib import Path

from . import runs

WINNERS = ("tuned", "base", "tie", "both_bad")


def votes_path(models_dir: Path, run_id: str) -> Path:
    return runs.runs_dir(models_dir) / runs.check_run_id(models_dir, run_id) / "votes.jsonl"


def save_vote(models_dir: Path, run_id: str, message: str, input_text: str, winner: str, tuned_side: str,
              checkpoint: int | None = None) -> None:
    """One vote, appended: the message (and its Input section) as text, the winner, where tuned was
    shown, and the checkpoint that answered for the run (None: its final weights)."""
    if winner not in WINNERS:
        raise ValueError(f"unknown winner {winner!r}")
    row = {"time": time.time(), "prompt": message, "input": input_text, "winner": winner, "tuned_was": tuned_side}
    if checkpoint is not None:
        row["checkpoint"] = checkpoint
    with open(votes_path(models_dir, run_id), "a", encoding="utf-8") as file:
        file.write(json.dumps(row, ensure_ascii=False) + "\n")


def tally(models_dir: Path, run_id: str, checkpoint: int | None = None) -> dict[str, int]:
    """The votes on the run's final weights, or on its checkpoint at step `checkpoint`."""
    counts = dict.fromkeys(WINNERS, 0)
    path = votes_path(models_dir, run_id)
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
                if row.get("checkpoint") == checkpoint:
                    counts[row["winner"]] += 1
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                continue
    return counts
