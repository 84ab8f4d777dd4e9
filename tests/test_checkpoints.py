"""Checkpoints and resume: a stopped run resumed goes on exactly where an unbroken run would be."""

import json
import threading

import pytest
import torch

from playground import checkpoints, runs, store
from playground.errors import PlaygroundError
from playground.manager import ModelManager
from playground.ui import train_tab
from playground.training import TrainConfig, prepare_model, run_training
from playground.weights import Weights
from tests_helpers import ROOT, run_cli, small_dataset, wait_until


def settings(model_dir, **changes) -> TrainConfig:
    # dropout on, so the random number generator's state matters; grad-accum 2 so a stop must land
    # between optimizer steps; 6 batches per epoch over 12 records, so the run crosses epochs
    values = dict(model=str(model_dir), max_steps=8, batch_size=2, grad_accum=2, lr=5e-3, warmup_steps=2,
                  lora_r=4, lora_alpha=8, lora_dropout=0.1, eval_every=3, eval_batches=1, probes=1,
                  probe_every=4, probe_tokens=4, checkpoint_every=3)
    return TrainConfig(**{**values, **changes})


def train_run(model_dir, models, run_id, config, stop_at=None, resume=None):
    """Run (or resume) a run in this process; `stop_at` presses Stop once that step is logged."""
    stop = threading.Event()

    def on_event(event):
        if stop_at is not None and event.kind == "step" and event.step >= stop_at:
            stop.set()

    side = prepare_model(Weights(store.load_model(str(model_dir))), config, run_id, models, None, "cpu", resume)
    state, message, result = run_training(side, store.load_tokenizer(str(model_dir)), small_dataset(), config,
                                          models, run_id, on_event=on_event, stop=stop, resume=resume)
    return state, message, result, side


def curve(folder, kind, key):
    rows = runs.read(folder.parent.parent, folder.name).metrics()
    return [(r["step"], r[key]) for r in rows if r["kind"] == kind]


