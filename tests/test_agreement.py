"""Is the judge right? Its pairwise verdicts against blind votes (agreement, Cohen's kappa), its agreement
with exact match, and judges' scores of the same answers against each other."""

import argparse
import json
import re
import shutil

import numpy as np
import pytest

from ollama_standin import OllamaStandin
from playground import evaluation, judge, runs
from playground.commands import agreement as command
from playground.errors import PlaygroundError
from playground.judge import JudgeSettings, agreement
from playground.ui import judge_report
from playground.votes import save_vote

# (judge's verdict, your vote) per example. Judge: tuned 11, base 6, tie 3; votes (both bad as a tie):
# tuned 10, base 7, tie 3. Agreement p_o = 15/20; by chance p_e = (11*10 + 6*7 + 3*3) / 400 = 161/400;
# kappa = (p_o - p_e) / (1 - p_e) = 0.3475 / 0.5975 = 139/239.
TABLE = ([("tuned", "tuned")] * 8 + [("tuned", "base")] * 2 + [("base", "base")] * 5 + [("base", "tuned")]
         + [("tie", "tie"), ("tie", "both_bad"), ("tie", "tuned"), ("tuned", "tie")])
KAPPA = 139 / 239


def as_verdicts(votes):
    """Votes read as verdicts ("both bad" as a tie)."""
    return [agreement.AS_VERDICT[v] for v in votes]


def test_kappa_of_a_table_computed_by_hand():
    judged, voted = zip(*TABLE)
    found = agreement.verdict_agreement(judged, as_verdicts(voted))
    assert (found["n"], found["agree"], found["share"]) == (20, 15, 0.75)
    assert found["kappa"] == pytest.approx(KAPPA)
    low, high = found["kappa_interval"]
    assert low < KAPPA < high and 0 < low and high < 1
    assert found["share_interval"][0] < 0.75 < found["share_interval"][1]
    assert found["warning"] == ""  # 20 examples: enough


def test_kappa_is_one_when_always_the_same_and_zero_at_chance():
    same = ["tuned"] * 10 + ["base"] * 7 + ["tie"] * 3
    perfect = agreement.verdict_agreement(same, same)
    assert perfect["kappa"] == 1 and perfect["share"] == 1 and perfect["kappa_interval"] == [1.0, 1.0]
    # The votes split 5/5 whatever the judge said: agreement 50%, exactly what chance gives with these habits.
    judged, voted = ["tuned"] * 10 + ["base"] * 10, ["tuned", "base"] * 10
    assert agreement.cohen_kappa(judged, voted) == pytest.approx(0, abs=1e-12)
    assert agreement.cohen_kappa(judged, judged[::-1]) == pytest.approx(-1)  # always the other one
    assert agreement.cohen_kappa(["tie"] * 5, ["tie"] * 5) is None  # one category throughout: undefined
    assert agreement.cohen_kappa([], []) is None


def test_fewer_than_20_examples_are_warned_about():
    judged, voted = zip(*TABLE[:19])
    found = agreement.verdict_agreement(judged, as_verdicts(voted))
    assert found["n"] == 19 and found["warning"].startswith("Only 19 examples have both your vote and the judge's")


def test_judge_correlation_equals_numpy_and_ranks_with_ties_averaged():
    first, second = [10, 20, 20, 40, 50, 50, 50, 90], [15, 25, 20, 60, 40, 45, 80, 85]
    assert agreement.pearson(first, second) == pytest.approx(np.corrcoef(first, second)[0, 1])
    assert list(agreement.average_ranks(first)) == [1, 2.5, 2.5, 4, 6, 6, 6, 8]
    ranks = [1, 2.5, 2.5, 4, 6, 6, 6, 8], [1, 3, 2, 6, 4, 5, 7, 8]
    assert agreement.spearman(first, second) == pytest.approx(np.corrcoef(*ranks)[0, 1])
    assert agreement.spearman(first, second) == pytest.approx(0.8715757936489197)  # scipy.stats.spearmanr's value
    assert agreement.spearman([1, 2, 3, 4], [1, 4, 9, 16]) == 1  # any rising relation, not only a straight line
    assert agreement.pearson([5, 5, 5], [1, 2, 3]) is None  # a judge that never varies has no correlation


