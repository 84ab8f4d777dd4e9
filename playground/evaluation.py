"""Grade a run: generate base and tuned answers on a split, score them, keep everything with the run.

Files under `models/runs/<run>/judge/`:
  responses-<split>.json   the book's `instruction-data-with-response.json` shape, with both answers
                           (`base_response`, `tuned_response`; `model_response` = the tuned one)
  cache.jsonl              judge replies, so a repeat or resumed grading asks only for what is missing
  scores-<split>.json      per-example scores and reference metrics, and the summary
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from . import judge, metrics, prompts, runs, store
from .data import Dataset
from .errors import PlaygroundError
from .generation import GenerationSettings, Side, switched
from .modeling import stop_ids

Progress = Callable[[float, str], None]


@dataclass
class GradingResult:
    summary: dict[str, Any]          # per side: judge average, scored/total, metrics
    rows: list[dict[str, Any]]       # per example: texts, scores, difference
    responses_path: Path
    scores_path: Path
    pairwise: dict[str, Any] | None = None


def judge_dir(models_dir: Path, run_id: str) -> Path:
    return runs.runs_dir(models_dir) / run_id / "judge"


@torch.no_grad()
def generate_batch(side: Side, tokenizer: Any, texts: list[tuple[str, bool]], style: str,
                   settings: GenerationSettings, lock: threading.RLock) -> list[str]:
    """Greedy answers for several prompts at once (left-padded), cut at the end-of-text or turn marker."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [tokenizer(text, add_special_tokens=not special).input_ids for text, special in texts]
    width = max(len(ids) for ids in encoded)
    device = next(side.model.parameters()).device
    ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded], device=device)
    mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=device)
    stops = stop_ids(tokenizer, style)
    with lock, switched(side):
        output = side.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=settings.max_new_tokens,
                                     do_sample=False, eos_token_id=stops, pad_token_id=pad)
    answers = []
    for row in output[:, width:].tolist():
        cut = next((i for i, token in enumerate(row) if token in stops), len(row))
        answers.append(tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
    return answers


def generate_responses(manager: Any, run_id: str, dataset: Dataset, split: str, limit: int,
                       settings: GenerationSettings, batch_size: int = 8, on_progress: Progress | None = None,
                       stop: threading.Event | None = None) -> Path:
    """Base and tuned answers for the first `limit` examples of a split, saved in the book's shape.

    An existing file for the same examples and settings is reused, so grading again is quick.
    """
    indices = getattr(dataset.splits(), split)[:limit]
    if not indices:
        raise PlaygroundError(f"The {split} split of this dataset is empty.")
    path = judge_dir(manager.models_dir, run_id) / f"responses-{split}.json"
    meta = {"dataset": dataset.source, "indices": indices, "generation": asdict(settings)}
    if path.exists():
        saved = judge.read_responses(path)
        if saved and saved[0].get("_meta") == meta:
            return path
    tuned, run_settings = manager.tuned_side(run_id)
    spec = run_settings.get("model", store.DEFAULT)
    base = manager.base_side(spec)
    tokenizer = manager.tokenizer(spec)
    style, template = run_settings.get("style", "alpaca"), run_settings.get("template")
    records = []
    for start in range(0, len(indices), batch_size):
        if stop is not None and stop.is_set():
            raise PlaygroundError("Stopped while generating answers; nothing was graded yet.")
        chunk = [dataset.records[i] for i in indices[start:start + batch_size]]
        texts = []
        for record in chunk:
            rendered = prompts.render(record, style, tokenizer, template)
            texts.append((rendered.prompt, rendered.has_special_tokens))
        base_answers = generate_batch(base, tokenizer, texts, style, settings, manager.lock)
        tuned_answers = generate_batch(tuned, tokenizer, texts, style, settings, manager.lock)
        for index, record, base_answer, tuned_answer in zip(indices[start:], chunk, base_answers, tuned_answers):
            records.append({"instruction": record.instruction, "input": record.input, "output": record.output,
                            "task": record.task, "exact": record.exact, "index": index,
                            "base_response": base_answer, "tuned_response": tuned_answer})
        if on_progress:
            on_progress(len(records) / len(indices), f"generated answers for {len(records)} of {len(indices)} examples")
    records[0]["_meta"] = meta
    judge.write_responses(path, records)
    # the book's file for the tuned model alone: the dataset keys plus `model_response`
    judge.write_responses(book_path(path), [{"instruction": r["instruction"], "input": r["input"],
                                             "output": r["output"], "model_response": r["tuned_response"]}
                                            for r in records])
    return path


def book_path(responses_path: Path) -> Path:
    return responses_path.with_name(responses_path.stem + "-instruction-data-with-response.json")


def reference_metrics(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Exact match (on single-answer tasks) and ROUGE-L per side: a grade without any server."""
    result = {}
    exact = [r for r in records if r.get("exact")]
    for side in ("base", "tuned"):
        key = f"{side}_response"
        present = [r for r in records if key in r]
        if not present:
            continue
        result[side] = {
            "rouge_l": sum(metrics.rouge_l(r[key], r["output"]) for r in present) / len(present),
            "exact_match": (sum(metrics.exact_match(r[key], r["output"]) for r in exact if key in r) / len(exact)
                            if exact else None),
            "exact_examples": len(exact),
        }
    return result


def grade_responses(path: Path, settings: judge.JudgeSettings, cache_path: Path | None,
                    pairwise: bool = False, on_progress: Progress | None = None,
                    stop: threading.Event | None = None, use_judge: bool = True) -> GradingResult:
    """Score a responses file with the judge (when asked) and the reference metrics; save the scores."""
    records = judge.read_responses(path)
    cache = judge.JudgeCache(cache_path)
    items = judge.items_from_responses(records)
    judgments: list[judge.Judgment] = []
    if use_judge and items:
        report = (lambda done, total: on_progress(done / total, f"graded {done} of {total} answers")) if on_progress else None
        judgments = judge.grade(items, settings, cache, on_progress=report, stop=stop)
    summary = judge.summarize(judgments) if judgments else {}
    summary["metrics"] = reference_metrics(records)
    by_key = {(j.key, j.side): j for j in judgments}
    rows = []
    for number, record in enumerate(records, start=1):
        row = {"#": number, "instruction": record["instruction"], "input": record.get("input", ""),
               "reference": record["output"]}
        for side in ("base", "tuned"):
            answer = record.get(f"{side}_response", record.get("model_response") if side == "tuned" else None)
            if answer is None:
                continue
            found = by_key.get((str(number), side))
            row[f"{side}_response"] = answer
            row[f"{side}_score"] = found.score if found else None
            row[f"{side}_status"] = found.status if found else ("not graded" if use_judge else "")
        if row.get("base_score") is not None and row.get("tuned_score") is not None:
            row["difference"] = row["tuned_score"] - row["base_score"]
        rows.append(row)
    pair_summary = None
    if pairwise and use_judge:
        pairs = judge.pairs_from_responses(records)
        if pairs:
            pair_summary = judge.summarize_pairwise(judge.grade_pairwise(pairs, settings, cache, stop=stop))
            summary["pairwise"] = pair_summary
    scores_path = path.with_name(path.name.replace("responses-", "scores-"))
    runs.write_json(scores_path, {"judge": {"model": settings.model, "host": settings.host,
                                            "structured": settings.structured, "options": settings.options()},
                                  "summary": summary, "rows": rows})
    return GradingResult(summary, rows, path, scores_path, pair_summary)


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The averages with their scored/total counts, and the reference metrics, as text lines."""
    lines = []
    for side in ("base", "tuned"):
        part = summary.get(side)
        if part:
            average = "n/a" if part["average"] is None else f"{part['average']:.1f}"
            lines.append(f"{side.capitalize()}: average {average} (scored {part['scored']} of {part['total']}; "
                         f"unparsed {part['unparsed']}, errors {part['errors']}, truncated {part['truncated']})")
    for side, values in summary.get("metrics", {}).items():
        exact = ("n/a" if values["exact_match"] is None
                 else f"{values['exact_match']:.0%} on {values['exact_examples']} single-answer examples")
        lines.append(f"{side.capitalize()} reference metrics: ROUGE-L {values['rouge_l']:.3f}, exact match {exact}")
    pairwise = summary.get("pairwise")
    if pairwise:
        rate, disagree = pairwise["tuned_win_rate"], pairwise["disagreement"]
        lines.append(f"Pairwise: tuned win rate {'n/a' if rate is None else f'{rate:.0%}'}, the two orders "
                     f"disagree on {'n/a' if disagree is None else f'{disagree:.0%}'} of examples "
                     f"({pairwise['unparsed']} unparsed verdicts)")
    return lines
