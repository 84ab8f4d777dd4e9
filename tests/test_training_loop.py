"""The training loop on the tiny model: seeded runs repeat exactly, a failure inside a step leaves its
traceback in the log, and a job's progress reads consistently while its run trains.

(A stopped run resumed ends on the unbroken run's curve: tests/test_checkpoints.py.)"""

import itertools
import math
import logging
import time

import pytest
import torch
from safetensors.torch import load_file

from playground import manager as manager_module
from playground import checkpoints, runs, store, training
from playground.errors import PlaygroundError
from playground.manager import HURRYING, STOPPING, ModelManager
from playground.training import TrainConfig, prepare_model, run_training
from playground.weights import Weights
from tests_helpers import small_dataset

TIMING = {"elapsed", "tokens_per_s", "input_tokens_per_s"}  # wall-clock figures, different every run


def settings(model_dir, **changes) -> TrainConfig:
    # dropout on, so the random numbers matter; grad-accum 2 and 6 batches an epoch, so the run
    # accumulates across an epoch's end; validation, probes and checkpoints between steps
    values = dict(model=str(model_dir), max_steps=8, batch_size=2, grad_accum=2, lr=5e-3, warmup_steps=2, lora_r=4,
                  lora_alpha=8, lora_dropout=0.1, eval_every=3, eval_batches=1, probes=1, probe_every=4,
                  probe_tokens=4, checkpoint_every=3)
    return TrainConfig(**{**values, **changes})


def train_run(model_dir, models, run_id, config):
    side = prepare_model(Weights(store.load_model(str(model_dir))), config, run_id, models, None, "cpu")
    state, message, _ = run_training(side, store.load_tokenizer(str(model_dir)), small_dataset(), config, models,
                                     run_id)
    assert state == "finished", message
    rows = [{k: v for k, v in row.items() if k not in TIMING} for row in runs.read(models, run_id).metrics()]
    return rows, load_file(str(models / "runs" / run_id / "adapter" / "adapter_model.safetensors"))


def test_two_runs_with_the_same_seed_log_the_same_metrics_and_weights(tiny_model_dir, tmp_path):
    first, first_adapter = train_run(tiny_model_dir, tmp_path, "first", settings(tiny_model_dir))
    second, second_adapter = train_run(tiny_model_dir, tmp_path, "second", settings(tiny_model_dir))
    assert first == second
    assert [row["step"] for row in first if row["kind"] == "step"] == list(range(1, 9))
    assert [row["step"] for row in first if row["kind"] == "probe"] == [0, 4, 8]  # before, every 4 steps, at the end
    assert first_adapter.keys() == second_adapter.keys()
    for name in first_adapter:
        assert torch.equal(first_adapter[name], second_adapter[name]), name

    other, _ = train_run(tiny_model_dir, tmp_path, "other-seed", settings(tiny_model_dir, seed=7))
    losses = lambda rows: [row["train_loss"] for row in rows if row["kind"] == "step"]
    assert losses(other) != losses(first)  # the seed does reach the loop


def test_a_failing_step_ends_the_job_with_one_line_and_logs_the_traceback(tiny_model_dir, tmp_path, monkeypatch,
                                                                         caplog):
    real_step = training.TrainingLoop.micro_step

    def failing_step(loop, indices):
        if loop.step == 2:
            raise RuntimeError("a fault in the third step")
        return real_step(loop, indices)

    monkeypatch.setattr(training.TrainingLoop, "micro_step", failing_step)
    manager = ModelManager(tmp_path, tokenizer_spec=str(tiny_model_dir))
    with caplog.at_level(logging.ERROR):
        job = manager.start_training(small_dataset(), settings(tiny_model_dir, grad_accum=1))
        job.thread.join(120)
    assert job.state == "failed"
    assert job.message == "Training failed: RuntimeError: a fault in the third step"
    assert [e.step for e in job.events if e.kind == "step"] == [1, 2]
    assert runs.read(tmp_path, job.run_id).state == "failed"
    [record] = [r for r in caplog.records if r.name == "playground.training"]
    assert record.levelno == logging.ERROR and job.run_id in record.getMessage()
    traceback = caplog.text
    assert "Traceback (most recent call last)" in traceback and "in failing_step" in traceback
    assert "RuntimeError: a fault in the third step" in traceback


def test_a_failure_before_training_logs_its_traceback_too(tiny_model_dir, tmp_path, monkeypatch, caplog):
    def failing_prepare(*args):
        raise RuntimeError("no room for the adapter")

    monkeypatch.setattr(manager_module, "prepare_model", failing_prepare)
    manager = ModelManager(tmp_path, tokenizer_spec=str(tiny_model_dir))
    with caplog.at_level(logging.ERROR):
        job = manager.start_training(small_dataset(), settings(tiny_model_dir))
        job.thread.join(120)
    assert job.state == "failed"
    assert job.message == f"Run {job.run_id} failed: RuntimeError: no room for the adapter"
    assert "in failing_prepare" in caplog.text and "RuntimeError: no room for the adapter" in caplog.text


