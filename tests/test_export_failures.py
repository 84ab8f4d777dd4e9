"""A failed export leaves the earlier one as it was and says what failed."""

import pytest

from ollama_standin import OllamaStandin
from playground.errors import PlaygroundError
from playground.export import ExportRequest, export_run
from playground.manager import ModelManager

RUN = "tiny-run"


def ollama_export(manager, out, server, force=False):
    return export_run(manager, ExportRequest(run_id=RUN, format="ollama", quant="f16", out=out, force=force,
                                             parity_count=1, max_new_tokens=4, ollama_host=server.url,
                                             ollama_name="tiny-tuned"))


def test_a_server_that_drops_the_connection_while_creating_replaces_nothing(tiny_run, tiny_model_dir, tmp_path):
    manager = ModelManager(tiny_run, tokenizer_spec=str(tiny_model_dir), dtype="float32")
    out = tmp_path / "ollama-export"
    with OllamaStandin() as server:
        first = ollama_export(manager, out, server)
    assert "Created the Ollama model tiny-tuned" in first.ollama
    manifest = (out / "export.json").read_bytes()
    log = tiny_run / "runs" / RUN / "exports.jsonl"
    entries = log.read_text().splitlines()

    with OllamaStandin(create_drops=True) as server:
        with pytest.raises(PlaygroundError) as failure:
            ollama_export(manager, out, server, force=True)
        assert "tiny-tuned:latest" not in server.created
    message = str(failure.value)
    assert "The Ollama export failed" in message and "failed while creating tiny-tuned" in message
    assert f"the earlier export in {out.resolve()} is unchanged" in message
    assert (out / "export.json").read_bytes() == manifest
    assert log.read_text().splitlines() == entries
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no build folder left
