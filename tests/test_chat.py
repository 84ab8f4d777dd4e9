"""Chat: multi-turn prompts, votes, the chat command, and memory with both sides on one copy of the weights."""

import subprocess
import sys
from pathlib import Path

import pytest

from playground import prompts, store
from playground.data import Record
from playground.manager import ModelManager
from playground.training import TrainConfig, lora_config
from playground.votes import save_vote, tally
from playground.ui.chat_tab import panes

ROOT = Path(__file__).resolve().parent.parent


class Alpaca:
    eos_token = "<eos>"


def test_a_conversation_writes_every_turn_in_the_runs_style():
    history = [prompts.Turn("Add 2 and 3.", "5"), prompts.Turn("Translate to French.", "chat", "cat")]
    prompt = prompts.conversation(history, "And to German?", "alpaca", Alpaca(), input_text="cat")
    first = prompts.render(Record("Add 2 and 3.", "", "5"), "alpaca", Alpaca())
    assert prompt.text.startswith(first.prompt + "5\n\n")
    assert "### Instruction:\nTranslate to French.\n\n### Input:\ncat\n\n### Response:\nchat\n\n" in prompt.text
    assert prompt.text.endswith("### Instruction:\nAnd to German?\n\n### Input:\ncat\n\n### Response:\n")
    raw = prompts.conversation(history, "And to German?", "alpaca", Alpaca(), raw=True)
    assert raw.text == "Add 2 and 3.5\nTranslate to French.\n\ncatchat\nAnd to German?"


def test_chat_panes_are_drawn_from_the_conversation_as_text():
    turns = [{"message": "Say hi.", "input": "", "base": "### Response: hi", "tuned": "Hi!"},
             {"message": "Translate.", "input": "cat", "base": "b", "tuned": "chat"}]
    left, right = panes(turns, tuned_is_left=False)
    assert [m["content"] for m in left] == ["Say hi.", "### Response: hi", "Translate.\n\ncat", "b"]
    assert [m["content"] for m in right][1::2] == ["Hi!", "chat"]
    assert panes(turns, tuned_is_left=True) == (right, left)


@pytest.mark.slow
def test_memory_with_both_is_within_five_percent_on_the_default_model(tmp_path):
    """The real default model with a LoRA adapter of the default settings on its shared weights."""
    manager = ModelManager(tmp_path)
    (tmp_path / store.DEFAULT_NAME).symlink_to(store.ensure_default_model(), target_is_directory=True)
    loaded = manager.model(store.DEFAULT)
    base_alone = manager.memory_report()
    loaded.weights.add_trainable_adapter("run", lora_config(TrainConfig()))
    both = manager.memory_report()
    assert both["base"] == base_alone["base"] and base_alone["adapters"] == 0 and both["full_copies"] == 0
    assert 0 < both["adapters"] < 0.05 * both["base"]


def test_votes_are_saved_with_the_run_as_text(tiny_run):
    save_vote(tiny_run, "tiny-run", "Repeat the word apple.", "", "tuned", "left")
    save_vote(tiny_run, "tiny-run", "Translate.", "cat", "tie", "right")
    assert tally(tiny_run, "tiny-run") == {"tuned": 1, "base": 0, "tie": 1, "both_bad": 0}
    lines = (tiny_run / "runs" / "tiny-run" / "votes.jsonl").read_text().splitlines()
    assert '"prompt": "Translate.", "input": "cat"' in lines[-1]


def test_chat_command(tiny_run):
    result = subprocess.run([sys.executable, "-m", "playground", "chat", "--run", "tiny-run", "--prompt",
                             "Repeat the word maple.", "--max-new-tokens", "8", "--models-dir", str(tiny_run)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    base, tuned = result.stdout.split("\n\nTuned:\n")
    assert base.startswith("Base:\n") and tuned.strip() and tuned.strip() != base[len("Base:\n"):].strip()
    assert "memory (parameters): base alone" in result.stderr


def test_switching_blind_mode_says_why_the_conversation_went():
    from playground.ui.chat_tab import blind_switched

    turn = {"message": "Hi", "input": "", "base": "a", "tuned": "b"}
    left, right, turns, _, revealed, _, _, vote_row, said, reference = blind_switched(True, [turn, turn])
    assert left == right == turns == [] and reference == "" and revealed is False
    assert "Blind A/B on" in said and "the 2 earlier messages cleared" in said
    assert "Blind A/B off" in blind_switched(False, [turn])[8]
    assert blind_switched(True, [])[8] == ""  # nothing was lost: nothing to say


def test_a_reload_brings_back_the_conversation_of_a_run_still_listed(tiny_run, tiny_model_dir):
    from playground.ui.chat_tab import SAVED, kept_chat, restored_chat
    from playground.ui.common import run_choices

    manager = ModelManager(tiny_run, tokenizer_spec=str(tiny_model_dir), dtype="float32")
    assert "tiny-run" in [value for _, value in run_choices(manager)]
    turn = {"message": "Hi", "input": "", "base": "a", "tuned": "b"}
    saved = kept_chat({"other": 1}, [turn], "tiny-run", "", True, True, False)
    assert saved["other"] == 1 and saved[SAVED]["turns"] == [turn]
    run, _, blind, tuned_left, revealed, turns, left, right, left_name, right_name, vote_row, against = \
        restored_chat(manager, saved)
    assert against["value"] == "base"  # compared with the base model
    older = {SAVED: {key: value for key, value in saved[SAVED].items() if key != "against"}}
    assert restored_chat(manager, older)[5] == [turn]  # kept before "Compare with" existed: against the base
    assert run["value"] == "tiny-run" and turns == [turn] and blind and tuned_left and not revealed
    assert left[1]["content"] == "b" and right[1]["content"] == "a"  # the tuned model stays on its side
    assert "Model A" in left_name and vote_row["visible"]  # still blind: the vote is still open

    damaged = {SAVED: {**saved[SAVED], "turns": [turn, {"message": 3}, "junk"]}}
    assert restored_chat(manager, damaged)[5] == [turn]  # what is not a turn is left out
    gone = {SAVED: {**saved[SAVED], "run": "no-such-run"}}
    assert restored_chat(manager, gone)[5] == []  # not shown with another run's answers
    assert restored_chat(manager, None)[5] == []
