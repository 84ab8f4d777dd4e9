"""Grading a run end to end against the Ollama stand-in: generate, judge, summarise, resume."""

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ollama_standin import OllamaStandin
from playground import evaluation, judge
from playground.errors import PlaygroundError
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
def manager(graded_run, tiny_model_dir):
    return ModelManager(graded_run, tokenizer_spec=str(tiny_model_dir))


@pytest.fixture(scope="module")
def responses(manager):
    return evaluation.generate_responses(manager, "seed-7", "test", 6, GenerationSettings(max_new_tokens=12))


def test_generated_file_has_both_answers_and_the_books_file_its_keys_only(responses):
    records = json.loads(responses.read_text())
    assert len(records) == 6
    for record in records:
        assert {"instruction", "input", "output", "index", "base_response", "tuned_response"} <= set(record)
        assert "_meta" not in record
    book = json.loads((responses.parent / "instruction-data-with-response.json").read_text())
    assert [set(r) for r in book] == [{"instruction", "input", "output", "model_response"}] * 6
    assert [r["model_response"] for r in book] == [r["tuned_response"] for r in records]
    meta = json.loads((responses.parent / "grading.json").read_text())
    assert meta["split"] == "test" and meta["indices"] == [r["index"] for r in records]


def test_a_run_is_graded_on_its_own_test_split_never_on_what_it_trained_on(responses, graded_run):
    """The run trained with seed 7 and split seed 7; seed 123's test split overlaps its training split."""
    saved = json.loads((graded_run / "runs" / "seed-7" / "data.json").read_text())["indices"]
    graded = [r["index"] for r in json.loads(responses.read_text())]
    assert graded == saved["test"][:6]
    assert not set(graded) & set(saved["train"])


def test_gradings_of_other_sizes_keep_their_files_and_the_same_grading_is_reused(manager, responses):
    before = responses.read_bytes()
    three = evaluation.generate_responses(manager, "seed-7", "test", 3, GenerationSettings(max_new_tokens=12))
    assert three.parent != responses.parent and three.parent.name.startswith("test-3-")
    assert responses.read_bytes() == before
    first = [r["tuned_response"] for r in json.loads(responses.read_text())][:3]
    assert [r["tuned_response"] for r in json.loads(three.read_text())] == first  # the same block, whatever the limit
    mtime = three.stat().st_mtime_ns
    again = evaluation.generate_responses(manager, "seed-7", "test", 3, GenerationSettings(max_new_tokens=12))
    assert again == three and three.stat().st_mtime_ns == mtime


def test_gradings_by_different_judges_keep_their_scores(responses, tmp_path):
    with OllamaStandin(reply=lambda request: "70") as server:
        one = evaluation.grade_responses(responses, judge.JudgeSettings(host=server.url, backoff=0.01),
                                         tmp_path / "cache.jsonl")
        two = evaluation.grade_responses(responses, judge.JudgeSettings(host=server.url, model="llama3:70b",
                                                                        backoff=0.01), tmp_path / "cache.jsonl")
    assert one.scores_path != two.scores_path and one.scores_path.exists() and two.scores_path.exists()
    assert one.scores_path.parent == responses.parent and "llama3_70b" in two.scores_path.name


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
    lines = cache.read_text().splitlines()
    scored = {(row["instruction"], row[f"{side}_response"]) for row in partial.rows for side in ("base", "tuned")
              if row.get(f"{side}_status") == "scored"}
    assert len(lines) == len(scored)  # everything answered is kept, each prompt once

    asked = {request["messages"][0]["content"] for request in answered}
    missing = [item for item in judge.items_from_responses(records)
               if judge.render_prompt(item, settings) not in asked]
    assert missing
    with OllamaStandin(reply=scripted_score) as second:  # the server is back (on another port)
        settings.host = second.url
        full = evaluation.grade_responses(responses, settings, cache)
        # asks only for what is missing, and a prompt two items share only once
        assert len(second.requests) == len({judge.render_prompt(item, settings) for item in missing})
    assert full.summary["base"]["average"] == pytest.approx(expected_average(records, "base"))
    assert full.summary["tuned"]["average"] == pytest.approx(expected_average(records, "tuned"))


