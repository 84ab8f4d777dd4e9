"""Training on a tiny model built from a config, and once on the real default model."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from playground import batching, data, run_data, runs, store
from playground.batching import IGNORE_INDEX
from playground.errors import PlaygroundError
from playground.generation import Side
from playground.manager import ModelManager
from playground.modeling import CausalLMLoss
from playground.training import TrainConfig, prepare_model, run_training, train
from playground.weights import Weights
from tests_helpers import small_dataset

ROOT = Path(__file__).resolve().parent.parent


def quiet(config: TrainConfig) -> TrainConfig:
    config.probes, config.eval_every, config.probe_every = 0, 0, 0
    return config


def test_selective_loss_equals_full_logits_loss(tiny_model_dir):
    model = store.load_model(str(tiny_model_dir))
    tokenizer = store.load_tokenizer(str(tiny_model_dir))
    samples = batching.encode_all(small_dataset(3).records, "alpaca", tokenizer)
    batch = batching.collate(samples, tokenizer.eos_token_id, mask="prompt")
    loss_sum, count = CausalLMLoss(model)(batch.inputs, batch.targets)
    logits = model(batch.inputs).logits
    expected = F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
    assert int(count) == int((batch.targets != IGNORE_INDEX).sum())
    assert torch.allclose(loss_sum, expected, rtol=1e-5)


@pytest.mark.parametrize("method, ratio", [("lora", 0.6), ("full", 0.3)])
def test_tiny_model_overfits_a_handful_of_records(tiny_model_dir, method, ratio, tmp_path):
    model = store.load_model(str(tiny_model_dir))
    tokenizer = store.load_tokenizer(str(tiny_model_dir))
    config = quiet(TrainConfig(model=str(tiny_model_dir), method=method, max_steps=150, batch_size=4,
                               lr=1e-2 if method == "lora" else 1e-3, warmup_steps=2, mask="prompt",
                               lora_r=8, lora_alpha=16, lora_dropout=0.0))
    side = prepare_model(Weights(model), config, "run", tmp_path, torch.float32, torch.device("cpu"))
    losses = []
    dataset = small_dataset()
    result = train(side, tokenizer, dataset, dataset.splits(), config,
                   lambda e: losses.append(e.values["train_loss"]) if e.kind == "step" else None)
    assert result["steps"] == 150 and not result["stopped"]
    # the loss falls a lot (a low-rank update of a tiny model learns slower than a full one)
    assert sum(losses[-5:]) / 5 < ratio * sum(losses[:5]) / 5


def wait_for(predicate, seconds=120):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_stop_mid_run_leaves_a_loadable_adapter_with_the_same_logits(tiny_model_dir, tmp_path):
    from peft import PeftModel

    manager = ModelManager(tmp_path, tokenizer_spec=str(tiny_model_dir))
    config = TrainConfig(model=str(tiny_model_dir), max_steps=10_000, batch_size=2, lr=1e-3, probes=1,
                         probe_every=0, eval_every=0, lora_r=4, lora_alpha=8)
    job = manager.start_training(small_dataset(), config)
    wait_for(lambda: sum(e.kind == "step" for e in job.events) >= 3 or not job.running)
    assert job.running, job.message
    manager.stop_training()
    job.thread.join(60)
    assert job.state == "stopped", job.message
    steps = [e.step for e in job.events if e.kind == "step"]
    assert 3 <= steps[-1] < 10_000
    adapter = job.folder / "adapter"
    assert (adapter / "adapter_model.safetensors").exists()
    record = runs.read(tmp_path, job.run_id)
    assert record.state == "stopped" and record.status["steps"] == steps[-1]
    assert any(row["kind"] == "step" for row in record.metrics())

    ids = torch.tensor([[5, 17, 42, 99, 7]])
    loaded = manager.model(str(tiny_model_dir))
    with torch.no_grad(), loaded.weights.use() as live:
        live_logits = live(ids, adapter_names=[job.run_id]).logits
        base_logits = live(ids, adapter_names=["__base__"]).logits
        base = store.load_model(str(tiny_model_dir), dtype=loaded.dtype)  # as the manager chose it
        reloaded = PeftModel.from_pretrained(base, str(adapter)).eval()
        reloaded_logits = reloaded(ids, adapter_names=["default"]).logits  # the same path as the live one
    assert torch.allclose(live_logits, reloaded_logits, atol=1e-5)
    assert not torch.allclose(live_logits, base_logits, atol=1e-3)  # the adapter learned something


def test_runs_survive_a_restart_and_interrupted_runs_are_listed(tiny_model_dir, tmp_path):
    model = store.load_model(str(tiny_model_dir))
    tokenizer = store.load_tokenizer(str(tiny_model_dir))
    config = quiet(TrainConfig(model=str(tiny_model_dir), max_steps=2, batch_size=2))
    state, message, _ = run_training(prepare_model(Weights(model), config, "done", tmp_path, None, "cpu"), tokenizer,
                                     small_dataset(), config, tmp_path, "done")
    assert state == "finished", message
    # a run that was training when its process died: status still says running, pid is gone
    crashed = runs.RunWriter(tmp_path, "crashed", {"settings": vars(config)})
    status = json.loads((crashed.folder / "status.json").read_text())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    runs.write_json(crashed.folder / "status.json", {**status, "pid": dead.pid})
    listed = {r.run_id: r.state for r in runs.list_runs(tmp_path)}  # as a new process would see them
    assert listed == {"done": "finished", "crashed": "interrupted"}


def test_nan_loss_ends_the_run_with_a_message(tiny_model_dir, tmp_path):
    model = store.load_model(str(tiny_model_dir))
    tokenizer = store.load_tokenizer(str(tiny_model_dir))
    with torch.no_grad():
        model.model.norm.weight.fill_(float("nan"))
    config = quiet(TrainConfig(model=str(tiny_model_dir), method="full", max_steps=5, batch_size=2))
    state, message, _ = run_training(Side("full", Weights(model)), tokenizer, small_dataset(), config, tmp_path, "nan")
    assert state == "failed" and "diverged" in message and "learning rate" in message
    assert runs.read(tmp_path, "nan").state == "failed"


@pytest.mark.parametrize("change, problem", [
    ({"method": "qlora"}, "method"), ({"lr": 5.0}, "learning rate"), ({"batch_size": 0}, "Batch size"),
    ({"max_steps": None, "epochs": 0}, "epochs"),
])
def test_bad_settings_are_refused(change, problem):
    config = TrainConfig(**{"max_steps": 5, **change})
    with pytest.raises(PlaygroundError, match=problem):
        config.check()


def test_bad_lora_target_modules(tiny_model_dir, tmp_path):
    config = TrainConfig(model=str(tiny_model_dir), target_modules="no_such_layer")
    with pytest.raises(PlaygroundError, match="LoRA settings"):
        prepare_model(Weights(store.load_model(str(tiny_model_dir))), config, "x", tmp_path, None, "cpu")


@pytest.mark.slow
def test_two_lora_steps_on_the_real_default_model(tmp_path):
    """End to end through the command line, on the embedded Gemma 3 270M, on the CPU (converted once for
    the whole suite, not again in this test's store)."""
    (tmp_path / store.DEFAULT_NAME).symlink_to(store.ensure_default_model(), target_is_directory=True)
    env = {**os.environ, "PLAYGROUND_MODELS_DIR": str(ROOT / "models")}
    result = subprocess.run([sys.executable, "-m", "playground", "train", "--model", "default", "--method", "lora",
                             "--max-steps", "2", "--batch-size", "2", "--max-length", "64", "--probes", "1",
                             "--eval-every", "1", "--models-dir", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, env=env, timeout=1200)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    steps = [line for line in lines if "train_loss" in line]
    assert [line["step"] for line in steps] == [1, 2]
    assert all(line["tokens_per_s"] > 0 for line in steps)
    assert any("val_loss" in line for line in lines)
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    assert (run_dir / "adapter" / "adapter_model.safetensors").exists()
    assert runs.read(tmp_path, run_dir.name).state == "finished"


def test_dtype_choice_per_device_and_architecture():
    from playground.modeling import cpu_bf16_is_fast, pick_dtype

    cpu = torch.device("cpu")
    fast = cpu_bf16_is_fast()  # measured: emulated bf16 (no AVX512-BF16 or AMX) is many times slower
    assert pick_dtype(cpu, "auto", "gemma3_text") == (torch.bfloat16 if fast else torch.float32)
    assert pick_dtype(cpu, "auto", "gpt2") == torch.float32  # Conv1D is far slower in bf16 there
    assert pick_dtype(cpu, "float32", "gemma3_text") == torch.float32  # the user's choice wins
    assert store.model_type(store.DEFAULT) == "gemma3_text"


def test_a_run_records_its_data_and_its_own_split(graded_run):
    """The split seed is its own setting; the run keeps the dataset's identity and every index."""
    record = runs.read(graded_run, "seed-7")
    assert record.config.seed == 7 and record.config.split_seed == 7
    saved = json.loads((record.folder / "data.json").read_text())
    builtin = data.load("builtin")
    expected = builtin.splits(seed=7)
    assert saved["sha256"] == builtin.fingerprint and saved["origin"] == "builtin"
    assert saved["split"] == {"seed": 7, "order": "shuffled", "train": 0.85, "test": 0.1}
    assert saved["indices"] == {"train": expected.train, "validation": expected.validation, "test": expected.test}
    found = run_data.load(graded_run, record)
    assert found.splits == expected and found.note == ""


def test_changed_or_missing_data_is_reported_never_replaced(tiny_model_dir, tmp_path):
    from tests_helpers import train_tiny_run

    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps({"instruction": f"Repeat {w}.", "output": f"{w} {w}"}) + "\n"
                            for w in ["oak", "elm", "ash", "fir", "yew", "bay", "box", "fig", "lime", "pine"]))
    models = tmp_path / "store"
    train_tiny_run(tiny_model_dir, models, "mine", data.load(str(path)), max_steps=1)
    record = runs.read(models, "mine")
    assert run_data.load(models, record).note == ""  # found at its origin, unchanged

    path.write_text(path.read_text().replace("oak oak", "OAK"))  # the user edits the file
    found = run_data.load(models, record)  # the copy kept in the store, said so
    assert "copy of the run's data kept in the store: its origin: the content changed" in found.note
    assert found.dataset.records[0].output == "oak oak"
    with pytest.raises(PlaygroundError, match="is not the data run mine trained on"):
        run_data.load(models, record, offered=data.load(str(path)))

    for snapshot in run_data.snapshots_dir(models).iterdir():
        snapshot.unlink()
    with pytest.raises(PlaygroundError, match="cannot be found unchanged: its origin: the content changed"):
        run_data.load(models, record)


def test_a_failed_load_leaves_the_manager_usable(tiny_model_dir, tmp_path):
    """An unknown architecture raises ValueError inside transformers: the job ends with that message,
    and the next Load and Start work."""
    broken = tmp_path / "broken-model"
    broken.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (broken / name).write_bytes((tiny_model_dir / name).read_bytes())
    (broken / "config.json").write_text(json.dumps({"model_type": "no_such_architecture"}))
    manager = ModelManager(tmp_path, tokenizer_spec=str(tiny_model_dir))
    job = manager.start_training(small_dataset(), quiet(TrainConfig(model=str(broken), max_steps=1)))
    job.thread.join(120)
    assert job.state == "failed" and "no_such_architecture" in job.message, job.message
    assert manager.model_status().state == "error"

    job = manager.start_training(small_dataset(), quiet(TrainConfig(model=str(tiny_model_dir), max_steps=2,
                                                                     batch_size=2)))
    job.thread.join(120)
    assert job.state == "finished", job.message
    assert manager.model_status().state == "ready"
