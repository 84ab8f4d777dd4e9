"""Exporting one of a run's checkpoints (a step, or "best": the one whose answers scored best) instead of
its final weights: the files hold that checkpoint's weights, the parity check answers with it in the app,
and the folder, manifest, record and model card name its step."""

import json

import pytest
from safetensors.torch import load_file

from playground import data, runs
from playground.errors import PlaygroundError
from playground.export import ExportRequest, export_run, records
from playground.manager import ModelManager
from tests_helpers import run_cli, train_tiny_run

RUN = "kept"


@pytest.fixture(scope="module")
def checkpointed_run(tiny_model_dir, tmp_path_factory):
    """A models folder with run "kept": 8 steps, a checkpoint and scored answers every 4."""
    models = tmp_path_factory.mktemp("checkpointed")
    train_tiny_run(tiny_model_dir, models, RUN, data.load("builtin"), max_steps=8, checkpoint_every=4,
                   score_answers_every=4, score_answers_sample=8, probe_tokens=16)
    return models


def adapter_of(folder):
    return load_file(str(folder / "adapter_model.safetensors"))


def test_a_checkpoint_exports_its_own_weights_and_is_named_by_its_step(checkpointed_run, tiny_model_dir):
    manager = ModelManager(checkpointed_run, tokenizer_spec=str(tiny_model_dir), dtype="float32")
    result = export_run(manager, ExportRequest(run_id=RUN, format="adapter", checkpoint=4))
    run_folder = checkpointed_run / "runs" / RUN
    assert result.folder == run_folder / "exports" / "adapter-step4"
    exported, at_step_4 = adapter_of(result.folder), adapter_of(run_folder / "checkpoints" / "step-000004" / "adapter")
    final = adapter_of(run_folder / "adapter")
    assert exported.keys() == at_step_4.keys()
    assert all((exported[name] == at_step_4[name]).all() for name in exported)
    assert any(not (exported[name] == final[name]).all() for name in exported)  # not the final weights
    assert json.loads((result.folder / "export.json").read_text())["checkpoint"] == 4
    assert records.read(run_folder)[-1]["checkpoint"] == 4
    assert "the checkpoint at step 4 of run kept" in (result.folder / "README.md").read_text()
    runs.read(checkpointed_run, RUN)  # the record with its new field still reads as a sound run


def test_the_best_checkpoint_exports_from_the_command_line_and_answers_like_the_app(checkpointed_run):
    best = runs.read(checkpointed_run, RUN).status["best_checkpoint"]["step"]
    out = checkpointed_run / "best-gguf"
    done = run_cli("export", "--run", RUN, "--checkpoint", "best", "--format", "gguf", "--out", str(out),
                   "--parity", "4", "--max-new-tokens", "8", "--models-dir", str(checkpointed_run), "--dtype", "float32")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["checkpoint"] == best
    # the app's side of the parity check is that checkpoint too: both read the same weights
    assert manifest["parity"]["identical"] == manifest["parity"]["total"] == 4, done.stdout
    assert manifest["parity"]["top1_agreement"] == 1.0 and manifest["parity"]["mean_kl"] < 1e-3
    assert "scored best" in (out / "README.md").read_text()


def test_a_step_without_a_checkpoint_is_refused_naming_the_steps_there_are(checkpointed_run, tiny_model_dir):
    manager = ModelManager(checkpointed_run, tokenizer_spec=str(tiny_model_dir), dtype="float32")
    with pytest.raises(PlaygroundError, match=r"no checkpoint at step 5 \(checkpoints: 4, 8\)"):
        export_run(manager, ExportRequest(run_id=RUN, format="adapter", checkpoint=5))