def test_snapshots_read_while_a_run_trains_are_consistent(tiny_model_dir, tmp_path):
    manager = ModelManager(tmp_path, tokenizer_spec=str(tiny_model_dir))
    config = settings(tiny_model_dir, max_steps=40, grad_accum=1, eval_every=5, probe_every=10,
                      checkpoint_every=10)
    job = manager.start_training(small_dataset(), config)
    snapshots = [job.snapshot()]
    while snapshots[-1].running:
        time.sleep(0.002)
        snapshots.append(job.snapshot())
    job.thread.join(60)
    for earlier, later in itertools.pairwise(snapshots):
        assert earlier.step <= later.step
        assert later.events[:len(earlier.events)] == earlier.events  # events are only ever added
        assert earlier.elapsed <= later.elapsed
    for snapshot in snapshots:
        # step, events and phase change together: a snapshot never sees one without the others
        assert sum(e.kind == "step" for e in snapshot.events) == snapshot.step
        phases = [e.values["phase"] for e in snapshot.events if e.kind == "phase"]
        assert not phases or snapshot.phase == phases[-1]
        assert snapshot.state in ("starting", "running", "finished"), snapshot.message
    assert any(s.running and 0 < s.step < 40 for s in snapshots)  # it did read the run as it trained
    last = snapshots[-1]
    assert last.state == "finished" and last.result["steps"] == last.step == 40
    assert last.message.startswith("Finished after 40 of 40 steps")
    assert last == job.snapshot()  # nothing changes after the end


def test_stop_before_the_model_is_ready_and_again_after_the_end(tiny_model_dir, tmp_path):
    manager = ModelManager(tmp_path, tokenizer_spec=str(tiny_model_dir))
    job = manager.start_training(small_dataset(), settings(tiny_model_dir, max_steps=10_000))
    manager.stop_training()
    assert job.stop.is_set() and job.message == STOPPING
    job.thread.join(120)
    assert job.state == "stopped" and job.step == 0, job.message
    ended = job.message
    assert ended.startswith("Stopped after 0 of 10000 steps")
    manager.stop_training()  # a job that has ended keeps its message
    assert job.message == ended


@pytest.mark.parametrize("presses", [1, 2])
def test_stop_pressed_twice_skips_the_last_validation_and_probes_but_keeps_the_checkpoint(tiny_model_dir, tmp_path,
                                                                                          presses):
    config = settings(tiny_model_dir, max_steps=50, eval_every=0, probe_every=0, checkpoint_every=0)
    side = prepare_model(Weights(store.load_model(str(tiny_model_dir))), config, "run", tmp_path, None, "cpu")
    stop = training.StopRequest()

    def on_event(event):
        if event.kind == "step" and event.step == 3:  # Stop pressed during step 3 (once or twice)
            stop.set()
            if presses == 2:
                stop.hurry.set()

    state, message, result = run_training(side, store.load_tokenizer(str(tiny_model_dir)), small_dataset(), config,
                                          tmp_path, "run", on_event=on_event, stop=stop)
    assert state == "stopped" and result["steps"] == 3, message
    rows = runs.read(tmp_path, "run").metrics()
    evaluated = [row["step"] for row in rows if row.get("kind") == "eval"]
    probed = [row["step"] for row in rows if row.get("kind") == "probe"]
    if presses == 1:
        assert evaluated == [0, 3] and probed == [0, 3] and result["validated_at"] == 3
        assert "skipped" not in message
    else:
        assert evaluated == [0] and probed == [0] and result["validated_at"] == 0
        assert "its last validation is that of step 0 (the one at the end was skipped)" in message
    assert [c.step for c in checkpoints.list_checkpoints(tmp_path / "runs" / "run")] == [3]  # Resume goes on from it


def test_a_second_stop_says_the_validation_and_probes_are_skipped(tiny_model_dir, tmp_path):
    manager = ModelManager(tmp_path, tokenizer_spec=str(tiny_model_dir))
    job = manager.start_training(small_dataset(), settings(tiny_model_dir, max_steps=10_000))
    manager.stop_training()
    assert job.message == STOPPING and "press Stop again" in STOPPING and not job.stop.hurry.is_set()
    manager.stop_training()
    assert job.stop.hurry.is_set() and job.message == HURRYING
    job.thread.join(120)
    assert job.state == "stopped", job.message


@pytest.mark.parametrize("every, expected", [(0, [False] * 5), (2, [False, True, False, True, False])])
def test_periodic_work_is_never_due_after_the_last_step(every, expected):
    assert [training.due(every, step, 5) for step in range(1, 6)] == expected


@pytest.mark.parametrize("schedule", ["linear", "cosine", "constant"])
def test_the_learning_rate_logged_at_each_step_follows_the_chosen_schedule(tiny_model_dir, tmp_path, schedule):
    config = settings(tiny_model_dir, lr_schedule=schedule, max_steps=10, warmup_steps=2, eval_every=0, probes=0,
                      probe_every=0, checkpoint_every=0)
    rows, _ = train_run(tiny_model_dir, tmp_path, f"lr-{schedule}", config)
    logged = [row["lr"] for row in rows if row["kind"] == "step"]
    # step i (from 0) of 10 uses warmup min(1, (i + 1) / 2) times the schedule's factor at i / 10
    decay = {"linear": lambda done: max(0.1, 1 - done),
             "cosine": lambda done: 0.1 + 0.45 * (1 + math.cos(math.pi * done)),
             "constant": lambda done: 1.0}[schedule]
    assert logged == pytest.approx([config.lr * min(1, (i + 1) / 2) * decay(i / 10) for i in range(10)])
    assert logged[0] == pytest.approx(config.lr / 2)  # the first step's lr is logged with it, not the next one's


def test_an_unknown_learning_rate_schedule_is_refused_naming_the_choices(tiny_model_dir):
    with pytest.raises(PlaygroundError, match="schedule must be one of linear, cosine, constant, not 'step'"):
        settings(tiny_model_dir, lr_schedule="step").check()
