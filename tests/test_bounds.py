"""Bad settings, planted links and huge inputs: each refused with a clear message, or bounded.

Each test here failed before its fix: a link in a run folder was written through, NaN epochs gave a
traceback, -1 for "validate every" was accepted, LoRA rank 10^6 started allocating terabytes, a
megabyte message went whole into the model, and a killed checkpoint save left its folder forever.
"""

import argparse
import json
from dataclasses import asdict

import pytest
import torch

from playground import checkpoints, estimate, file_writes, generation, runs, store, votes
from playground.commands.numbers import non_negative_int, positive_int, positive_number
from playground.errors import PlaygroundError
from playground.judge.cache import JudgeCache
from playground.prompts import Prompt
from playground.settings import TrainConfig
from playground.ui.train_tab import config_from
from playground.weights import Weights
from tests_helpers import small_dataset


def finished_run(models, run_id="run-1"):
    """A run folder as a finished run leaves it (no weights needed for these tests)."""
    writer = runs.RunWriter(models, run_id, {"settings": asdict(TrainConfig())})
    writer.status("finished", "done", step=1)
    return writer


@pytest.fixture
def outside(tmp_path):
    """A file outside the store that a planted link points to, with its content before."""
    target = tmp_path / "outside.txt"
    target.write_text("precious\n")
    return target


# ---------------------------------------------------------------- no write through a link


def test_metrics_are_not_appended_through_a_link(tmp_path, outside):
    writer = finished_run(tmp_path / "models")
    (writer.folder / "metrics.jsonl").symlink_to(outside)
    with pytest.raises(PlaygroundError, match="symbolic link"):
        writer.log({"kind": "step", "step": 1, "train_loss": 1.0})
    assert outside.read_text() == "precious\n"


def test_the_status_file_is_not_written_through_a_link(tmp_path, outside):
    writer = finished_run(tmp_path / "models")
    (writer.folder / "status.json").unlink()
    (writer.folder / "status.json").symlink_to(outside)
    with pytest.raises(PlaygroundError, match="symbolic link"):
        writer.status("finished", "again")
    assert outside.read_text() == "precious\n"


def test_a_vote_is_not_appended_through_a_link(tmp_path, outside):
    models = tmp_path / "models"
    writer = finished_run(models)
    (writer.folder / votes.FILE).symlink_to(outside)
    with pytest.raises(PlaygroundError, match="link"):  # the run reader refuses it first: a damaged run
        votes.save_vote(models, "run-1", "hello", "", "tuned", "right")
    assert outside.read_text() == "precious\n"


def test_the_judge_cache_refuses_a_link_before_anything_is_asked(tmp_path, outside):
    models = tmp_path / "models"
    writer = finished_run(models)
    (writer.folder / "judge").mkdir()
    (writer.folder / "judge" / "cache.jsonl").symlink_to(outside)
    with pytest.raises(PlaygroundError, match="symbolic link"):
        JudgeCache(writer.folder / "judge" / "cache.jsonl", inside=runs.runs_dir(models))
    assert outside.read_text() == "precious\n"


def test_no_write_leaves_the_store_through_a_linked_folder(tmp_path):
    """A run's judge/ folder linked elsewhere: the cache refuses, and nothing appears there."""
    models, elsewhere = tmp_path / "models", tmp_path / "elsewhere"
    elsewhere.mkdir()
    writer = finished_run(models)
    (writer.folder / "judge").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(PlaygroundError, match="outside"):
        file_writes.append_text(writer.folder / "judge" / "cache.jsonl", "{}\n", inside=runs.runs_dir(models))
    with pytest.raises(PlaygroundError, match="outside"):
        file_writes.write_json(writer.folder / "judge" / "grading.json", {}, inside=runs.runs_dir(models))
    assert list(elsewhere.iterdir()) == []


