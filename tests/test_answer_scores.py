"""Answers scored while training (`answer_scores`, the loop's "answers" events) and the best checkpoint."""

import json
import shutil

import pytest

from playground import checkpoints, data, generation, metrics, prompts, runs
from playground.errors import PlaygroundError
from playground.generation import GenerationSettings
from playground.manager import ModelManager
from playground.model_refs import ModelRef
from tests_helpers import run_cli, train_tiny_run

SAMPLE = 12  # not a whole number of blocks: the last block is completed, then cut
EVERY = 3
STEPS = 12


@pytest.fixture(scope="module")
def scored_run(tiny_model_dir, tmp_path_factory):
    """A models folder with run "scored": answers scored every 3 of its 12 steps, one checkpoint kept
    besides the best."""
    models = tmp_path_factory.mktemp("scored")
    train_tiny_run(tiny_model_dir, models, "scored", data.load("builtin"), max_steps=STEPS,
                   score_answers_every=EVERY, score_answers_sample=SAMPLE, keep_checkpoints=1, probe_tokens=24)
    return models


def rows(models, kind):
    lines = (models / "runs" / "scored" / "metrics.jsonl").read_text().splitlines()
    return [row for row in map(json.loads, lines) if row["kind"] == kind]


def scored_apart(manager, models, step):
    """The checkpoint at `step` loaded anew; the first SAMPLE validation records answered in blocks of 8
    through the generation engine; exact match and ROUGE-L from metrics.py."""
    found = manager.run_data("scored")
    split = [found.dataset.records[i] for i in found.indices("validation")]
    side, _ = manager.tuned_side("scored", step)
    tokenizer = manager.tokenizer(runs.read(models, "scored").config.model)
    said = []
    for start in range(0, SAMPLE, 8):
        block = [(side, prompts.render(r, "alpaca", tokenizer).inference) for r in split[start:start + 8]]
        said += generation.generate(block, tokenizer, "alpaca", GenerationSettings(max_new_tokens=24), batch_size=None)
    pairs = list(zip(split[:SAMPLE], said))
    family = [(r, a) for r, a in pairs if r.task == split[0].task]
    exact = [metrics.exact_match(a, r.output) for r, a in pairs if r.exact]
    return {"exact": sum(exact) / len(exact), "rouge": sum(metrics.rouge_l(a, r.output) for r, a in pairs) / SAMPLE,
            "family": split[0].task, "family_rouge": sum(metrics.rouge_l(a, r.output) for r, a in family) / len(family)}


def test_scores_while_training_equal_a_separate_scoring_of_the_checkpoint(scored_run, tiny_model_dir):
    answers = rows(scored_run, "answers")
    assert [row["step"] for row in answers] == [3, 6, 9, 12]  # every 3 steps, the last at the end
    assert all(row["examples"] == SAMPLE and row["seconds"] > 0 for row in answers)
    manager = ModelManager(scored_run, tokenizer_spec=str(tiny_model_dir), dtype="float32")
    best = runs.read(scored_run, "scored").status["best_checkpoint"]
    for step in sorted({best["step"], STEPS}):  # the checkpoints pruning keeps
        row = next(r for r in answers if r["step"] == step)
        apart = scored_apart(manager, scored_run, step)
        assert row["val_exact_match"] == pytest.approx(apart["exact"], abs=1e-12)
        assert row["val_rouge_l"] == pytest.approx(apart["rouge"], abs=1e-12)
        assert row["families"][apart["family"]]["rouge_l"] == pytest.approx(apart["family_rouge"], abs=1e-12)


def test_the_best_checkpoint_is_the_best_scoring_and_survives_pruning(scored_run):
    answers = rows(scored_run, "answers")
    status = runs.read(scored_run, "scored").status
    top = max(answers, key=lambda r: (r["val_exact_match"], r["val_rouge_l"], -r["step"]))
    assert status["best_checkpoint"] == {"step": top["step"], "exact_match": top["val_exact_match"],
                                         "rouge_l": top["val_rouge_l"]}
    assert status["answer_seconds"] == pytest.approx(sum(r["seconds"] for r in answers), abs=0.05)
    folder = scored_run / "runs" / "scored"
    assert [c.step for c in checkpoints.list_checkpoints(folder)] == sorted({top["step"], STEPS})  # keep 1, and the best


def test_pruning_never_removes_the_spared_checkpoint(scored_run, tmp_path):
    """Three checkpoints of real saved weights with one kept: the spared one stays beside the newest."""
    saved = checkpoints.latest(scored_run / "runs" / "scored").weights.folder
    for step in (1, 2, 3):
        temporary = checkpoints.temporary_folder(tmp_path, step)
        shutil.copytree(saved, temporary / saved.name)
        checkpoints.finish(temporary, {"step": step}, step, keep=1, spare=1)
    assert [c.step for c in checkpoints.list_checkpoints(tmp_path)] == [1, 3]


def test_run_at_best_resolves_to_the_best_checkpoint(scored_run, tiny_model_dir):
    status = runs.read(scored_run, "scored").status
    step = status["best_checkpoint"]["step"]
    ref = ModelRef.parse("scored@best")
    assert str(ref) == "scored@best" and ref.resolved(status) == ModelRef("scored", step)
    manager = ModelManager(scored_run, tokenizer_spec=str(tiny_model_dir), dtype="float32")
    assert manager.side(ref, str(tiny_model_dir)).adapter == f"scored-step{step}"
    assert manager.tuned_side("scored", "best")[0].adapter == f"scored-step{step}"
    with pytest.raises(PlaygroundError, match="no best checkpoint"):
        ModelRef.parse("other@best").resolved({"state": "finished"})


def test_train_prints_the_answer_scores_and_chat_answers_with_the_best(tiny_model_dir, tmp_path, capsys):
    result = run_cli("train", "--model", str(tiny_model_dir), "--max-steps", "4", "--batch-size", "4",
                     "--score-answers-every", "2", "--score-answers-sample", "4", "--probes", "0",
                     "--eval-every", "0", "--max-length", "64", models_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    scored = [line for line in lines if "val_exact_match" in line]
    assert [line["step"] for line in scored] == [2, 4]
    assert all({"val_exact_match", "val_rouge_l"} <= set(line) for line in scored)
    assert "best answers at step" in result.stderr
    from playground import cli

    run_id = runs.list_runs(tmp_path)[0].run_id
    assert cli.main(["chat", "--run", run_id, "--prompt", "Name a colour.", "--checkpoint", "best",
                     "--max-new-tokens", "4", "--models-dir", str(tmp_path)]) == 0
    assert "Tuned:" in capsys.readouterr().out
