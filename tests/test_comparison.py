"""Runs compared side by side, from what each recorded: curves, final figures, differing settings."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from playground import comparison, evaluation, judge
from playground.errors import PlaygroundError
from playground.generation import GenerationSettings
from playground.manager import ModelManager
from tests_helpers import small_dataset, train_tiny_run

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def two_runs(tiny_model_dir, tmp_path_factory):
    models = tmp_path_factory.mktemp("compare-store")
    train_tiny_run(tiny_model_dir, models, "slow-warmup", small_dataset(), max_steps=6, warmup_steps=6)
    train_tiny_run(tiny_model_dir, models, "fast-warmup", small_dataset(), max_steps=6, warmup_steps=1)
    return models


def events(models, run_id):
    return [json.loads(line) for line in (models / "runs" / run_id / "metrics.jsonl").read_text().splitlines()]


def test_curves_and_final_figures_are_what_each_run_recorded(two_runs):
    summaries = comparison.compare(two_runs, ["slow-warmup", "fast-warmup"])
    assert [s.run_id for s in summaries] == ["slow-warmup", "fast-warmup"]
    for s in summaries:
        recorded = events(two_runs, s.run_id)
        assert [p.loss for p in s.train] == [e["train_loss"] for e in recorded if e["kind"] == "step"]
        assert [p.loss for p in s.validation] == [e["val_loss"] for e in recorded if e["kind"] == "eval"]
        assert s.minutes == pytest.approx(max(e["elapsed"] for e in recorded if e["kind"] in ("step", "eval")) / 60)
    rows = comparison.final_figures(summaries)
    assert [r["steps"] for r in rows] == [6, 6] and all(r["state"] == "finished" for r in rows)
    assert rows[1]["final val loss"] == round(summaries[1].validation[-1].loss, 4)


def test_only_the_settings_that_differ_are_listed(two_runs):
    differing = comparison.differing_settings(comparison.compare(two_runs, ["slow-warmup", "fast-warmup"]))
    assert [row["setting"] for row in differing] == ["warmup_steps"]
    assert differing[0] == {"setting": "warmup_steps", "slow-warmup": 6, "fast-warmup": 1}


def test_a_graded_run_shows_its_grading_figures(two_runs, tiny_model_dir):
    manager = ModelManager(two_runs, tokenizer_spec=str(tiny_model_dir))
    path = evaluation.generate_responses(manager, "fast-warmup", "train", 4, GenerationSettings(max_new_tokens=6))
    result = evaluation.grade_responses(path, judge.JudgeSettings(), None, use_judge=False)
    row = comparison.final_figures(comparison.compare(two_runs, ["fast-warmup", "slow-warmup"]))
    tuned = result.summary["metrics"]["tuned"]
    assert row[0]["grading"] == path.parent.name
    assert row[0]["tuned ROUGE-L"] == round(tuned["rouge_l"], 3)
    assert "grading" not in row[1]  # never graded: no figures made up


def test_unknown_runs_and_too_many_are_refused_by_name(two_runs):
    with pytest.raises(PlaygroundError, match="no-such-run"):
        comparison.compare(two_runs, ["slow-warmup", "no-such-run"])
    with pytest.raises(PlaygroundError, match="at most 8"):
        comparison.compare(two_runs, [f"run-{n}" for n in range(9)])
    with pytest.raises(PlaygroundError, match="at least one"):
        comparison.compare(two_runs, [])


def test_command_line_compare_prints_figures_and_differences(two_runs):
    result = subprocess.run([sys.executable, "-m", "playground", "compare", "slow-warmup", "fast-warmup", "--json",
                             "--models-dir", str(two_runs)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    printed = json.loads(result.stdout)
    assert [r["run"] for r in printed["figures"]] == ["slow-warmup", "fast-warmup"]
    assert [r["setting"] for r in printed["differing_settings"]] == ["warmup_steps"]


def test_losses_over_different_targets_come_with_a_caveat_and_labels_name_the_runs(two_runs, tiny_model_dir):
    train_tiny_run(tiny_model_dir, two_runs, "masked-instruction", small_dataset(), max_steps=6, warmup_steps=1,
                   mask="instruction", label="exercise 7.2")
    assert comparison.loss_caveat(comparison.compare(two_runs, ["slow-warmup", "fast-warmup"])) == ""
    summaries = comparison.compare(two_runs, ["fast-warmup", "masked-instruction"])
    assert "what is masked" in comparison.loss_caveat(summaries)
    assert [row["run"] for row in comparison.final_figures(summaries)] == [
        "fast-warmup", "masked-instruction (exercise 7.2)"]


def test_graded_figures_are_rounded_as_the_judge_tab_shows_them():
    summary = comparison.RunSummary("r", "finished", {}, {}, grading={
        "grading": "test-3", "tuned judge average": 53.77777, "base judge average": None,
        "tuned ROUGE-L": 0.456789, "tuned exact match": 0.4375})
    [row] = comparison.final_figures([summary])
    assert row["tuned judge average"] == 53.8 and row["base judge average"] is None  # as the Judge tab's 53.8
    assert row["tuned ROUGE-L"] == 0.457 and row["tuned exact match"] == 0.438 and row["grading"] == "test-3"


def test_the_tab_shows_a_row_per_figure_and_a_column_per_run():
    from playground.ui import compare_tab

    rows = [{"run": "a", "state": "finished", "final val loss": 1.25, "tuned judge average": 53.8},
            {"run": "b", "state": "stopped", "final val loss": 1.5}]
    frame = compare_tab.figures_frame(rows)
    assert list(frame.columns) == ["figure", "a", "b"]
    assert list(frame["figure"]) == ["state", "final val loss", "tuned judge average"]
    by_figure = frame.set_index("figure")
    assert by_figure.loc["final val loss", "a"] == 1.25 and by_figure.loc["state", "b"] == "stopped"
    assert by_figure.loc["tuned judge average", "b"] == ""  # b was never graded
