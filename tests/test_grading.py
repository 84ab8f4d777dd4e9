"""Grading a run end to end against the Ollama stand-in: generate, judge, summarise, resume."""

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ollama_standin import OllamaStandin
from playground import data, evaluation, judge
from playground.generation import GenerationSettings
from playground.manager import ModelManager

ROOT = Path(__file__).resolve().parent.parent
RESPONSE = re.compile(r"<<<RESPONSE-(\w+)>>>\n(.*?)\n<<<END-RESPONSE-\1>>>", re.S)  # the block, not the note


def scripted_score(request) -> str:
    """A score the test can recompute: derived from the graded response's text."""
    prompt = request["messages"][0]["content"]
    return str(len(RESPONSE.search(prompt).group(2).strip()) % 101)


def expected_average(records, side):
    scores = [len(r[f"{side}_response"].strip()) % 101 for r in records]
    return sum(scores) / len(scores)


@pytest.fixture(scope="module")
def responses(tiny_run, tiny_model_dir):
    manager = ModelManager(tiny_run, tokenizer_spec=str(tiny_model_dir))
    path = evaluation.generate_responses(manager, "tiny-run", data.load("builtin"), "test", 6,
                                         GenerationSettings(max_new_tokens=12))
    return path


def test_generated_file_has_both_answers_in_the_books_shape(responses):
    records = json.loads(responses.read_text())
    assert len(records) == 6
    for record in records:
        assert {"instruction", "input", "output", "base_response", "tuned_response"} <= set(record)
    book = json.loads(evaluation.book_path(responses).read_text())
    assert [set(r) for r in book] == [{"instruction", "input", "output", "model_response"}] * 6
    assert [r["model_response"] for r in book] == [r["tuned_response"] for r in records]


def test_scripted_scores_come_back_exactly_as_averages(responses, tmp_path):
    records = judge.read_responses(responses)
    with OllamaStandin(reply=scripted_score) as server:
        settings = judge.JudgeSettings(host=server.url, concurrency=3, backoff=0.01)
        result = evaluation.grade_responses(responses, settings, tmp_path / "cache.jsonl")
    assert result.summary["base"]["average"] == pytest.approx(expected_average(records, "base"))
    assert result.summary["tuned"]["average"] == pytest.approx(expected_average(records, "tuned"))
    assert result.summary["base"]["scored"] == result.summary["tuned"]["scored"] == 6
    assert [row["#"] for row in result.rows] == [1, 2, 3, 4, 5, 6]
    saved = json.loads(result.scores_path.read_text())
    assert saved["summary"]["tuned"]["average"] == result.summary["tuned"]["average"]
    assert set(saved["summary"]["metrics"]) == {"base", "tuned"}


def test_stopping_the_server_mid_run_loses_nothing_and_a_second_run_finishes(responses, tmp_path):
    records = judge.read_responses(responses)
    cache = tmp_path / "cache.jsonl"
    first = OllamaStandin(reply=scripted_score, capacity=1).start()
    answered = []

    def reply_then_die(request):
        answered.append(request)
        if len(answered) == 5:  # the server goes away after its fifth answer
            threading.Thread(target=first.stop).start()
        return scripted_score(request)

    first.reply = reply_then_die
    settings = judge.JudgeSettings(host=first.url, concurrency=1, retries=1, backoff=0.01, timeout=10)
    partial = evaluation.grade_responses(responses, settings, cache)
    first.stop()
    graded = partial.summary["base"]["scored"] + partial.summary["tuned"]["scored"]
    assert 1 <= graded < 12
    assert sum(1 for _ in cache.read_text().splitlines()) == graded  # everything answered is kept

    with OllamaStandin(reply=scripted_score) as second:  # the server is back (on another port)
        settings.host = second.url
        full = evaluation.grade_responses(responses, settings, cache)
        assert len(second.requests) == 12 - graded  # asks only for what is missing
    assert full.summary["base"]["average"] == pytest.approx(expected_average(records, "base"))
    assert full.summary["tuned"]["average"] == pytest.approx(expected_average(records, "tuned"))


def test_reference_metrics_need_no_server(tmp_path):
    path = tmp_path / "answers.json"
    judge.write_responses(path, [
        {"instruction": "Capital of France?", "input": "", "output": "Paris", "exact": True,
         "base_response": "It is a city.", "tuned_response": "Paris"},
        {"instruction": "Say hello politely.", "input": "", "output": "Hello, how are you?",
         "base_response": "hello", "tuned_response": "Hello, how are you today?"},
    ])
    result = evaluation.grade_responses(path, judge.JudgeSettings(), None, use_judge=False)
    metrics = result.summary["metrics"]
    assert metrics["tuned"]["exact_match"] == 1.0 and metrics["base"]["exact_match"] == 0.0
    assert metrics["tuned"]["rouge_l"] > metrics["base"]["rouge_l"]
    assert "base" not in result.summary  # no judge averages without a judge


def test_judge_command_grades_a_responses_file(tmp_path):
    path = tmp_path / "instruction-data-with-response.json"
    judge.write_responses(path, [{"instruction": f"Say {i}.", "input": "", "output": str(i),
                                  "model_response": str(i)} for i in range(4)])
    with OllamaStandin(reply=lambda request: "Score: 70") as server:
        result = subprocess.run([sys.executable, "-m", "playground", "judge", "--responses", str(path),
                                 "--host", server.url, "--concurrency", "2"],
                                cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Tuned: average 70.0 (scored 4 of 4; unparsed 0" in result.stdout


def test_judge_command_without_a_server_says_how_to_start_it(tmp_path):
    path = tmp_path / "r.json"
    judge.write_responses(path, [{"instruction": "a", "input": "", "output": "b", "model_response": "b"}])
    result = subprocess.run([sys.executable, "-m", "playground", "judge", "--responses", str(path),
                             "--host", "http://127.0.0.1:9"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "error: " in result.stderr and "ollama serve" in result.stderr
