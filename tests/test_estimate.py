"""The estimate before Start against what a real training step on the tiny model holds."""

import json
import statistics

import pytest
import torch

from playground import batching, data, estimate, store
from playground.modeling import CausalLMLoss, unwrap_causal_lm
from playground.training import TrainConfig, prepare_model
from playground.weights import Weights
from tests_helpers import saved_bytes, small_dataset


@pytest.mark.parametrize("method", ["lora", "full"])
def test_memory_parts_match_one_real_training_step(tiny_model_dir, tmp_path, method):
    config = TrainConfig(model=str(tiny_model_dir), method=method, batch_size=4, max_length=64, lora_r=8,
                         mask="prompt", lora_dropout=0.0)
    base = store.load_model(str(tiny_model_dir), dtype=torch.float32)
    base_bytes = sum(p.numel() * p.element_size() for p in base.parameters())
    side = prepare_model(Weights(base), config, "run", tmp_path, torch.float32, "cpu")
    model = side.weights.model
    shapes = estimate.shapes_of(model)
    tokenizer = store.load_tokenizer(str(tiny_model_dir))
    dataset = data.load("builtin")
    batch = batching.training_batch(dataset.records, list(range(40)), tokenizer, "alpaca", 4, max_length=64,
                                    mask="prompt")
    exact = estimate.Batches(computed=batch.inputs.numel(), real=batch.real_tokens, trained=batch.trained_tokens,
                             micro_batches=1)
    parts, trainable = estimate.memory(shapes, config, exact)

    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=1e-3)
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    with side.weights.use(train=True, adapter=side.adapter):
        decoder_bytes, _ = saved_bytes(lambda: unwrap_causal_lm(model).get_decoder()(
            input_ids=batch.inputs, use_cache=False).last_hidden_state, parameters)
        loss, count = CausalLMLoss(model)(batch.inputs, batch.targets)
        (loss / count).backward()
        optimizer.step()

    assert trainable == sum(p.numel() for p in trained)
    assert parts["gradients"] == sum(p.grad.numel() * p.grad.element_size() for p in trained)
    states = [t for state in optimizer.state.values() for name, t in state.items() if name != "step"]
    assert parts["optimizer"] == sum(t.numel() * t.element_size() for t in states)
    copy = 0 if method == "lora" else sum(p.numel() * 4 for p in trained)
    assert parts["weights"] == shapes.weight_bytes + copy and shapes.weight_bytes == base_bytes
    assert 0.7 < parts["activations"] / decoder_bytes < 1.4, (parts["activations"], decoder_bytes)
    largest = max(p.numel() for p in trained)
    assert parts["optimizer_step"] == 4 * largest  # one float32 temporary the size of the largest tensor


def test_shapes_from_the_config_alone_are_the_loaded_model_shapes(tiny_model_dir):
    loaded = estimate.shapes_of(store.load_model(str(tiny_model_dir), dtype=torch.float32))
    from_config = estimate.shapes_from_config(tiny_model_dir, torch.float32)
    assert from_config == loaded
    assert estimate.lora_parameters(loaded, 8, "q_proj,v_proj") < estimate.lora_parameters(loaded, 8, "all-linear")


def test_batch_tokens_follow_masking_and_grouping(default_tokenizer):
    records = small_dataset().records
    indices = list(range(len(records)))
    plain = estimate.batch_tokens(records, indices, default_tokenizer, TrainConfig(batch_size=4, group_by_length=False))
    masked = estimate.batch_tokens(records, indices, default_tokenizer, TrainConfig(batch_size=4, mask="prompt"))
    samples = batching.encode_all(records, "alpaca", default_tokenizer, None, indices)
    assert plain.real == pytest.approx(4 * statistics.mean(len(s.ids) - 1 for s in samples))
    assert plain.trained == plain.real and masked.trained < masked.real
    assert masked.trained == pytest.approx(4 * statistics.mean(len(s.ids) - s.prompt_len for s in samples))
    book = estimate.batch_tokens(records, indices, default_tokenizer, TrainConfig(batch_size=4, mask="instruction"))
    assert masked.trained < book.trained < plain.trained  # exercise 7.2 trains the response header too
    assert plain.computed >= plain.real


def test_time_comes_from_earlier_runs_like_this_one(tiny_run, tiny_model_dir):
    record = json.loads((tiny_run / "runs" / "tiny-run" / "config.json").read_text())
    config = TrainConfig(**record["settings"])
    events = [json.loads(line) for line in (tiny_run / "runs" / "tiny-run" / "metrics.jsonl").read_text().splitlines()]
    speed = statistics.median([e["input_tokens_per_s"] for e in events if e["kind"] == "step"][2:])
    shapes = estimate.shapes_of(store.load_model(str(tiny_model_dir)))
    batches = estimate.Batches(computed=400, real=300, trained=100, micro_batches=2)
    result = estimate.estimate(shapes, config, batches, 10, torch.device("cpu"), models_dir=tiny_run,
                               dtype_name=record["dtype"])
    assert result.step_seconds == pytest.approx(600 / speed)
    assert result.basis.startswith("measured") and "1 earlier run" in result.basis
    other = estimate.estimate(shapes, TrainConfig(**{**record["settings"], "method": "full"}), batches, 10,
                              torch.device("cpu"), models_dir=tiny_run, dtype_name=record["dtype"], flops=1e9)
    assert other.basis.startswith("rough")
    linear_weights = sum(n_in * n_out for n_in, n_out in shapes.linears.values())  # the embedding is a lookup
    assert 0 < linear_weights < shapes.parameters
    work = 400 * 6 * linear_weights + 100 * 6 * shapes.hidden * shapes.vocab
    assert other.step_seconds == pytest.approx(2 * work / (1e9 * estimate.MATMUL_EFFICIENCY))
    longer = estimate.estimate(shapes, TrainConfig(**{**record["settings"], "max_length": config.max_length * 2}),
                               batches, 10, torch.device("cpu"), models_dir=tiny_run, dtype_name=record["dtype"],
                               flops=1e9)
    assert longer.basis.startswith("rough")  # another batch shape runs at another speed: not "like this"
    preference = estimate.estimate(shapes, TrainConfig(**{**record["settings"], "objective": "dpo"}), batches, 10,
                                   torch.device("cpu"), models_dir=tiny_run, dtype_name=record["dtype"], flops=1e9)
    assert preference.basis.startswith("rough")  # a supervised run's speed is not a DPO run's