# ---------------------------------------------------------------- a run's grading and votes, as the app writes them

JUDGES = ("llama3:latest", "mistral:latest")


def number(prompt):
    """The example a judge prompt is about."""
    return int(re.search(r"Name item (\d+)\.", prompt).group(1))


def reply(request):
    """Pairwise: each example's verdict from TABLE (a tie by answering it); scores: two judges whose
    scores of the same answers differ by a known pattern."""
    prompt = request["messages"][0]["content"]
    item = number(prompt)
    if "Response A" in prompt:
        verdict = TABLE[item][0]
        shown_first = re.search(r"<<<A-\w+>>>\n(\w+)", prompt).group(1)
        return "tie" if verdict == "tie" else "A" if shown_first == verdict else "B"
    side = "tuned" if "\ntuned answer" in prompt else "base"
    score = (40 + 2 * item if side == "tuned" else 20 + (7 * item) % 30)
    return str(score if request["model"] == JUDGES[0] else min(100, score + (item % 5) * 3))


@pytest.fixture(scope="module")
def graded_store(tmp_path_factory):
    """A run with a grading of 20 examples by two judges (the first asked the pairwise question too)."""
    models = tmp_path_factory.mktemp("agreement-store")
    runs.RunWriter(models, "run-1", {"settings": {}})
    folder = evaluation.judge_dir(models, "run-1") / "test-20-0123abcd"
    folder.mkdir(parents=True)
    records = [{"instruction": f"Name item {i}.", "input": "" if i % 2 else f"list {i}", "output": f"item {i}",
                "index": i, "exact": i < 4, "base_response": f"base answer {i}", "tuned_response": f"tuned answer {i}"}
               for i in range(20)]
    judge.write_responses(folder / "responses.json", records)
    runs.write_json(folder / "grading.json", {"run": "run-1", "split": "test", "indices": list(range(20))})
    with OllamaStandin(models=JUDGES, reply=reply) as server:
        for model, pairwise in zip(JUDGES, (True, False)):
            settings = JudgeSettings(host=server.url, model=model, backoff=0.01)
            evaluation.grade_responses(folder / "responses.json", settings, folder.parent / "cache.jsonl",
                                       pairwise=pairwise)
    return models


@pytest.fixture
def graded(graded_store, tmp_path):
    """A copy of `graded_store` of this test's own (its votes are the test's)."""
    shutil.copytree(graded_store / "runs", tmp_path / "runs")
    return tmp_path


def vote(models, item, winner, **extra):
    """A blind vote on example `item`'s prompt and input, as the Chat tab saves it."""
    save_vote(models, "run-1", f"Name item {item}.", "" if item % 2 else f"list {item}", winner, "left", **extra)


def cast_votes(models):
    """A vote per example as TABLE says (one first cast the other way), and votes that must not count."""
    vote(models, 3, "base")  # changed later: the latest vote counts
    for item, (_, winner) in enumerate(TABLE):
        vote(models, item, winner, turn=1, answers={"base": f"base answer {item}", "tuned": f"tuned answer {item}"})
    vote(models, 4, "base", checkpoint=20)  # on a checkpoint, not on the graded final weights
    vote(models, 5, "base", against="other-run")  # against another run, not the base model
    vote(models, 6, "base", turn=2)  # a later message: answered with the conversation before it
    save_vote(models, "run-1", "Name  item 7.\n", "", "tuned", "left")  # a known prompt, spaced otherwise: counts
    save_vote(models, "run-1", "Something never graded.", "", "tuned", "left")


