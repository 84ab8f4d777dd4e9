"""The report card (intervals, pairwise, length control, groups, agreement) and the book's prompt."""

import json
import re

import numpy as np
import pytest

from ollama_standin import OllamaStandin
from playground import evaluation, judge, metrics, runs
from playground.errors import PlaygroundError
from playground.judge import JudgeItem, JudgeSettings
from playground.judge import report as card
from playground.judge.runner import PairJudgment


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_data():
    rng = np.random.default_rng(1)
    few, many = rng.normal(60, 15, 20), rng.normal(60, 15, 400)
    low, high = card.bootstrap_interval(few)
    assert low < few.mean() < high
    many_low, many_high = card.bootstrap_interval(many)
    assert many_high - many_low < (high - low) / 2
    assert card.bootstrap_interval(few) == [low, high]  # seeded: the same report twice
    assert card.bootstrap_interval([70]) is None and card.bootstrap_interval([70, 70]) == [70.0, 70.0]


def test_length_control_removes_a_win_bought_by_length():
    """A judge that prefers the longer answer, no preference at equal length, and a tuned model that
    writes longer: raw win rate high, length-controlled about half."""
    rng = np.random.default_rng(0)
    differences = rng.normal(20, 20, 400)
    outcomes = (rng.random(400) < 1 / (1 + np.exp(-differences / 5))).astype(float)
    raw = outcomes.mean()
    controlled = card.length_controlled_win_rate(outcomes, differences)
    assert raw > 0.8 and abs(controlled - 0.5) < 0.1
    # a real preference at equal length survives the control
    fair = (rng.random(400) < 0.8).astype(float)
    assert card.length_controlled_win_rate(fair, differences) > 0.7
    assert card.length_controlled_win_rate([1.0, 0.0], [5, 5]) == 0.5  # no spread: the raw rate


def rows_for(scores):
    return [{"#": n, "group": group, "exact": exact, "reference": "Paris", "base_response": base_text,
             "tuned_response": tuned_text, "base_score": base, "tuned_score": tuned}
            for n, (group, exact, base_text, tuned_text, base, tuned) in enumerate(scores, start=1)]


def test_groups_and_agreement_with_exact_match():
    rows = rows_for([("capitals", True, "Lyon", "Paris", 20, 90), ("capitals", True, "Paris", "Paris", 80, 40),
                     ("poems", False, "a b c", "a b c d e f", 30, 60)])
    groups = card.by_group(rows, "group")
    assert groups["capitals"] == {"examples": 2, "base_average": 50.0, "tuned_average": 65.0, "tuned_win_rate": 0.5}
    assert groups["poems"]["tuned_win_rate"] == 1.0
    agreement = card.exact_agreement(rows, metrics.exact_match)
    # base Lyon 20 (wrong, low: agree), base Paris 80 (right, high: agree), tuned Paris 90 (agree), tuned Paris 40
    assert agreement == {"answers": 4, "agree": 3, "pass_mark": 50, "mean_score_when_exact": 70.0,
                         "mean_score_when_not": 20.0}
    length = card.length_report(rows, None)
    assert length["verdicts_from"] == "scores" and length["tuned_win_rate"] == pytest.approx(2 / 3)
    assert length["base_mean_words"] == pytest.approx(5 / 3) and length["tuned_mean_words"] == pytest.approx(8 / 3)


def test_pairwise_counts_orders_that_disagree_as_ties():
    pairs = [PairJudgment("1", "tuned", "tuned", ("scored", "scored"), ("A", "B")),
             PairJudgment("2", "base", "tuned", ("scored", "scored"), ("B", "A")),
             PairJudgment("3", "base", "base", ("scored", "scored"), ("B", "A")),
             PairJudgment("4", None, "tuned", ("unparsed", "scored"), ("?", "A"))]
    summary = card.summarize_pairwise(pairs)
    assert (summary["tuned_wins"], summary["ties"], summary["base_wins"], summary["judged"]) == (1, 1, 1, 3)
    assert summary["tuned_win_rate"] == 0.5 and summary["swap_consistency"] == pytest.approx(2 / 3)
    assert summary["unparsed"] == 1


