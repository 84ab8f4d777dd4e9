"""The judge against a real OpenAI-compatible server: llama.cpp's server with the default model's GGUF.

The base model is a poor judge (it answers with prose or nothing), so these tests check the
accounting: every item scored or unparsed with its raw reply, nothing lost or turned into 0, the
same requests whatever the concurrency, cached replies repeated, prompts that do not fit refused,
and failures explained and resumed.
"""

import threading

import pytest

from llama_server import MODEL, LlamaServer
from playground import judge
from playground.judge import JudgeCache, JudgeItem, JudgeSettings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server():
    with LlamaServer(n_ctx=1024) as running:
        yield running


def settings_for(server, **changes):
    values = {"api": "openai", "host": server.url, "model": MODEL, "max_reply_tokens": 16, "timeout": 60,
              "backoff": 0.05, "concurrency": 2}
    return JudgeSettings(**{**values, **changes})


def items(n, text="answer"):
    return [JudgeItem(str(k), f"What is {k} plus {k}?", "", str(2 * k), f"{text} {2 * k + k % 2}", "tuned")
            for k in range(1, n + 1)]


def test_preflight_finds_the_model_and_names_a_wrong_one(server):
    status = judge.preflight(settings_for(server))
    assert status.ok and status.model == MODEL and MODEL in status.message
    wrong = judge.preflight(settings_for(server, model="llama3"))
    assert wrong.state == "model_missing"
    assert "no model 'llama3'" in wrong.message and MODEL in wrong.message


def test_every_item_ends_scored_or_unparsed_with_its_reply_never_as_zero(server):
    judgments = judge.grade(items(6), settings_for(server))
    assert len(judgments) == 6
    assert {j.status for j in judgments} <= {"scored", "unparsed"}
    for j in judgments:
        assert j.requests >= 1 and j.prompt_tokens and j.prompt_tokens > 50
        if j.status == "unparsed":
            assert j.score is None
            assert j.requests == 2 and "[asked again]" in j.reply  # asked once more, both replies kept
        else:
            assert str(j.score) in j.reply
    summary = judge.summarize(judgments)["tuned"]
    assert summary["scored"] + summary["unparsed"] == 6 and summary["errors"] == 0


def test_concurrency_sends_the_same_requests_and_keeps_each_reply_with_its_item(server, tmp_path):
    # llama.cpp reuses the previous request's cached prefix, so a 270M model's near-tied greedy
    # choices can differ between request orders; what must not differ is what was asked.
    one = judge.grade(items(4), settings_for(server, concurrency=1))
    again = judge.grade(items(4), settings_for(server, concurrency=4))
    assert [j.key for j in again] == ["1", "2", "3", "4"]
    assert [j.prompt_tokens for j in one] == [j.prompt_tokens for j in again]
    assert all(j.prompt_tokens > 50 for j in one)
    assert all(j.status in ("scored", "unparsed") and j.reply for j in one + again)
    # A grading repeated with its cache answers exactly as the first time, without asking.
    cache = JudgeCache(tmp_path / "cache.jsonl")
    first = judge.grade(items(4), settings_for(server, concurrency=4), cache)
    repeat = judge.grade(items(4), settings_for(server, concurrency=4), JudgeCache(tmp_path / "cache.jsonl"))
    assert [(j.reply, j.status, j.score) for j in first] == [(j.reply, j.status, j.score) for j in repeat]
    assert all(j.cached for j in repeat) and not any(j.cached for j in first)


def test_a_prompt_longer_than_the_context_is_refused_never_graded(server):
    long = JudgeItem("1", "Summarise the text.", "", "A summary.", "word " * 1500, "tuned")
    short = items(1)[0]
    long_judgment, short_judgment = judge.grade([long, short], settings_for(server))
    assert long_judgment.status == "error" and long_judgment.truncated and long_judgment.score is None
    assert "does not fit the judge model's context" in long_judgment.error
    assert short_judgment.status in ("scored", "unparsed") and not short_judgment.truncated
    assert judge.summarize([long_judgment, short_judgment])["tuned"]["truncated"] == 1


def test_server_down_is_explained_and_nothing_else_is_asked():
    down = settings_for(LlamaServer())  # a free port where nothing listens
    status = judge.preflight(down)
    assert status.state == "server_down" and "Cannot reach an OpenAI-compatible server" in status.message
    judgments = judge.grade(items(3), down)
    assert any(j.status == "error" and j.kind == "server unreachable" for j in judgments)
    assert all(j.status in ("error", "skipped") for j in judgments)
    assert all("Cannot reach" in j.error for j in judgments)


def test_a_server_killed_mid_run_keeps_what_it_answered_and_the_next_run_asks_only_the_rest(tmp_path):
    cache = JudgeCache(tmp_path / "cache.jsonl")
    first = LlamaServer(n_ctx=1024).start()
    killed = threading.Event()

    def progress(done, total):
        if done >= 3 and not killed.is_set():
            killed.set()
            first.stop()

    try:
        partial = judge.grade(items(8), settings_for(first, concurrency=1, retries=1, timeout=20), cache,
                              on_progress=progress)
    finally:
        first.stop()
    answered = [j for j in partial if j.status in ("scored", "unparsed")]
    assert 3 <= len(answered) < 8
    assert all(j.status in ("error", "skipped") and j.error for j in partial if j not in answered)
    assert len(JudgeCache(tmp_path / "cache.jsonl")) == len(answered)  # kept on disk as they came

    with LlamaServer(n_ctx=1024) as second:
        full = judge.grade(items(8), settings_for(second), JudgeCache(tmp_path / "cache.jsonl"))
    assert {j.status for j in full} <= {"scored", "unparsed"}
    assert sum(j.cached for j in full) == len(answered)
    assert all(j.requests == 0 for j in full if j.cached) and all(j.requests >= 1 for j in full if not j.cached)
    assert [j.reply for j in full[:len(answered)]] == [j.reply for j in answered]


def test_judge_command_grades_a_run_on_the_real_server_and_prints_the_report_card(server, graded_run):
    import subprocess
    import sys
    from pathlib import Path

    result = subprocess.run([sys.executable, "-m", "playground", "judge", "--run", "seed-7", "--limit", "3",
                             "--max-new-tokens", "8", "--api", "openai", "--host", server.url, "--judge-model", MODEL,
                             "--max-reply-tokens", "16",
                             "--models-dir", str(graded_run)],
                            cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "Base: average" in out and "Tuned: average" in out and "(scored " in out
    assert f"Judge: {MODEL} (size unknown) via openai at {server.url}; prompt default" in out
    assert "'max_tokens': 16" in out  # the reply limit asked for, as the protocol sends it
    assert ("warning: Only" in out or "warning: One side has no scored example" in out) and "warning: The judge's size is not reported" in out
    scores = next(line for line in out.splitlines() if line.startswith("scores: ")).split(": ", 1)[1]
    assert Path(scores).name.startswith(f"scores-{MODEL}-")
