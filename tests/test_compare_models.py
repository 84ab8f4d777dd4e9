"""Any two models side by side: a run against another run or checkpoint in the Chat tab and the chat
command, the votes on such a pair and the preference pairs made from them."""

import json
import shutil
import threading
from types import SimpleNamespace

import pytest

from playground import preference, prompts, runs
from playground.errors import PlaygroundError
from playground.generation import generate
from playground.manager import ModelManager
from playground.ui import chat_tab
from playground.votes import save_vote, tally
from tests_helpers import run_cli, small_dataset, train_tiny_run

OTHER, OTHER_NAME = "tiny-b@5", "run tiny-b at step 5"  # the second run's checkpoint at step 5
GENERATION = (8, 0, 1, 0, 1, 123)  # max new tokens, temperature, top-p, top-k, repetition penalty, seed


@pytest.fixture(scope="module")
def store(tiny_run, tiny_model_dir, tmp_path_factory):
    """A store of this module's own: the LoRA run 'tiny-run', a second run 'tiny-b' on the same tiny model
    (other data and seed, a checkpoint every 5 steps) and 'elsewhere', a run on another base model
    (a copy of the tiny model in another folder)."""
    models = tmp_path_factory.mktemp("compare-models-store")
    shutil.copytree(tiny_run / "runs" / "tiny-run", models / "runs" / "tiny-run",
                    ignore=shutil.ignore_patterns("votes.jsonl"))  # votes other modules left there
    train_tiny_run(tiny_model_dir, models, "tiny-b", small_dataset(6), max_steps=10, seed=3, checkpoint_every=5,
                   warmup_steps=0)  # no warmup: at step 5 it answers unlike the base model already
    other_model = tmp_path_factory.mktemp("other-base") / "model"
    shutil.copytree(tiny_model_dir, other_model)
    train_tiny_run(other_model, models, "elsewhere", small_dataset(4), max_steps=1)
    return models


@pytest.fixture(scope="module")
def manager(store, tiny_model_dir):
    return ModelManager(store, tokenizer_spec=str(tiny_model_dir), dtype="float32")


UI = SimpleNamespace(**{name: name for name in (
    "message", "input", "left", "right", "turns", "error", "send", "regenerate", "answering", "vote_row")})


def respond(manager, message, against, blind=False):
    """The Chat tab's Send for the run 'tiny-run', run to its end: every update it yielded, merged by component."""
    merged = {}
    for update in chat_tab.respond(manager, UI, threading.Event, False, False, message, "", [], "tiny-run", "",
                                   against, False, blind, False, *GENERATION):
        merged.update(update)
    return merged


def alone(manager, ref, message):
    """The answer one model gives alone, through the generation engine."""
    record = runs.read(manager.models_dir, "tiny-run")
    spec = record.config.model
    tokenizer = manager.tokenizer(spec)
    prompt = prompts.conversation([], message, record.config.style, tokenizer, record.config.template, False)
    return generate([(manager.side(ref, spec), prompt)], tokenizer, record.config.style,
                    chat_tab.settings_from(GENERATION))[0]


def test_two_runs_answer_side_by_side_each_with_its_own_adapter(manager):
    message = "Repeat the word maple."
    shown = respond(manager, message, OTHER, blind=True)
    assert shown[UI.error] == "" and shown[UI.vote_row]["visible"]
    turn = shown[UI.turns][-1]
    assert turn["base"] == alone(manager, OTHER, message)        # the left pane: tiny-b at step 5
    assert turn["tuned"] == alone(manager, "tiny-run", message)  # the right pane: the run
    assert len({turn["base"], turn["tuned"], alone(manager, "base", message)}) == 3  # three different models
    assert shown[UI.left][-1]["content"] == turn["base"] and shown[UI.right][-1]["content"] == turn["tuned"]
    assert chat_tab.names_update(False, False, False, "tiny-run", "", OTHER)[:2] == (
        chat_tab.pane_name(OTHER_NAME), chat_tab.pane_name("tiny-run"))
    assert chat_tab.names_update(False, False, False, "tiny-run", "", "base")[:2] == (
        chat_tab.pane_name("Base"), chat_tab.pane_name("Tuned"))  # today's names against the base model
    assert f"Comparing <b>tiny-run</b> with <b>{OTHER_NAME}</b>" in chat_tab.compared_line("tiny-run", "", OTHER)