def test_warnings_name_small_samples_and_small_judges():
    summary = {"tuned": {"scored": 20, "truncated": 1, "unparsed": 2}, "base": {"scored": 60}}
    found = card.warnings(summary, "8.0B")
    assert any("Only 20 scored" in w for w in found) and any("8.0B" in w for w in found)
    assert any("1 tuned prompts did not fit" in w for w in found) and any("2 tuned replies" in w for w in found)
    assert not any("Only" in w for w in card.warnings({"tuned": {"scored": 50}}, "70B"))
    assert any("not reported" in w for w in card.warnings({}, ""))


BOOK_ENTRY = {"instruction": "Rewrite the sentence using a simile.", "input": "The car is very fast.",
              "output": "The car is as fast as lightning.", "model_response": "The car is as fast as a bullet."}


def book_prompt(entry):
    """ollama_evaluate.py's prompt, written out here as the book's script builds it."""
    formatted = ("Below is an instruction that describes a task. Write a response that appropriately completes "
                 f"the request.\n\n### Instruction:\n{entry['instruction']}"
                 + (f"\n\n### Input:\n{entry['input']}" if entry["input"] else ""))
    return (f"Given the input `{formatted}` and correct output `{entry['output']}`, score the model response "
            f"`{entry['model_response']}` on a scale from 0 to 100, where 100 is the best score. "
            "Respond with the integer number only.")


@pytest.mark.parametrize("entry", [BOOK_ENTRY, {**BOOK_ENTRY, "input": ""}])
def test_the_books_prompt_byte_for_byte(entry):
    item = JudgeItem("1", entry["instruction"], entry["input"], entry["output"], entry["model_response"])
    assert judge.render_prompt(item, JudgeSettings(prompt="book")) == book_prompt(entry)


def test_the_books_prompt_goes_out_with_the_books_options_and_reading(tmp_path):
    replies = {"1": "85", "2": "Score: 85"}  # the book's int() reads only the first

    def reply(request):
        return replies["1" if "bullet" in request["messages"][0]["content"] else "2"]

    entries = [BOOK_ENTRY, {**BOOK_ENTRY, "model_response": "Fast."}, {**BOOK_ENTRY, "model_response": ""}]
    path = tmp_path / "instruction-data-with-response.json"
    path.write_text(json.dumps(entries))
    with OllamaStandin(reply=reply) as server:
        settings = JudgeSettings(host=server.url, prompt="book", backoff=0.01)
        result = evaluation.grade_responses(path, settings, tmp_path / "cache.jsonl")
        assert len(server.requests) == 2  # not asked again; the empty response is not asked at all
        assert all(r["options"] == {"temperature": 0.0, "seed": 123, "num_ctx": 2048} for r in server.requests)
        assert book_prompt(BOOK_ENTRY) in [r["messages"][0]["content"] for r in server.requests]
    statuses = [(row["tuned_status"], row["tuned_score"]) for row in result.rows]
    assert statuses == [("scored", 85), ("unparsed", None), ("scored", 0)]
    assert "scores it 0 without asking" in result.rows[2]["tuned_reply"]


def test_the_report_card_is_saved_with_what_was_used(tmp_path):
    path = tmp_path / "answers.json"
    path.write_text(json.dumps([{"instruction": f"Say {i}.", "input": "", "output": str(i), "task": f"family {i % 2}",
                                 "exact": True, "base_response": "no", "tuned_response": str(i)} for i in range(6)]))

    def reply(request):
        prompt = request["messages"][0]["content"]
        if "Response A" in prompt:  # pairwise: the tuned answer (a number) is better than "no"
            return "B" if re.search(r"<<<A-\w+>>>\nno\n", prompt) else "A"
        return "10" if "\nno\n" in prompt else "90"

    with OllamaStandin(reply=reply) as server:  # it reports an 8.0B llama3 with a digest
        settings = JudgeSettings(host=server.url, backoff=0.01)
        status = judge.preflight(settings)
        result = evaluation.grade_responses(path, settings, None, pairwise=True, server=status)
    saved = json.loads(result.scores_path.read_text())
    facts, summary = saved["judge"], saved["summary"]
    assert facts["backend"] == "ollama" and facts["model"] == "llama3:latest" and facts["parameters"] == "8.0B"
    assert facts["digest"] and facts["template_sha256"] and facts["options"]["num_ctx"] == 4096
    assert summary["tuned"]["average"] == 90 and summary["base"]["average"] == 10
    assert summary["tuned"]["interval"] == [90.0, 90.0]
    assert set(summary["groups"]["values"]) == {"family 0", "family 1"}
    assert summary["exact_agreement"]["agree"] == 12
    assert summary["length"]["verdicts_from"] == "pairwise"
    assert any("8.0B" in w for w in summary["warnings"]) and any("Only 6" in w for w in summary["warnings"])
    assert all(row["tuned_reply"] == "90" for row in saved["rows"])
    lines = evaluation.summary_lines(summary, facts)
    assert any(line.startswith("Judge: llama3:latest (8.0B, digest") for line in lines)


