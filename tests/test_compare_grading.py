"""A run graded and inspected against another run instead of the base model: the other run's answers
and probabilities stand on the "base" side, and a grading against the base keeps its folder."""

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from ollama_standin import OllamaStandin
from playground import cli, data, evaluation, inspection, judge
from playground.errors import PlaygroundError
from playground.generation import GenerationSettings
from playground.manager import ModelManager
from playground.ui import inspect_tab, judge_report, judge_tab

A, B = "seed-7", "other"
SETTINGS = GenerationSettings(max_new_tokens=12)
RESPONSE = re.compile(r"<<<RESPONSE-(\w+)>>>\n(.*?)\n<<<END-RESPONSE-\1>>>", re.S)
PAIR = re.compile(r"<<<(A|B)-(\w+)>>>\n(.*?)\n<<<END-\1-\2>>>", re.S)


def scripted(request) -> str:
    """A score from the graded answer's length; pairwise, the longer answer wins (equal: a tie)."""
    prompt = request["messages"][0]["content"]
    pair = {side: text for side, _, text in PAIR.findall(prompt)}
    if pair:
        a, b = len(pair["A"].strip()), len(pair["B"].strip())
        return "A" if a > b else "B" if b > a else "tie"
    return str(len(RESPONSE.search(prompt).group(2).strip()) % 101)


@pytest.fixture(scope="module")
def store(graded_run, tiny_model_dir, tmp_path_factory):
    """Run A (the graded run's copy, never graded here) and run B: the same base model, data and split
    seed, another training seed."""
    from tests_helpers import train_tiny_run

    models = tmp_path_factory.mktemp("compare-store")
    shutil.copytree(graded_run / "runs" / A, models / "runs" / A, ignore=shutil.ignore_patterns("judge"))
    train_tiny_run(tiny_model_dir, models, B, data.load("builtin"), max_steps=5, seed=3, split_seed=7)
    return models


@pytest.fixture(scope="module")
def manager(store, tiny_model_dir):
    return ModelManager(store, tokenizer_spec=str(tiny_model_dir), dtype="float32")


@pytest.fixture(scope="module")
def gradings(manager):
    """Responses files: A against the base, A against B, and B alone (against the base)."""
    return {"a-base": evaluation.generate_responses(manager, A, "test", 4, SETTINGS),
            "a-b": evaluation.generate_responses(manager, A, "test", 4, SETTINGS, against=B),
            "b-base": evaluation.generate_responses(manager, B, "test", 4, SETTINGS)}


def answers(path, side):
    return [record[f"{side}_response"] for record in json.loads(path.read_text())]


def test_a_grading_against_another_run_holds_its_answers_in_a_folder_of_its_own(gradings):
    plain, other, alone = gradings["a-base"], gradings["a-b"], gradings["b-base"]
    assert other.parent != plain.parent and other.parent.parent == plain.parent.parent
    assert answers(other, "base") == answers(alone, "tuned")  # B's answers, as B graded alone gave them
    assert answers(other, "tuned") == answers(plain, "tuned")
    assert answers(other, "base") != answers(plain, "base")  # B does not answer as the base model does
    meta = json.loads((other.parent / "grading.json").read_text())
    assert meta["against"] == B and meta["against_updated"]
    assert evaluation.against_of(other) == B


def test_a_grading_against_the_base_keeps_the_folder_it_always_had(gradings):
    folder = gradings["a-base"].parent
    meta = json.loads((folder / "grading.json").read_text())
    assert "against" not in meta and "against_updated" not in meta
    del meta["note"]  # written beside what the name's hash covers
    assert folder.name == f"test-4-{evaluation._digest(meta)[:8]}"
    assert evaluation.against_of(gradings["a-base"]) == "base"


def test_the_judge_scores_and_compares_the_other_run_and_the_report_names_it(gradings, store, tmp_path):
    path, plain = gradings["a-b"], gradings["a-base"]
    with OllamaStandin(reply=scripted) as server:
        settings = judge.JudgeSettings(host=server.url, backoff=0.01)
        result = evaluation.grade_responses(path, settings, tmp_path / "cache.jsonl", pairwise=True)
        evaluation.grade_responses(plain, settings, tmp_path / "cache.jsonl")
    theirs, ours = answers(path, "base"), answers(path, "tuned")
    assert result.against == B
    assert result.summary["base"]["average"] == pytest.approx(sum(len(t.strip()) % 101 for t in theirs) / 4)
    expected = ["tuned" if len(o.strip()) > len(t.strip()) else "base" if len(t.strip()) > len(o.strip()) else "tie"
                for t, o in zip(theirs, ours)]
    assert [row["pairwise"] for row in result.rows] == expected
    assert json.loads(result.scores_path.read_text())["against"] == B

    lines = evaluation.summary_lines(result.summary, against=result.against)
    assert lines[0].startswith(f"Run {B}: average") and any(f"run {B} wins" in line for line in lines)
    latest = evaluation.latest_grading(store, A, against=B)
    assert latest["against"] == B and latest["grading"] == path.parent.name
    cards, scores, groups, frame, widths, ordered = judge_report.views(latest)
    assert f"Run {B} average" in cards and f"tuned − run {B}" in cards and "Base average" not in cards
    assert f"run {B}" in frame.columns and f"run {B} answer" in frame.columns and "base" not in frame.columns
    assert scores.data[0].name.startswith(f"run {B} (")
    assert f"Run {B} answer" in judge_report.drill_down(ordered[0], f"run {B}")

    quoted = evaluation.quoted_grading(store, A)  # Compare and model cards: against the base model only
    assert quoted["against"] == "base" and quoted["grading"] == plain.parent.name
    assert "Base average" in judge_report.views(quoted)[0]


