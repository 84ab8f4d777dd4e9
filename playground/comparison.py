"""Runs side by side: their loss curves, the settings that differ, and their final figures.

Everything comes from what each run recorded (config.json, status.json, metrics.jsonl, data.json)
and from its latest grading (evaluation.latest_grading): nothing is recomputed, so a comparison is
as cheap as reading a few files and never changes a run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import evaluation, runs
from .errors import PlaygroundError

MAX_RUNS = 8  # more curves than this on one plot cannot be told apart
# Settings that change which targets a validation loss averages over, or how they are tokenised
LOSS_TARGETS = {"mask": "what is masked", "style": "the prompt style", "max_length": "the max length",
                "model": "the base model (its tokenizer)", "data sha256": "the data",
                "split seed": "the split seed", "split_order": "the split order"}


@dataclass
class Point:
    step: int
    elapsed: float  # seconds since the run started training
    loss: float


@dataclass
class RunSummary:
    run_id: str
    state: str
    settings: dict[str, Any]
    data: dict[str, Any]  # origin, hash and split seed, from data.json
    train: list[Point] = field(default_factory=list)
    validation: list[Point] = field(default_factory=list)
    grading: dict[str, Any] | None = None  # the latest grading's name, metrics and judge averages

    @property
    def name(self) -> str:
        label = self.settings.get("label")
        return f"{self.run_id} ({label})" if label else self.run_id

    @property
    def final_validation(self) -> float | None:
        return self.validation[-1].loss if self.validation else None

    @property
    def minutes(self) -> float | None:
        points = self.train + self.validation
        return max(p.elapsed for p in points) / 60 if points else None


def _data_facts(record: runs.RunRecord) -> dict[str, Any]:
    saved = record.data()
    if saved is None:
        return {}
    return {"data": saved.get("source"), "data sha256": (saved.get("sha256") or "")[:12],
            "split seed": (saved.get("split") or {}).get("seed")}


def _grading(models_dir: Path, run_id: str) -> dict[str, Any] | None:
    saved = evaluation.quoted_grading(models_dir, run_id)
    if saved is None:
        return None
    summary = saved.get("summary") or {}
    figures: dict[str, Any] = {"grading": saved["grading"]}
    for side in ("base", "tuned"):
        metrics = (summary.get("metrics") or {}).get(side) or {}
        figures[f"{side} exact match"] = metrics.get("exact_match")
        figures[f"{side} ROUGE-L"] = metrics.get("rouge_l")
        figures[f"{side} judge average"] = (summary.get(side) or {}).get("average")
    return figures


def summarize(models_dir: Path, run_id: str) -> RunSummary:
    record = runs.read(models_dir, run_id)
    events = record.metrics()
    train = [Point(e["step"], e["elapsed"], e["train_loss"]) for e in events
             if e.get("kind") == "step" and e.get("train_loss") is not None]
    validation = [Point(e["step"], e["elapsed"], e["val_loss"]) for e in events
                  if e.get("kind") == "eval" and e.get("val_loss") is not None]
    settings = vars(record.config)  # an older run's settings by today's names
    return RunSummary(run_id, record.state, settings, _data_facts(record), train, validation,
                      _grading(models_dir, run_id))


def compare(models_dir: Path, run_ids: list[str]) -> list[RunSummary]:
    """The summaries of 1 to MAX_RUNS runs, in the order given; an unknown run is an error naming it."""
    if not run_ids:
        raise PlaygroundError("Pick at least one run to compare.")
    if len(run_ids) > MAX_RUNS:
        raise PlaygroundError(f"Compare at most {MAX_RUNS} runs at once ({len(run_ids)} picked).")
    return [summarize(models_dir, runs.check_run_id(models_dir, run_id)) for run_id in dict.fromkeys(run_ids)]


def differing_settings(summaries: list[RunSummary]) -> list[dict[str, Any]]:
    """One row per setting (or data fact) whose value is not the same in every run."""
    names = sorted({name for s in summaries for name in [*s.settings, *s.data]} - {"label"})  # a name, not a setting
    rows = []
    for name in names:
        values = [s.settings.get(name, s.data.get(name)) for s in summaries]
        if len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1:
            rows.append({"setting": name, **{s.run_id: values[i] for i, s in enumerate(summaries)}})
    return rows


def loss_caveat(summaries: list[RunSummary]) -> str:
    """Why the validation losses cannot be ranked, when the runs average them over different targets."""
    differing = {row["setting"] for row in differing_settings(summaries)} & set(LOSS_TARGETS)
    if not differing:
        return ""
    named = [LOSS_TARGETS[name] for name in sorted(differing)]
    what = " and ".join([", ".join(named[:-1]), named[-1]] if len(named) > 1 else named)
    return (f"These runs differ in {what}, so each validation loss averages over other targets (with the "
            "instruction-only mask, for example, the easy response-header tokens count too): a lower loss "
            "here does not mean better answers. Grade the runs (Judge tab) to compare their answers.")


def final_figures(summaries: list[RunSummary]) -> list[dict[str, Any]]:
    """One row per run: state, steps, minutes, the last validation loss, its latest grading's figures."""
    rows = []
    for s in summaries:
        last_step = max((p.step for p in s.train), default=0)
        rows.append({"run": s.name, "state": s.state, "steps": last_step,
                     "minutes": None if s.minutes is None else round(s.minutes, 2),
                     "first val loss": round(s.validation[0].loss, 4) if s.validation else None,
                     "final val loss": None if s.final_validation is None else round(s.final_validation, 4),
                     **{k: shown_figure(k, v) for k, v in (s.grading or {}).items()}})
    return rows


def shown_figure(name: str, value: Any) -> Any:
    """A grading figure rounded as the Judge tab shows it: judge averages to 0.1, the metrics to 0.001."""
    if not isinstance(value, float):
        return value
    return round(value, 1) if name.endswith("judge average") else round(value, 3)
