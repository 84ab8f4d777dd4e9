"""A run's record reads its settings typed and says where its trained weights are."""

import json

from playground import runs
from playground.settings import TrainConfig


def _finished(models_dir, run_id, settings):
    writer = runs.RunWriter(models_dir, run_id, {"settings": settings, "device": "cpu"})
    writer.status("finished", "done", step=1)
    return writer.folder


def test_settings_come_back_typed_and_an_older_runs_mask_by_todays_name(tmp_path):
    _finished(tmp_path, "old-run", {"model": "default", "method": "lora", "style": "phi3", "mask_instruction": True,
                                    "lr": 0.001, "seed": 7})
    record = runs.read(tmp_path, "old-run")
    assert isinstance(record.config, TrainConfig)
    assert (record.config.style, record.config.mask, record.config.lr, record.config.seed) == ("phi3", "prompt", 0.001, 7)
    assert record.config.template is None and record.config.split_seed == 123  # not saved: today's defaults
    assert record.config_json["device"] == "cpu"  # the facts beside the settings stay as saved


def test_weights_say_where_and_what_they_are(tmp_path):
    folder = _finished(tmp_path, "lora-run", {"method": "lora"})
    assert runs.read(tmp_path, "lora-run").weights is None and not runs.read(tmp_path, "lora-run").has_weights
    (folder / "adapter").mkdir()
    (folder / "adapter" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (folder / "adapter" / "adapter_model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    saved = runs.read(tmp_path, "lora-run").weights
    assert saved.folder == folder / "adapter" and saved.is_adapter

    folder = _finished(tmp_path, "full-run", {"method": "full"})
    (folder / "weights").mkdir()
    (folder / "weights" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (folder / "weights" / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    saved = runs.read(tmp_path, "full-run").weights
    assert saved.folder == folder / "weights" and not saved.is_adapter


def test_a_damaged_run_has_no_weights_to_offer(tmp_path):
    folder = _finished(tmp_path, "bad-run", {"method": "lora"})
    (folder / "adapter").mkdir()
    (folder / "adapter" / "adapter_config.json").write_text("{not json")
    record = runs.examine(tmp_path, "bad-run")
    assert record.damage and record.weights is None and not record.has_weights