def test_a_plain_file_is_still_appended_and_replaced(tmp_path):
    models = tmp_path / "models"
    writer = finished_run(models)
    writer.log({"kind": "step", "step": 1})
    writer.log({"kind": "step", "step": 2})
    assert [json.loads(line)["step"] for line in (writer.folder / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    votes.save_vote(models, "run-1", "hello", "", "tuned", "right")
    assert votes.tally(models, "run-1")["tuned"] == 1


# ---------------------------------------------------------------- settings checked where they are parsed


@pytest.mark.parametrize("values, message", [
    (dict(epochs=float("nan")), "Epochs (--epochs) must be a finite number, not nan"),
    (dict(epochs=float("inf")), "Epochs (--epochs) must be a finite number, not inf"),
    (dict(eval_every=-1), "Validate every N steps (--eval-every) must be 0 or more, not -1"),
    (dict(probe_every=-3), "Probe answers every N steps (--probe-every) must be 0 or more"),
    (dict(lr=float("nan")), "Learning rate (--lr) must be a finite number"),
    (dict(warmup_steps=-1), "Warmup steps (--warmup-steps) must be 0 or more"),
])
def test_bad_numbers_are_refused_with_the_setting_named(values, message):
    with pytest.raises(PlaygroundError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig(**values).check()


def test_the_train_tab_gives_the_same_message_as_the_command_line():
    """The form's NaN used to fail in int() with 'cannot convert float NaN to integer'."""
    form = {name: getattr(TrainConfig(), name) for name in ("max_steps", "batch_size", "grad_accum", "warmup_steps",
                                                             "seed", "split_seed", "eval_every", "probe_every",
                                                             "probes", "lora_r", "lora_alpha", "checkpoint_every",
                                                             "max_length", "epochs", "score_answers_every",
                                                             "score_answers_sample")}
    for bad, message in ((dict(eval_every=float("nan")), "Validate every N steps (--eval-every) must be a finite"),
                         (dict(eval_every=-1), "Validate every N steps (--eval-every) must be 0 or more")):
        with pytest.raises(PlaygroundError) as refused:
            config_from({**form, **bad}).check()
        assert message in str(refused.value)


@pytest.mark.parametrize("parse, text", [(positive_number, "-5"), (positive_number, "nan"), (positive_number, "inf"),
                                         (positive_int, "0"), (non_negative_int, "-1"), (positive_int, "many")])
def test_number_options_are_refused_where_parsed(parse, text):
    with pytest.raises(argparse.ArgumentTypeError, match=repr(text)):
        parse(text)
    assert positive_number("200") == 200.0 and non_negative_int("0") == 0


def test_the_command_line_refuses_a_negative_file_limit():
    from tests_helpers import run_cli

    done = run_cli("data", "validate", "builtin", "--max-file-mb", "-5", timeout=120)
    assert done.returncode == 2
    assert "--max-file-mb: '-5' is not a positive number" in done.stderr


# ---------------------------------------------------------------- memory bounded before work starts


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return Weights(store.load_model(str(tiny_model_dir))), store.load_tokenizer(str(tiny_model_dir))


def test_a_lora_rank_beyond_the_free_memory_is_refused_with_its_estimate(tiny):
    weights, tokenizer = tiny
    config = TrainConfig(lora_r=10**9, max_steps=1)
    with pytest.raises(PlaygroundError, match=r"Not started: these settings need about [\d,.]+ GiB more memory"):
        estimate.refuse_beyond_memory(weights.model, tokenizer, small_dataset(), config, torch.device("cpu"))
    config.ignore_memory_estimate = True  # the override: no refusal
    estimate.refuse_beyond_memory(weights.model, tokenizer, small_dataset(), config, torch.device("cpu"))
    estimate.refuse_beyond_memory(weights.model, tokenizer, small_dataset(), TrainConfig(max_steps=1),
                                  torch.device("cpu"))


def test_a_huge_message_is_cut_to_the_models_context_with_a_note(tiny):
    """The tiny model reads at most 512 positions: a 1,000,000-character message is cut to its end,
    answered, and the note says so; a short message is not cut."""
    weights, tokenizer = tiny
    settings = generation.GenerationSettings(max_new_tokens=8)
    room = generation.prompt_room(weights, settings)
    assert room == 512 - 8
    huge = Prompt("word " * 200_000 + "\n\n### Response:\n")
    ids = generation.encode(tokenizer, huge, room)
    assert len(ids) == room
    assert tokenizer.decode(ids).endswith("### Response:\n")
    note = generation.cut_note(tokenizer, huge, weights, settings)
    assert f"only its last {room:,} tokens were read" in note
    side = generation.Side("base", weights)
    [answer] = generation.generate([(side, huge)], tokenizer, "alpaca", settings)
    assert isinstance(answer, str)
    assert generation.cut_note(tokenizer, Prompt("Name a colour."), weights, settings) == ""


# ---------------------------------------------------------------- leftovers


def test_a_killed_checkpoint_save_is_removed_at_start(tmp_path):
    models = tmp_path / "models"
    writer = finished_run(models)
    half = checkpoints.temporary_folder(writer.folder, 20)
    half.mkdir(parents=True)
    (half / "adapter_model.safetensors").write_bytes(b"half")
    removing = writer.folder / checkpoints.FOLDER / f"{checkpoints.REMOVING}step-000010"
    removing.mkdir()
    kept = writer.folder / checkpoints.FOLDER / "notes.txt"  # not the app's: left alone
    kept.write_text("mine")
    removed = runs.remove_leftovers(models)
    assert sorted(removed) == sorted([half, removing])
    assert not half.exists() and not removing.exists() and kept.exists()


def test_a_run_that_would_train_no_target_is_refused_with_the_reason(tiny):
    """Max length 16 with the prompt masked cuts every response away: it used to train, showing 0.0."""
    from playground.training import refuse_before_start

    weights, tokenizer = tiny
    config = TrainConfig(max_length=16, mask="prompt", max_steps=1)
    with pytest.raises(PlaygroundError, match=r"Not started: with max length 16 and masking 'prompt', none of the "
                                              r"\d+ training records keeps a trained target"):
        refuse_before_start(weights.model, tokenizer, small_dataset(), config, torch.device("cpu"))
    config.mask = "none"  # the prompt's own targets are trained then
    refuse_before_start(weights.model, tokenizer, small_dataset(), config, torch.device("cpu"))