def test_votes_on_the_graded_pair_are_matched_to_the_judges_verdicts(graded):
    cast_votes(graded)
    found = agreement.run_agreement(graded, "run-1")
    assert found["grading"] == "test-20-0123abcd" and found["votes"] == 26
    first, second = found["judges"]
    assert first["model"] == "llama3:latest" and second["votes"] is None  # no pairwise question: no verdicts
    votes = first["votes"]
    assert (votes["n"], votes["agree"], votes["kappa"]) == (20, 15, pytest.approx(KAPPA))
    assert votes["same_answers"] == 19  # example 7's latest vote was saved without the answers
    assert votes["left_out"] == {"earlier votes on the same prompt": 2, "votes on other weights than the graded "
                                 "ones (a checkpoint)": 1, "votes against another model": 1,
                                 "votes on a later message of a conversation": 1,
                                 "votes on prompts this grading does not hold": 1}
    # Examples 0-3 are single-answer ones: no answer is exact, and every score there is under 50.
    assert (first["exact"]["answers"], first["exact"]["agree"]) == (8, 8)
    pair = found["correlations"][0]
    a, b = judges_scores()
    assert (pair["first"], pair["second"], pair["n"]) == ("llama3:latest", "mistral:latest", 40)
    assert pair["n"] == 40 and pair["pearson"] == pytest.approx(np.corrcoef(a, b)[0, 1])
    assert pair["spearman"] == pytest.approx(agreement.pearson(agreement.average_ranks(a), agreement.average_ranks(b)))
    assert pair["warning"] == ""


def judges_scores():
    """Both judges' scores of the 40 answers, in the same order, as `reply` gives them."""
    return [[int(reply({"model": model, "messages": [{"content": f"Name item {item}.\n{side} answer"}]}))
             for item in range(20) for side in ("base", "tuned")] for model in JUDGES]


def test_the_command_prints_the_agreement_and_the_correlation(graded, capsys):
    parser = argparse.ArgumentParser()
    parser.add_argument("--run")
    parser.add_argument("--models-dir")
    command.add_arguments(parser)
    args = parser.parse_args(["--agreement", "--run", "run-1", "--models-dir", str(graded)])
    assert command.print_agreement(args) == 0
    assert "No blind votes on this run" in capsys.readouterr().out
    for item in range(12):  # 12 votes, all as the judge said
        vote(graded, item, TABLE[item][0])
    command.print_agreement(args)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Grading test-20-0123abcd of run run-1: 2 judge(s), 12 blind vote(s)"
    assert lines[2].startswith("  with your votes: agree on 12 of 12 examples (100% [95% interval 100%–100%]); "
                               "Cohen's kappa 1.00 [95% interval 1.00–1.00], n 12")
    assert lines[3].startswith("  warning: Only 12 examples have both your vote")
    assert lines[4] == "  with exact match (score >= 50): agree on 8 of 8 single-answer answers"
    assert lines[5].startswith("mistral:latest (scores-mistral_latest-")
    assert lines[6].startswith("  with your votes: this grading has no pairwise verdicts (grade with --pairwise")
    a, b = judges_scores()
    assert lines[8] == (f"llama3:latest and mistral:latest: Pearson {np.corrcoef(a, b)[0, 1]:.2f}, Spearman "
                        f"{agreement.spearman(a, b):.2f} over 40 answers both scored")
    args.grading = "test-9-nothere"
    with pytest.raises(PlaygroundError, match="no grading 'test-9-nothere'; its gradings: test-20-0123abcd"):
        command.print_agreement(args)


def test_the_report_card_shows_the_agreement_only_when_there_is_data(graded):
    saved = evaluation.latest_grading(graded, "run-1")
    section = judge_report.agreement_section(saved)
    assert "Is the judge right?" in section and "Pearson r" in section  # two judges, no votes yet
    assert "agrees with your votes" not in section
    for item in range(10):
        vote(graded, item, TABLE[item][1])
    section = judge_report.views(saved)[0]
    assert "agrees with your votes on 8 of 10" in section and "Cohen&#x27;s kappa" in section
    assert "your votes left out" not in section
    vote(graded, 30, "tuned")  # a prompt the grading does not hold: the card says why it did not count
    section = judge_report.views(saved)[0]
    assert "your votes left out: votes on prompts this grading does not hold (1)" in section
    assert "n 10" in section and "Only 10 examples have both your vote" in section
    alone = {**saved, "files": [], "judge": {"used": True}}
    assert judge_report.agreement_section(alone) == ""  # a file outside a run: nothing to compare with
    votes = graded / "runs" / "run-1" / "votes.jsonl"
    votes.write_text(votes.read_text() + '{"winner": "maybe"}\n')
    assert "pg-error" in judge_report.agreement_section(saved)  # a damaged votes file says so
    assert json.loads(votes.read_text().splitlines()[0])["winner"] == "tuned"  # and is left as it was