def test_a_run_on_another_base_model_is_refused_naming_both(manager, tiny_model_dir):
    elsewhere = runs.read(manager.models_dir, "elsewhere").config.model
    assert "elsewhere" not in [value for _, value in chat_tab.against_update(manager, "tiny-run")["choices"]]
    shown = respond(manager, "Repeat the word apple.", "elsewhere")
    assert f"Run elsewhere tuned {elsewhere}, not {tiny_model_dir}" in shown[UI.error]
    assert shown[UI.turns] == [] and shown[UI.message] == "Repeat the word apple."  # put back as it was
    said = chat_tab.other_base_model(manager, str(tiny_model_dir), "elsewhere")  # in the run's description
    assert f"Run elsewhere tuned {elsewhere}, not {tiny_model_dir}" in said
    assert chat_tab.other_base_model(manager, str(tiny_model_dir), OTHER) == ""


def test_a_vote_on_a_pair_is_saved_and_counted_for_that_pair_only(manager, store):
    turns = [{"message": "Repeat the word river.", "input": "", "base": "river river", "tuned": "river"}]
    save_vote(store, "tiny-run", "Repeat the word stone.", "", "tuned", "left")  # against the base model
    left, right, _, result, revealed = chat_tab.vote(manager, "left", turns, "tiny-run", "", OTHER, False)
    assert revealed and OTHER_NAME in left and "tiny-run" in right
    assert f"Vote saved: {OTHER_NAME} better." in result and f"Left was <b>{OTHER_NAME}</b>" in result
    assert f"Blind votes for tiny-run against {OTHER_NAME}: tiny-run better <b>0</b>" in result
    rows = [json.loads(line) for line in (store / "runs" / "tiny-run" / "votes.jsonl").read_text().splitlines()]
    assert "against" not in rows[-2] and rows[-1]["against"] == OTHER and rows[-1]["winner"] == "base"
    assert tally(store, "tiny-run", against=OTHER) == {"tuned": 0, "base": 1, "tie": 0, "both_bad": 0}
    assert tally(store, "tiny-run") == {"tuned": 1, "base": 0, "tie": 0, "both_bad": 0}  # the base pair
    assert sum(tally(store, "tiny-run", against="tiny-b").values()) == 0  # its final weights: another pair
    assert sum(tally(store, "tiny-run", checkpoint=40, against=OTHER).values()) == 0

    found = preference.pairs_from_votes(store, "tiny-run")
    against_other = [p for p in found.pairs if p.instruction == "Repeat the word river."]
    assert [(p.chosen, p.rejected) for p in against_other] == [("river river", "river")]  # the winner's chosen
    assert against_other[0].provenance["against"] == OTHER and against_other[0].provenance["winner"] == "base"


def test_a_vote_naming_no_model_damages_the_run(store, tmp_path):
    copy = tmp_path / "runs" / "tiny-run"
    shutil.copytree(store / "runs" / "tiny-run", copy)
    with open(copy / "votes.jsonl", "a") as file:
        file.write(json.dumps({"winner": "tuned", "against": "../elsewhere"}) + "\n")
    with pytest.raises(PlaygroundError, match="'against' is '../elsewhere'"):
        runs.read(tmp_path, "tiny-run")


def test_a_reload_keeps_the_pair_while_it_is_listed(manager):
    turn = {"message": "Hi", "input": "", "base": "a", "tuned": "b"}
    saved = chat_tab.kept_chat({}, [turn], "tiny-run", "", False, False, False, OTHER)
    restored = chat_tab.restored_chat(manager, saved)
    assert restored[-1]["value"] == OTHER and restored[5] == [turn]
    assert OTHER_NAME in restored[8] and "tiny-run" in restored[9]
    gone = chat_tab.restored_chat(manager, {chat_tab.SAVED: {**saved[chat_tab.SAVED], "against": "tiny-b@99"}})
    assert gone[-1]["value"] == "base" and gone[5] == []  # not shown under another pair's names


def test_chat_command_against_another_run(store):
    result = run_cli("chat", "--run", "tiny-run", "--against", OTHER, "--prompt", "Repeat the word maple.",
                     "--max-new-tokens", "8", models_dir=store)
    assert result.returncode == 0, result.stderr[-2000:]
    other, tuned = result.stdout.split("\n\nrun tiny-run:\n")
    assert other.startswith(f"{OTHER_NAME}:\n") and tuned.strip()
    assert "base + both sides" in result.stderr