def test_the_judge_tab_grades_against_the_model_picked_and_names_it(manager, gradings):
    grading = SimpleNamespace(run=A, against=B, split="test", count=4, max_new=12, answers="playground",
                              metrics_only=True, pairwise=False, group_by="task")
    server = SimpleNamespace(host="http://127.0.0.1:9", model="llama3", api="ollama", key_env="", prompt="default",
                             concurrency=1, timeout=5, max_reply=64, structured=False, template=judge.DEFAULT_TEMPLATE)
    message, *shown = judge_tab.grade(manager, grading, server, None, lambda *args, **kwargs: None)
    assert f"Run {B} reference metrics" in message and "base model only" in message
    assert shown[-1]["other"] == f"run {B}" and str(gradings["a-b"].parent) in shown[-2][0]
    grading.against = "base"
    message, *shown = judge_tab.grade(manager, grading, server, None, lambda *args, **kwargs: None)
    assert message.count("Base reference metrics") == 1 and shown[-1]["other"] == "base"
    assert str(gradings["a-base"].parent) in shown[-2][0]

    button, pairwise = judge_tab.compared_labels(B)
    assert button["value"] == f"Grade run {B} and tuned" and f"compare run {B} and tuned" in pairwise["label"]
    picked = judge_tab.against_update(manager, A, B)
    assert picked["value"] == B and [value for _, value in picked["choices"]][0] == "base"
    assert judge_tab.against_update(manager, B, "gone")["value"] == "base"
    text, *kept = judge_tab.last_grading(manager, A, B)
    assert f"against run {B}" in text and kept[-1]["other"] == f"run {B}"


def test_inspecting_against_another_run_reads_its_probabilities_and_itself_changes_nothing(manager):
    against_b = inspection.inspect_example(manager, A, "test", 1, against=B)
    b_alone = inspection.inspect_example(manager, B, "test", 1)
    plain = inspection.inspect_example(manager, A, "test", 1)
    assert against_b.against == B and against_b.against_label == f"run {B}" and plain.against == "base"
    assert [r.token for r in against_b.tokens] == [r.token for r in b_alone.tokens]
    assert [r.base_prob for r in against_b.tokens] == pytest.approx([r.tuned_prob for r in b_alone.tokens], abs=1e-5)
    assert [t for t, _ in against_b.tokens[0].base_top] == [t for t, _ in b_alone.tokens[0].tuned_top]
    assert [r.tuned_prob for r in against_b.tokens] == pytest.approx([r.tuned_prob for r in plain.tokens], abs=1e-5)
    assert [r.base_prob for r in plain.tokens] != pytest.approx([r.tuned_prob for r in b_alone.tokens], abs=1e-3)
    assert against_b.totals["base"] == pytest.approx(b_alone.totals["tuned"], abs=1e-4)

    itself = inspection.inspect_example(manager, A, "test", 1, against=A)
    assert all(row.kl == pytest.approx(0, abs=1e-6) for row in itself.tokens)
    assert [r.base_prob for r in itself.tokens] == [r.tuned_prob for r in itself.tokens]
    assert any(row.kl > 1e-4 for row in against_b.tokens)

    views = inspect_tab.shown_updates(against_b)
    assert views[2]["label"].startswith(f"Run {B}: probability") and f"KL(tuned ‖ run {B})" in views[5]["label"]
    assert f"answer loss, run {B} → tuned" in views[1] and f"run {B} p" in views[7].columns


def test_family_losses_against_another_run_are_its_losses(manager):
    against_b = inspection.family_losses(manager, A, "test", limit=2, against=B)
    b_alone = inspection.family_losses(manager, B, "test", limit=2)
    assert [f.family for f in against_b] == [f.family for f in b_alone]
    assert [f.base_loss for f in against_b] == pytest.approx([f.tuned_loss for f in b_alone], abs=1e-4)
    assert [f.base_loss for f in against_b] != pytest.approx([f.base_loss for f in b_alone], abs=1e-4)


def test_the_commands_take_against_and_refuse_what_it_cannot_name(store, gradings, tiny_model_dir, capsys, tmp_path):
    assert cli.main(["judge", "--run", A, "--against", B, "--limit", "4", "--max-new-tokens", "12", "--no-judge",
                     "--models-dir", str(store)]) == 0
    out = capsys.readouterr().out
    assert f"Run {B} reference metrics: ROUGE-L" in out
    responses = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("responses: "))
    assert evaluation.against_of(Path(responses)) == B
    assert cli.main(["inspect", "--run", A, "--against", B, "--index", "1", "--json", "--models-dir", str(store)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    b_alone = inspection.inspect_example(ModelManager(store, tokenizer_spec=str(tiny_model_dir)), B, "test", 1)
    assert [r["base_prob"] for r in rows] == pytest.approx([t.tuned_prob for t in b_alone.tokens], abs=1e-3)

    assert cli.main(["inspect", "--run", A, "--against", "nosuch", "--models-dir", str(store)]) == 2
    assert "No run 'nosuch'" in capsys.readouterr().err
    path = tmp_path / "r.json"
    judge.write_responses(path, [{"instruction": "a", "input": "", "output": "b", "model_response": "b"}])
    assert cli.main(["judge", "--responses", str(path), "--against", B, "--no-judge", "--models-dir", str(store)]) == 2
    assert "--against needs --run" in capsys.readouterr().err
    with pytest.raises(PlaygroundError, match="names no model"):
        evaluation.generate_responses(ModelManager(store), A, "test", 1, SETTINGS, against="a b")
