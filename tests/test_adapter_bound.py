"""Adapters loaded to answer (a run's checkpoints, stepped through in Chat) are bounded in number:
the least recently asked for is unloaded, and asking for it again loads it back."""

import pytest

from playground import checkpoints, prompts, weights
from playground.data import Record
from playground.generation import GenerationSettings, generate
from playground.manager import ModelManager
from tests_helpers import small_dataset, train_tiny_run


@pytest.fixture(scope="module")
def run_with_ten_checkpoints(tiny_model_dir, tmp_path_factory):
    models = tmp_path_factory.mktemp("checkpoint-store")
    train_tiny_run(tiny_model_dir, models, "ten", small_dataset(), max_steps=22, checkpoint_every=2)
    return models


def test_stepping_through_ten_checkpoints_keeps_adapters_bounded(run_with_ten_checkpoints, tiny_model_dir):
    manager = ModelManager(run_with_ten_checkpoints, tokenizer_spec=str(tiny_model_dir), dtype="float32")
    manager.model(str(tiny_model_dir))
    steps = [c.step for c in checkpoints.list_checkpoints(run_with_ten_checkpoints / "runs" / "ten")]
    assert len(steps) >= 10
    sizes = []
    for step in steps:
        side, _ = manager.tuned_side("ten", checkpoint=step)
        assert side.weights.has_adapter(side.adapter)
        sizes.append(manager.memory_report()["adapters"])
    loaded = side.weights.model.peft_config
    assert len(loaded) == weights.MAX_LOADED_ADAPTERS
    assert f"ten-step{steps[0]}" not in loaded and f"ten-step{steps[-1]}" in loaded
    assert max(sizes) == sizes[weights.MAX_LOADED_ADAPTERS]  # grows to the bound, then stays

    first, _ = manager.tuned_side("ten", checkpoint=steps[0])  # unloaded above: loaded back, and answers
    tokenizer = manager.tokenizer(str(tiny_model_dir))
    prompt = prompts.render(Record("Repeat the word apple.", "", ""), "alpaca", tokenizer).inference
    [answer] = generate([(first, prompt)], tokenizer, "alpaca", GenerationSettings(max_new_tokens=4))
    assert answer.strip()
