"""Preference pairs for DPO from a run's votes and gradings, and writing them as a new dataset.

A preference dataset is a `data.Dataset` whose records carry a chosen and a rejected response
(`data.load` reads the book's instruction/input/output/chosen/rejected and prompt/chosen/rejected;
`data_checks` finds its problems).
Two sources make new ones, each pair with its provenance:
- a run's blind votes (`votes.jsonl`, the Chat tab's "left/right is better" on the first message of a
  conversation, with both answers): the winner's answer is chosen; ties, "both bad", votes without
  the answers and votes on later messages (whose prompt holds the conversation before) are left out;
  the provenance names the model the run was compared with (`against`: "base", a run or RUN@STEP);
- a grading's pairwise verdicts (`judge/<grading>/scores-*.json`), where the judge picked the same
  answer in both orders (orders that disagree are a tie there, and ties are left out).
The same prompt and answers twice is kept once; a pair and its reverse (two votes or judges that
disagree) are both left out. `write_pairs` writes a new file, never over an existing one.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from . import data, file_writes, runs, votes
from .errors import PlaygroundError
from .model_refs import BASE


@dataclass(frozen=True)
class Pair:
    """One preference: the prompt, the preferred and the dispreferred answer, and where it came from."""
    instruction: str
    input: str
    chosen: str
    rejected: str
    provenance: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    reference: str = ""  # the record's reference answer, when the source has one

    def row(self) -> dict[str, Any]:
        """The pair as a record of a preference file (the book's keys, and its provenance)."""
        return {"instruction": self.instruction, "input": self.input, "output": self.reference or self.chosen,
                "chosen": self.chosen, "rejected": self.rejected, "provenance": self.provenance}


@dataclass
class Collected:
    """Pairs from a source, and how many candidates were left out, by reason."""
    pairs: list[Pair] = field(default_factory=list)
    left_out: dict[str, int] = field(default_factory=dict)

    def leave_out(self, reason: str, count: int = 1) -> None:
        self.left_out[reason] = self.left_out.get(reason, 0) + count

    def extend(self, other: "Collected") -> None:
        self.pairs += other.pairs
        for reason, count in other.left_out.items():
            self.leave_out(reason, count)


# ---------------------------------------------------------------- sources


def pairs_from_votes(models_dir: Path, run_id: str) -> Collected:
    """The run's blind votes as pairs (see the module docstring)."""
    record = runs.read(models_dir, run_id)
    found = Collected()
    for number, vote in enumerate(record.read_file(votes.FILE) or [], start=1):
        winner = vote["winner"]
        if winner not in ("tuned", "base"):
            found.leave_out(f"{winner.replace('_', ' ')} votes")
        elif "tuned_answer" not in vote or "base_answer" not in vote:
            found.leave_out("votes saved without the answers")
        elif vote.get("turn", 1) != 1:
            found.leave_out("votes on a later message of a conversation")
        else:
            loser = "base" if winner == "tuned" else "tuned"
            found.pairs.append(Pair(vote.get("prompt", ""), vote.get("input", ""), vote[f"{winner}_answer"],
                                    vote[f"{loser}_answer"], {
                                        "source": "vote", "run": record.run_id, "vote": number,
                                        "time": vote.get("time"), "winner": winner,
                                        "checkpoint": vote.get("checkpoint"), "against": votes.vote_against(vote)}))
    return found


def gradings_with_verdicts(models_dir: Path, run_id: str) -> list[str]:
    """The run's scores files holding pairwise verdicts, as paths inside the run's folder, oldest first."""
    record = runs.read(models_dir, run_id)
    folder = record.folder / "judge"
    files = sorted(folder.glob("*/scores-*.json"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    names = [p.relative_to(record.folder).as_posix() for p in files if not p.name.startswith(".")]
    return [name for name in names if any("pairwise" in row for row in record.read_file(name).get("rows", []))]


def pairs_from_grading(models_dir: Path, run_id: str, scores: str | None = None) -> Collected:
    """The pairwise verdicts of one of the run's gradings (`scores`: a path inside the run's folder,
    as `gradings_with_verdicts` lists them), or of all of them, as pairs."""
    record = runs.read(models_dir, run_id)
    names = [scores] if scores else gradings_with_verdicts(models_dir, run_id)
    if not names:
        raise PlaygroundError(f"Run {run_id} has no grading with pairwise verdicts: grade it with the pairwise "
                              "comparison first (judge --pairwise, or the Judge tab).")
    found = Collected()
    for name in names:
        saved = record.read_file(name)
        if saved is None:
            raise PlaygroundError(f"Run {run_id} has no {name}.")
        # the model the run was compared with (evaluation.compared_side); the base model when unnamed
        against = (record.read_file("/".join(name.split("/")[:2] + ["grading.json"])) or {}).get("against") or BASE
        found.extend(pairs_from_scores(saved, {"source": "pairwise", "run": record.run_id,
                                               "grading": name.split("/")[1], "scores": name.split("/")[-1],
                                               "against": against}, {"tuned": record.run_id, "base": against}))
    return found


def pairs_from_scores(saved: dict[str, Any], where: dict[str, Any], models: dict[str, str]) -> Collected:
    """Pairs from a scores file's rows: the examples whose verdict is one answer in both orders. A row's
    "tuned" side is the run and its "base" side the model it was compared with: `models` names each
    (`model_refs`), kept as the pair's "preferred" model."""
    judge = (saved.get("judge") or {}).get("model")
    found = Collected()
    for row in saved.get("rows", []):
        verdict = row.get("pairwise")
        if "pairwise" not in row:
            continue
        if verdict not in ("tuned", "base"):
            found.leave_out("ties or orders that disagree" if verdict == "tie" else "examples without a verdict")
            continue
        loser = "base" if verdict == "tuned" else "tuned"
        found.pairs.append(Pair(row["instruction"], row.get("input", ""), row[f"{verdict}_response"],
                                row[f"{loser}_response"], {**where, "judge": judge, "example": row.get("#"),
                                                           "record": row.get("record"), "verdict": verdict,
                                                           "preferred": models[verdict],
                                                           "replies": row.get("pairwise_replies")},
                                row.get("reference", "")))
    return found


def combined(found: Collected) -> Collected:
    """The pairs once each: repeats dropped (the first kept), a pair and its reverse both left out."""
    def key(pair: Pair, flip: bool = False) -> tuple[str, ...]:
        a, b = (pair.rejected, pair.chosen) if flip else (pair.chosen, pair.rejected)
        return pair.instruction, pair.input, a, b

    present = {key(p) for p in found.pairs}
    result = Collected(left_out=dict(found.left_out))
    seen = set()
    for pair in found.pairs:
        if pair.chosen == pair.rejected:
            result.leave_out("pairs with the same answer on both sides")
        elif key(pair, flip=True) in present:
            result.leave_out("pairs contradicted by another vote or verdict")
        elif key(pair) in seen:
            result.leave_out("repeats of a pair")
        else:
            seen.add(key(pair))
            result.pairs.append(pair)
    return result


def wrong_answer_pairs(dataset: data.Dataset) -> data.Dataset:
    """The records as preference pairs: the reference answer chosen, and rejected the answer of the next
    record of the same task family (in file order, round the family) that differs from it; a wrong
    answer in the right form, so a preference for the right one can be learnt in minutes."""
    families: dict[str, list[int]] = {}
    for number, record in enumerate(dataset.records):
        families.setdefault(record.task, []).append(number)
    records = []
    for number, record in enumerate(dataset.records):
        family = families[record.task]
        place = family.index(number)
        others = (dataset.records[family[(place + k) % len(family)]].output for k in range(1, len(family)))
        wrong = next((o for o in others if o.strip().lower() != record.output.strip().lower()), "")
        if wrong:
            records.append(replace(record, chosen=record.output, rejected=wrong))
    return data.Dataset(records=records, source=f"{dataset.source}, as pairs with a wrong answer of the same task",
                        mapping={**dataset.mapping, "chosen": "output", "rejected": "(another record's output)"})


# ---------------------------------------------------------------- writing


def write_pairs(path: Path, pairs: Sequence[Pair]) -> Path:
    """The pairs as a new preference file (a JSON array with the book's keys and each pair's
    provenance); an existing file is never replaced."""
    path = Path(path)
    if not pairs:
        raise PlaygroundError("No preference pairs to write.")
    if path.exists() or path.is_symlink():
        raise PlaygroundError(f"{path} exists: preference pairs go to a new file; choose another name.")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        os.fchmod(handle, file_writes.FILE_MODE)
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump([pair.row() for pair in pairs], file, ensure_ascii=False, indent=1)
        os.link(temporary, path)  # fails, rather than replaces, when the name was taken meanwhile
    except FileExistsError:
        raise PlaygroundError(f"{path} exists: preference pairs go to a new file; choose another name.") from None
    finally:
        os.unlink(temporary)
    return path