def test_the_tab_lists_worst_regressions_first_and_the_drill_down_says_why_a_score_is_missing():
    from playground.ui import judge_report

    rows = [{"record": 5, "group": "a", "instruction": "i5", "reference": "r", "base_response": "b", "tuned_response": "t",
             "base_score": 40, "tuned_score": 90, "difference": 50, "base_status": "scored", "tuned_status": "scored",
             "base_reply": "40", "tuned_reply": "90"},
            {"record": 7, "group": "b", "instruction": "i7", "reference": "r", "base_response": "b", "tuned_response": "t",
             "base_score": 80, "tuned_score": None, "base_status": "scored", "tuned_status": "error",
             "tuned_error": "timeout: No answer within 120 s"},
            {"record": 9, "group": "a", "instruction": "i9", "reference": "r", "base_response": "b", "tuned_response": "t",
             "base_score": 90, "tuned_score": 30, "difference": -60, "base_status": "scored", "tuned_status": "scored"}]
    ordered = judge_report.sorted_rows(rows)
    assert [r["record"] for r in ordered] == [9, 5, 7]
    frame = judge_report.table(ordered, "task")
    assert list(frame.columns) == ["record", "task", "base", "tuned", "Δ", "instruction", "tuned answer", "base answer"]
    rows[0]["pairwise"] = "tuned"
    assert "pairwise" in judge_report.table(judge_report.sorted_rows(rows)).columns
    detail = judge_report.drill_down(ordered[2])
    assert "Record 7" in detail and "timeout: No answer within 120 s" in detail and "score – (error)" in detail
    assert "The judge&#x27;s reply (base)" not in detail  # no reply saved for it: nothing invented


def test_the_latest_grading_of_a_run_is_read_back_with_its_files(tmp_path):
    runs.RunWriter(tmp_path, "run-1", {"settings": {}})
    folder = evaluation.judge_dir(tmp_path, "run-1")
    assert evaluation.latest_grading(tmp_path, "run-1") is None
    for name, average in (("test-3-aaaa", 10.0), ("test-5-bbbb", 20.0)):
        (folder / name).mkdir(parents=True)
        (folder / name / "responses.json").write_text("[]")
        (folder / name / "scores-llama3-x.json").write_text(json.dumps(
            {"judge": {"used": False}, "summary": {"tuned": {"average": average}}, "rows": []}))
    import os
    os.utime(folder / "test-3-aaaa" / "scores-llama3-x.json", (1, 1))  # the older one
    saved = evaluation.latest_grading(tmp_path, "run-1")
    assert saved["grading"] == "test-5-bbbb" and saved["summary"]["tuned"]["average"] == 20.0
    assert [os.path.basename(f) for f in saved["files"]] == ["responses.json", "scores-llama3-x.json"]
    (folder / "test-5-bbbb" / "scores-llama3-x.json").write_text('{"cut')  # scores are written whole: this is damage
    with pytest.raises(PlaygroundError, match="Run run-1 is damaged: judge/test-5-bbbb/scores-llama3-x.json: cut short"):
        evaluation.latest_grading(tmp_path, "run-1")


def test_the_report_names_the_options_the_protocol_sends():
    ollama = JudgeSettings()
    assert evaluation.judge_facts(ollama, None, True)["options"] == {"temperature": 0.0, "seed": 123, "num_ctx": 4096,
                                                                      "num_predict": 512}
    openai = JudgeSettings(api="openai", prompt="book")
    assert evaluation.judge_facts(openai, None, True)["options"] == {"temperature": 0.0, "seed": 123, "max_tokens": 512}