def test_the_scores_file_says_why_answers_were_not_graded(responses, tmp_path):
    from ollama_standin import Fault

    with OllamaStandin(reply=scripted_score) as server:
        server.script.extend([Fault("503")])
        settings = judge.JudgeSettings(host=server.url, concurrency=1, retries=0, backoff=0.01)
        result = evaluation.grade_responses(responses, settings, tmp_path / "cache.jsonl")
    failed = [(row, side) for row in result.rows for side in ("base", "tuned") if row.get(f"{side}_status") == "error"]
    assert len(failed) == 1
    row, side = failed[0]
    assert row[f"{side}_error"].startswith("HTTP 503: ") and "busy" in row[f"{side}_error"]
    saved = json.loads(result.scores_path.read_text())
    assert saved["summary"][side]["problems"][0]["kind"] == "HTTP 503"
    line = next(text for text in evaluation.summary_lines(result.summary) if text.startswith(side.capitalize()))
    assert "errors 1 (1 HTTP 503), skipped 0" in line
    assert any("busy" in warning for warning in result.summary["warnings"])


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


def test_judge_command_grades_a_responses_file_and_never_writes_over_it(tmp_path):
    """The README's example name; the file is the user's, so it is only read, and grading it twice works."""
    path = tmp_path / "instruction-data-with-response.json"
    judge.write_responses(path, [{"instruction": f"Say {i}.", "input": "", "output": str(i),
                                  "model_response": str(i)} for i in range(4)])
    original = path.read_bytes()
    with OllamaStandin(reply=lambda request: "Score: 70") as server:
        for _ in range(2):
            result = subprocess.run([sys.executable, "-m", "playground", "judge", "--responses", str(path),
                                     "--host", server.url, "--concurrency", "2"],
                                    cwd=ROOT, capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, result.stderr[-2000:]
            assert "Tuned: average 70.0 [95% interval 70.0–70.0] (scored 4 of 4; unparsed 0" in result.stdout
        assert len(server.requests) == 4  # the second grading came from the cache
    assert path.read_bytes() == original
    scores = [p for p in tmp_path.iterdir() if ".scores-llama3-" in p.name]
    assert len(scores) == 1 and f"scores: {scores[0]}" in result.stdout
    metrics_only = subprocess.run([sys.executable, "-m", "playground", "judge", "--responses", str(path),
                                   "--no-judge"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert metrics_only.returncode == 0, metrics_only.stderr[-2000:]
    assert path.read_bytes() == original and (tmp_path / f"{path.stem}.scores-metrics.json").exists()


def test_judge_command_grades_a_run_from_the_command_line(graded_run, tmp_path):
    with OllamaStandin(reply=lambda request: "55") as server:
        result = subprocess.run([sys.executable, "-m", "playground", "judge", "--run", "seed-7", "--limit", "2",
                                 "--max-new-tokens", "8", "--host", server.url, "--models-dir", str(graded_run)],
                                cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Base: average 55.0 [95% interval 55.0–55.0] (scored 2 of 2" in result.stdout
    assert "/runs/seed-7/judge/test-2-" in result.stdout


def test_the_same_answers_asked_for_by_two_pages_at_once_are_generated_once(manager, monkeypatch):
    """Issue: the same grading started from two pages generated (and wrote) its answers twice at once."""
    from playground import generation

    calls = []
    real = generation.generate

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(generation, "generate", counting)
    paths = []
    threads = [threading.Thread(target=lambda: paths.append(evaluation.generate_responses(
        manager, "seed-7", "test", 5, GenerationSettings(max_new_tokens=10)))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert len(paths) == 2 and paths[0] == paths[1] and len(judge.read_responses(paths[0])) == 5
    assert len(calls) == 1  # one block of 5 examples, generated by one page; the other waited and read it


def test_a_limit_below_one_is_refused_not_called_an_empty_split(manager):
    with pytest.raises(PlaygroundError, match=r"must be at least 1, not -5"):
        evaluation.generate_responses(manager, "seed-7", "test", -5, GenerationSettings(max_new_tokens=4))


def test_grading_with_other_data_is_refused(manager, tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps([{"instruction": f"Say {i}.", "output": str(i)} for i in range(30)]))
    from playground import data

    with pytest.raises(PlaygroundError, match="is not the data run seed-7 trained on"):
        evaluation.generate_responses(manager, "seed-7", "test", 2, GenerationSettings(max_new_tokens=4),
                                      dataset=data.load(str(other)))


def test_judge_command_without_a_server_says_how_to_start_it(tmp_path):
    path = tmp_path / "r.json"
    judge.write_responses(path, [{"instruction": "a", "input": "", "output": "b", "model_response": "b"}])
    result = subprocess.run([sys.executable, "-m", "playground", "judge", "--responses", str(path),
                             "--host", "http://127.0.0.1:9"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "error: " in result.stderr and "ollama serve" in result.stderr


def test_a_run_whose_data_is_gone_is_not_graded_on_other_data(tiny_model_dir, tmp_path):
    """The Judge tab used to grade the session's dataset when the run's file was gone; now it says so."""
    from playground import data, run_data
    from tests_helpers import train_tiny_run

    path = tmp_path / "uploaded.json"
    path.write_text(json.dumps([{"instruction": f"Repeat {i}.", "output": f"{i} {i}"} for i in range(20)]))
    models = tmp_path / "store"
    train_tiny_run(tiny_model_dir, models, "gone", data.load(str(path)), max_steps=1)
    path.unlink()
    for snapshot in run_data.snapshots_dir(models).iterdir():
        snapshot.unlink()
    manager = ModelManager(models, tokenizer_spec=str(tiny_model_dir))
    with pytest.raises(PlaygroundError, match=r"uploaded.json\) cannot be found unchanged: its origin: .*no such file"):
        evaluation.generate_responses(manager, "gone", "test", 2, GenerationSettings(max_new_tokens=4))
    assert not (models / "runs" / "gone" / "judge").exists()


def test_reference_metrics_only_get_their_own_report_and_leave_the_judge_grading_quoted(graded_run, tiny_model_dir,
                                                                                         tmp_path):
    """Issue: a metrics-only grading drew empty judge charts and blank columns, and hid the last judge
    grading from Compare. Now it has per-example ROUGE-L and exact match, and the judge's stays quoted."""
    import shutil

    from playground import comparison, metrics
    from playground.ui import judge_report

    shutil.copytree(graded_run / "runs" / "seed-7", tmp_path / "runs" / "seed-7",
                    ignore=shutil.ignore_patterns("judge"))  # a run of its own, never graded
    own = ModelManager(tmp_path, tokenizer_spec=str(tiny_model_dir))
    path = evaluation.generate_responses(own, "seed-7", "test", 6, GenerationSettings(max_new_tokens=12))
    with OllamaStandin(reply=lambda request: "64") as server:
        evaluation.grade_responses(path, judge.JudgeSettings(host=server.url, backoff=0.01), tmp_path / "cache.jsonl")
    evaluation.grade_responses(path, judge.JudgeSettings(), None, use_judge=False)

    latest = evaluation.latest_grading(tmp_path, "seed-7")
    assert not judge_report.is_judged(latest) and latest["summary"].get("base") is None
    for row in latest["rows"]:
        assert row["tuned_rouge_l"] == pytest.approx(metrics.rouge_l(row["tuned_response"], row["reference"]))
        assert row["rouge_l_difference"] == pytest.approx(row["tuned_rouge_l"] - row["base_rouge_l"])
        assert row["tuned_exact"] == (metrics.exact_match(row["tuned_response"], row["reference"])
                                      if row["exact"] else None)
    cards, scores, groups, frame, widths, ordered = judge_report.views(latest)
    assert "base ROUGE-L" in frame.columns and "base" not in frame.columns and len(widths) == len(frame.columns)
    assert frame["tuned ROUGE-L"].notna().all()
    assert [r["rouge_l_difference"] for r in ordered] == sorted(r["rouge_l_difference"] for r in ordered)
    assert sum(len(trace.x) for trace in scores.data) == 12 and all(0 <= x <= 1 for t in scores.data for x in t.x)
    assert groups is not None and all(0 <= y <= 1 for t in groups.data for y in t.y if y is not None)
    assert "ROUGE-L" in cards

    quoted = evaluation.quoted_grading(tmp_path, "seed-7")
    assert judge_report.is_judged(quoted) and quoted["summary"]["tuned"]["average"] == 64
    assert comparison.summarize(tmp_path, "seed-7").grading["tuned judge average"] == 64
    judged_frame = judge_report.views(quoted)[3]
    assert list(judged_frame["tuned"]) == [64] * 6