def adapter_tensors(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter" / "adapter_model.safetensors"))


@pytest.mark.parametrize("stop_at", [4, 6])
def test_stopped_run_resumed_matches_the_unbroken_run(tiny_model_dir, tmp_path, stop_at):
    config = settings(tiny_model_dir)
    state, message, _, _ = train_run(tiny_model_dir, tmp_path, "whole", config)
    assert state == "finished", message
    state, message, result, _ = train_run(tiny_model_dir, tmp_path, "broken", settings(tiny_model_dir),
                                          stop_at=stop_at)
    assert state == "stopped" and result["steps"] == stop_at, message
    folder = tmp_path / "runs" / "broken"
    latest = checkpoints.latest(folder)
    assert latest.step == stop_at  # kept on Stop, besides step 3
    assert [c.step for c in checkpoints.list_checkpoints(folder)] == [3, stop_at]
    state, message, result, _ = train_run(tiny_model_dir, tmp_path, "broken", settings(tiny_model_dir),
                                          resume=latest)
    assert state == "finished" and result["steps"] == 8, message
    whole = tmp_path / "runs" / "whole"
    assert curve(folder, "step", "train_loss") == curve(whole, "step", "train_loss")
    # what Stop measured stays on the resumed curve: a validation point at the step it stopped (one
    # was due at 6 already) and a probe column there (one was due at 4 already), each once
    resumed_evals, whole_evals = curve(folder, "eval", "val_loss"), curve(whole, "eval", "val_loss")
    assert set(whole_evals) <= set(resumed_evals)
    assert [step for step, _ in resumed_evals] == sorted({0, 3, 6, 8, stop_at})
    assert [step for step, _ in curve(folder, "probe", "probes")] == sorted({0, 4, 8, stop_at})
    assert curve(folder, "step", "trained_tokens") == curve(whole, "step", "trained_tokens")
    assert [r["kind"] for r in runs.read(tmp_path, "broken").metrics()].count("resume") == 1
    expected, got = adapter_tensors(whole), adapter_tensors(folder)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    assert runs.read(tmp_path, "broken").state == "finished"
    elapsed = [r["elapsed"] for r in runs.read(tmp_path, "broken").metrics()]
    assert elapsed == sorted(elapsed)  # the wall-time curve goes on, it does not start again at 0


def test_interrupted_run_resumes_from_its_last_periodic_checkpoint(tiny_model_dir, tmp_path):
    """A killed process leaves rows after its last checkpoint and a status saying running: the
    resumed run drops those rows and ends on the unbroken run's curve."""
    state, _, _, _ = train_run(tiny_model_dir, tmp_path, "whole", settings(tiny_model_dir))
    train_run(tiny_model_dir, tmp_path, "killed", settings(tiny_model_dir), stop_at=7)
    folder = tmp_path / "runs" / "killed"
    checkpoints.find(folder, 7).folder.rename(folder / "checkpoints" / ".saving-000007")  # as if killed mid-save
    status = json.loads((folder / "status.json").read_text())
    (folder / "status.json").write_text(json.dumps({**status, "state": "running", "pid": 2**22 + 7}))
    assert runs.read(tmp_path, "killed").state == "interrupted"
    latest = checkpoints.latest(folder)
    assert latest.step == 6
    state, message, _, _ = train_run(tiny_model_dir, tmp_path, "killed", settings(tiny_model_dir), resume=latest)
    assert state == "finished", message
    assert curve(folder, "step", "train_loss") == curve(tmp_path / "runs" / "whole", "step", "train_loss")


def test_full_fine_tune_checkpoint_resumes(tiny_model_dir, tmp_path):
    config = settings(tiny_model_dir, method="full", lr=1e-3, keep_checkpoints=1)
    train_run(tiny_model_dir, tmp_path, "whole", config)
    train_run(tiny_model_dir, tmp_path, "full", settings(tiny_model_dir, method="full", lr=1e-3,
                                                           keep_checkpoints=1), stop_at=5)
    folder = tmp_path / "runs" / "full"
    assert [c.step for c in checkpoints.list_checkpoints(folder)] == [5]  # keep 1: step 3 was dropped
    train_run(tiny_model_dir, tmp_path, "full", settings(tiny_model_dir, method="full", lr=1e-3, keep_checkpoints=1),
              resume=checkpoints.latest(folder))
    assert curve(folder, "step", "train_loss") == curve(tmp_path / "runs" / "whole", "step", "train_loss")


def wait(job):
    job.thread.join(120)
    assert not job.running


def test_manager_resumes_with_the_curve_so_far_and_chats_with_any_checkpoint(tiny_model_dir, tmp_path):
    manager = ModelManager(tmp_path, tokenizer_spec=str(tiny_model_dir))
    dataset = small_dataset()
    job = manager.start_training(dataset, settings(tiny_model_dir, max_steps=400, probes=0, eval_every=0,
                                                   checkpoint_every=2))
    wait_until(lambda: not job.running or sum(e.kind == "step" for e in job.events) >= 3, "3 steps of the run")
    manager.stop_training()
    wait(job)
    assert job.state == "stopped", job.message
    stopped_at = job.result["steps"]
    with pytest.raises(PlaygroundError, match="no checkpoint at step 1 "):
        manager.tuned_side(job.run_id, checkpoint=1)
    early, _ = manager.tuned_side(job.run_id, checkpoint=2)
    final, _ = manager.tuned_side(job.run_id)
    assert early.adapter != final.adapter
    prompt = torch.tensor([[5, 6, 7, 8]])
    with early.weights.use() as model:
        logits_early = model(prompt, **early.weights.adapter_names([early.adapter])).logits
        logits_final = model(prompt, **final.weights.adapter_names([final.adapter])).logits
    assert not torch.allclose(logits_early, logits_final)

    resumed = manager.resume_training(job.run_id)
    assert resumed.run_id == job.run_id
    before = [e.step for e in resumed.events if e.kind == "step"]
    assert before == list(range(1, stopped_at + 1))  # the curve so far, from the run's metrics
    wait_until(lambda: not resumed.running or sum(e.kind == "step" for e in resumed.events) >= stopped_at + 2,
               "2 steps of the resumed run")
    manager.stop_training()
    wait(resumed)
    assert resumed.state == "stopped", resumed.message
    steps = [e.step for e in resumed.events if e.kind == "step"]
    assert steps == list(range(1, resumed.result["steps"] + 1))
    assert f"of them since it resumed at step {stopped_at})" in resumed.message  # its time counts both parts
    assert "since Resume)" in train_tab.progress_html(resumed.snapshot())
    # the live adapter of the resumed run answers in place of the adapter loaded to chat with earlier
    side, _ = manager.tuned_side(job.run_id)
    assert side.adapter == job.run_id


def test_resume_refuses_runs_it_cannot_go_on_with(tiny_model_dir, tmp_path):
    manager = ModelManager(tmp_path, tokenizer_spec=str(tiny_model_dir))
    job = manager.start_training(small_dataset(), settings(tiny_model_dir, max_steps=2, probes=0))
    wait(job)
    with pytest.raises(PlaygroundError, match="nothing to resume"):
        manager.resume_training(job.run_id)
    folder = tmp_path / "runs" / job.run_id
    status = json.loads((folder / "status.json").read_text())
    (folder / "status.json").write_text(json.dumps({**status, "state": "stopped"}))
    with pytest.raises(PlaygroundError, match="no checkpoint to resume from"):
        manager.resume_training(job.run_id)
    with pytest.raises(PlaygroundError, match="No run 'missing'"):
        manager.resume_training("missing")


def test_damaged_checkpoint_is_named(tmp_path):
    folder = checkpoints.folder_for(tmp_path, 4)
    (folder / "adapter").mkdir(parents=True)
    (folder / checkpoints.STATE).write_bytes(b"not a checkpoint")
    with pytest.raises(PlaygroundError, match="step-000004 cannot be read"):
        checkpoints.latest(tmp_path).state()


def test_command_line_resumes_a_killed_run_and_chats_with_a_checkpoint(tiny_model_dir, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps([{"instruction": r.instruction, "input": r.input, "output": r.output}
                                     for r in small_dataset().records]))
    command = [sys.executable, "-m", "playground", "train", "--model", str(tiny_model_dir), "--data", str(data_file),
               "--max-steps", "120", "--batch-size", "2", "--checkpoint-every", "4", "--eval-every", "0",
               "--probes", "0", "--models-dir", str(tmp_path)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def checkpointed():
        assert process.poll() is None, process.communicate()
        return list((tmp_path / "runs").glob("*/checkpoints/step-000004"))

    wait_until(checkpointed, "the checkpoint at step 4")
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    run_id = next((tmp_path / "runs").iterdir()).name
    assert runs.read(tmp_path, run_id).state == "interrupted"
    done = run_cli("train", "--resume", run_id, models_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stderr and "Finished after 120 of 120 steps" in done.stderr
    rows = runs.read(tmp_path, run_id).metrics()
    assert [r["step"] for r in rows if r["kind"] == "step"] == list(range(1, 121))
    again = run_cli("train", "--resume", run_id, models_dir=tmp_path)
    assert again.returncode != 0 and "finished" in again.stderr
    chat = run_cli("chat", "--run", run_id, "--checkpoint", "4", "--prompt", "Repeat the word apple.",
                   "--max-new-tokens", "4", models_dir=tmp_path)
    assert chat.returncode == 0 and "Tuned:" in chat.stdout, chat.stderr
    missing = run_cli("chat", "--run", run_id, "--checkpoint", "5", "--prompt", "x", models_dir=tmp_path)
    assert missing.returncode != 0 and "no checkpoint at step 5" in missing.stderr
