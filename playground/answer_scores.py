"""Answers scored while a run trains, and which scoring is the best.

Every `score_answers_every` optimizer steps (and at the end) the training loop has the model answer
the first `score_answers_sample` records of the run's validation split, greedily through the one
generation engine with at most `probe_tokens` new tokens, and scores the answers against the
references with `metrics.py`: exact match on single-answer records (`Record.exact`, as a grading
decides), ROUGE-L on all of them, overall and per task family (`Record.task`).

The answers are generated in fixed blocks of BLOCK consecutive records of the split, as a grading
does (`evaluation.generate_responses`): the last block is completed from the split, then cut, so a
record's answer never depends on the size of the sample. The best scoring is the one with the
highest exact match, then ROUGE-L; on a tie the earlier one stays the best.
"""

from __future__ import annotations

from typing import Any, Sequence

from . import generation, metrics, prompts
from .data import Record
from .generation import GenerationSettings, Side

BLOCK = 8                 # records answered together, as a grading's blocks (`evaluation.generate_responses`)
NO_FAMILY = "(no task)"   # the family of a record without a task, as Inspect names it


def pool(records: Sequence[Record], sample: int) -> list[Record]:
    """The records whose answers are generated for a sample of the first `sample` records: whole
    blocks of the split (fewer only where the split ends)."""
    covered = -(-sample // BLOCK) * BLOCK
    return list(records[:covered])


def answers(side: Side, tokenizer: Any, records: Sequence[Record], style: str, template: str | None,
            max_new_tokens: int) -> list[str]:
    """Greedy answers to `records`, block by block of BLOCK records, each block one batch."""
    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    said: list[str] = []
    for start in range(0, len(records), BLOCK):
        rows = [(side, prompts.render(record, style, tokenizer, template).inference)
                for record in records[start:start + BLOCK]]
        said += generation.generate(rows, tokenizer, style, settings, batch_size=None)
    return said


def _averages(records: Sequence[Record], said: Sequence[str]) -> dict[str, Any]:
    """Exact match over the single-answer records (None when there is none), ROUGE-L over all."""
    exact = [metrics.exact_match(answer, record.output) for record, answer in zip(records, said) if record.exact]
    rouge = [metrics.rouge_l(answer, record.output) for record, answer in zip(records, said)]
    return {"exact_match": sum(exact) / len(exact) if exact else None, "rouge_l": sum(rouge) / len(rouge),
            "examples": len(rouge), "exact_examples": len(exact)}


def figures(records: Sequence[Record], said: Sequence[str]) -> dict[str, Any]:
    """The scores of answers to `records`: `val_exact_match`, `val_rouge_l`, the counts, and the same
    per task family (`families`: {task: {"exact_match", "rouge_l", "examples", "exact_examples"}})."""
    overall = _averages(records, said)
    groups: dict[str, list[int]] = {}
    for number, record in enumerate(records):
        groups.setdefault(record.task or NO_FAMILY, []).append(number)
    families = {task: _averages([records[n] for n in numbers], [said[n] for n in numbers])
                for task, numbers in sorted(groups.items())}
    return {"val_exact_match": overall["exact_match"], "val_rouge_l": overall["rouge_l"],
            "examples": overall["examples"], "exact_examples": overall["exact_examples"], "families": families}


def score(side: Side, tokenizer: Any, records: Sequence[Record], sample: int, style: str, template: str | None,
          max_new_tokens: int) -> dict[str, Any]:
    """The figures of the first `sample` records' answers (`records`: the split, in order)."""
    covered = pool(records, sample)
    said = answers(side, tokenizer, covered, style, template, max_new_tokens)[:sample]
    return figures(covered[:sample], said)


def _rank(values: dict[str, Any]) -> tuple[float, float]:
    """What orders scorings: exact match (none counts below any), then ROUGE-L."""
    exact = values["exact_match"]
    return (-1.0 if exact is None else exact, values["rouge_l"])


def better(scores: dict[str, Any], best: dict[str, Any] | None) -> bool:
    """Whether `scores` ({"exact_match", "rouge_l"}) beat `best` (None: nothing yet)."""
    return best is None or _rank(scores) > _rank(best)