def test_earlier_runs_that_disagree_say_so():
    assert "ran from" not in estimate.speed_basis([900.0, 1000.0, 1200.0])
    basis = estimate.speed_basis([5000.0, 240.0, 4800.0])  # one run on a loaded machine
    assert basis.startswith("measured: 4,800 input tokens/s, the median of 3") and "from 240 to 5,000" in basis


def test_a_run_that_will_not_fit_says_so():
    result = estimate.Estimate(parts={"weights": 3 * estimate.GIB, "activations": 2 * estimate.GIB}, trainable=10,
                               available=4 * estimate.GIB, step_seconds=2.0, run_seconds=130.0, steps=60, basis="measured")
    text = estimate.describe(result)
    assert result.fits is False and "will probably not fit: 4.0 GiB is free" in text
    assert "about 2.0 s per step, 2:10 for 60 steps" in text
    loaded = estimate.Estimate(parts=result.parts, trainable=10, available=4 * estimate.GIB, step_seconds=None,
                               run_seconds=None, steps=60, basis="", already_loaded=3 * estimate.GIB)
    assert loaded.fits is True  # the loaded weights are already in memory


def test_train_estimate_prints_memory_time_and_data_check_and_trains_nothing(tiny_model_dir, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-m", "playground", "train", "--model", str(tiny_model_dir), "--max-steps",
                             "3", "--estimate", "--models-dir", str(tmp_path)], capture_output=True, text=True,
                            cwd=root, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("Memory: about") and "for 3 steps" in result.stdout
    assert "Data check:" in result.stdout
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_the_default_models_shipped_config_is_the_one_its_conversion_writes():
    converted = json.loads((store.ensure_default_model() / "config.json").read_text())
    shipped = json.loads((store.DEFAULT_CONFIG_DIR / "config.json").read_text())
    ignored = {"_model_name_or_path", "transformers_version"}
    assert shipped == {k: v for k, v in converted.items() if k not in ignored}


def test_an_estimate_before_the_default_model_is_converted(tmp_path, default_tokenizer):
    """A fresh store (the tokenizer converted, the weights not yet): the memory figure is there, the
    same as once the model is converted, and nothing is converted for it."""
    from playground.manager import ModelManager

    fresh = store.default_dir(tmp_path)
    fresh.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        (fresh / name).symlink_to(store.default_dir() / name)
    config = TrainConfig(max_steps=5, batch_size=2, max_length=64)
    dataset = data.load(data.BUILTIN)
    train = dataset.splits(seed=config.split_seed).train
    before = estimate.for_settings(ModelManager(tmp_path), dataset, config, train)
    assert store.needs_conversion("default", tmp_path)  # nothing converted for the estimate
    after = estimate.for_settings(ModelManager(store.MODELS_DIR), dataset, config, train)
    assert before.total == after.total > 0 and before.trainable == after.trainable > 0
    assert "Memory: about" in estimate.describe(before)


def test_a_preference_pair_is_two_rows_in_the_estimate(default_tokenizer, tmp_path):
    """DPO collates a chosen and a rejected row per pair: with both sides equal to the output, a step
    holds exactly twice the real and trained tokens of the supervised step on the same records, and
    the estimate says what it counts."""
    from dataclasses import replace

    records = [replace(r, chosen=r.output, rejected=r.output) for r in small_dataset(24).records]
    supervised = TrainConfig(batch_size=4, max_length=128, mask="prompt")
    preference = replace(supervised, objective="dpo")
    indices = list(range(len(records)))
    one = estimate.batch_tokens(records, indices, default_tokenizer, supervised)
    two = estimate.batch_tokens(records, indices, default_tokenizer, preference)
    assert two.real == pytest.approx(2 * one.real)
    assert two.trained == pytest.approx(2 * one.trained)
    shapes = estimate.Shapes(parameters=10**6, weight_bytes=4 * 10**6, hidden=64, vocab=1000,
                             dtype_bytes=4, largest=64000, linears={"q": (64, 64)})
    result = estimate.estimate(shapes, preference, two, 10, torch.device("cpu"), models_dir=tmp_path,
                               dtype_name="float32", flops=1e9)
    assert estimate.DPO_NOTE in estimate.describe(result)
    plain = estimate.estimate(shapes, supervised, two, 10, torch.device("cpu"), models_dir=tmp_path,
                              dtype_name="float32", flops=1e9)
    assert result.run_seconds > plain.run_seconds  # the reference's forward pass before step 1
