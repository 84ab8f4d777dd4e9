"""Variants trained one after another: ordinary runs on the same data, split and seeds."""

import json

import pytest

from playground import comparison, experiments
from playground.errors import PlaygroundError
from playground.manager import ModelManager
from playground.training import TrainConfig
from tests_helpers import small_dataset


def base_config(model_dir, **changes):
    return TrainConfig(**{"model": str(model_dir), "max_steps": 2, "batch_size": 4, "probes": 0, "eval_every": 0,
                          "probe_every": 0, "lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0, **changes})


def test_variants_run_one_after_another_and_differ_only_in_what_they_change(tiny_model_dir, tmp_path):
    manager = ModelManager(tmp_path, tokenizer_spec=str(tiny_model_dir))
    names = ["the settings above", "exercise 7.1: the Phi-3 prompt style", "exercise 7.2: mask the instruction and input"]
    experiment = manager.start_experiment(small_dataset(), experiments.variant_configs(base_config(tiny_model_dir), names))
    experiment.thread.join(300)
    assert not experiment.running and experiment.outcomes == ["finished"] * 3
    run_ids = experiment.run_ids
    assert len(set(run_ids)) == 3
    saved = [json.loads((tmp_path / "runs" / r / "data.json").read_text()) for r in run_ids]
    assert len({(d["sha256"], json.dumps(d["indices"])) for d in saved}) == 1  # the same data and split
    differing = comparison.differing_settings(comparison.compare(tmp_path, run_ids))
    changed = {row["setting"]: [row[r] for r in run_ids] for row in differing}
    assert changed["style"] == ["alpaca", "phi3", "alpaca"]
    assert changed["mask"] == ["none", "none", "instruction"]
    assert set(changed) <= {"style", "mask"}
    assert [s.name for s in comparison.compare(tmp_path, run_ids)][1] == f"{run_ids[1]} (exercise 7.1: the Phi-3 prompt style)"
    lines = experiments.status_lines(experiment)
    assert lines[1] == f"2. exercise 7.1: the Phi-3 prompt style: run {run_ids[1]}, finished"


def test_stop_ends_the_current_run_and_skips_the_rest(tiny_model_dir, tmp_path):
    manager = ModelManager(tmp_path, tokenizer_spec=str(tiny_model_dir))
    variants = experiments.variant_configs(base_config(tiny_model_dir, max_steps=400),
                                           ["the settings above", "nothing masked", "mask the whole prompt"])
    experiment = manager.start_experiment(small_dataset(), variants)
    with pytest.raises(PlaygroundError, match="stop it before"):
        manager.start_experiment(small_dataset(), variants)
    while not experiment.run_ids:  # the first run has started
        experiment.thread.join(0.05)
    manager.stop_training()
    experiment.thread.join(300)
    assert experiment.outcomes == ["stopped"] and len(experiment.run_ids) == 1
    assert experiments.status_lines(experiment)[1:] == ["2. nothing masked: not run (stopped)",
                                                       "3. mask the whole prompt: not run (stopped)"]


def test_bad_variants_are_refused_before_anything_runs(tiny_model_dir):
    with pytest.raises(PlaygroundError, match="Unknown variant 'exercise 9'"):
        experiments.variant_configs(base_config(tiny_model_dir), ["the settings above", "exercise 9"])
    with pytest.raises(PlaygroundError, match="at least one"):
        experiments.variant_configs(base_config(tiny_model_dir), [])
    with pytest.raises(PlaygroundError, match="Variant 'full fine-tune'"):
        experiments.variant_configs(base_config(tiny_model_dir, lr=2.0), ["full fine-tune"])
