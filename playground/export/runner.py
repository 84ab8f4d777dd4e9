"""One export of a run, start to end: checks, the files built in a temporary folder and moved into place,
the parity check for GGUF and Ollama, the Ollama model, and the record kept with the run."""

from __future__ import annotations

import gc
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from .. import runs, store
from ..errors import PlaygroundError
from ..generation import GenerationSettings
from . import gguf_file, hf, modelfile, parity, records, target, tuned
from .prompt_format import adds_bos, jinja_template, prompt_format

FORMATS = ("adapter", "hf", "gguf", "ollama")
Progress = Callable[[float, str], None]


@dataclass
class ExportRequest:
    run_id: str
    format: str
    out: Path | None = None          # default: the run folder's exports/<format>[-<quant>]
    quant: str = "f16"
    force: bool = False
    parity_count: int = 10           # test prompts answered by the app and by llama.cpp
    max_new_tokens: int = 64
    ollama_host: str | None = None   # default: $OLLAMA_HOST or http://127.0.0.1:11434
    ollama_name: str | None = None   # default: playground-<run id>
    create_on_server: bool = True    # create the Ollama model when a server answers

    def check(self) -> None:
        if self.format not in FORMATS:
            raise PlaygroundError(f"Unknown export format {self.format!r}: choose one of {', '.join(FORMATS)}.")
        self.quant = gguf_file.check_quant(self.quant)
        if not 1 <= self.parity_count <= 1000:
            raise PlaygroundError("The parity check needs between 1 and 1000 test prompts.")


@dataclass
class ExportResult:
    folder: Path
    files: list[target.FileEntry]
    parity: parity.ParityResult | None = None
    ollama: str = ""                 # the model created on the server, or the command to create it
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"Exported to {self.folder}:"]
        out += [f"  {entry.name}  {entry.size_text}" for entry in self.files]
        if self.parity is not None:
            out.append(f"Parity with the app: {self.parity.summary}.")
            for diff in self.parity.differences:
                out.append(f"  record {diff.record}: first different token #{diff.token}: llama.cpp "
                           f"{token_text(diff.gguf_token)}, the app {token_text(diff.app_token)}")
        if self.ollama:
            out.append(self.ollama)
        return out + self.notes


def token_text(token: str) -> str:
    """A token as shown in a parity report; an empty one means that answer had ended."""
    return repr(token) if token else "(its answer ended)"


def default_out(models_dir: Path, run_id: str, fmt: str, quant: str) -> Path:
    suffix = f"-{quant}" if fmt in ("gguf", "ollama") else ""
    return runs.runs_dir(models_dir) / run_id / "exports" / f"{fmt}{suffix}"


def export_run(manager: Any, request: ExportRequest, on_progress: Progress | None = None,
               stop: threading.Event | None = None) -> ExportResult:
    request.check()
    models_dir = manager.models_dir
    request.run_id = runs.check_run_id(models_dir, request.run_id)
    facts = tuned.run_facts(models_dir, request.run_id)
    out = Path(request.out or default_out(models_dir, request.run_id, request.format, request.quant))
    target.check_target(out.expanduser().resolve(), request.force)
    if request.format in ("gguf", "ollama"):
        gguf_file.architecture(_config_of(facts, models_dir))
    report = on_progress or (lambda fraction, text: None)
    report(0.0, "Loading the tokenizer")
    tokenizer = manager.tokenizer(facts.spec)
    found = prompt_format(facts.style, tokenizer, facts.template)
    stops = tuned.stop_tokens(facts, tokenizer)
    result = ExportResult(out, [])
    with target.building(out, request.force) as work:
        result.parity = _write_files(manager, facts, request, tokenizer, found, stops, work, report, stop)
        _write_manifest(work, request, result)
        if stop is not None and stop.is_set():
            raise PlaygroundError("Export stopped: nothing was written.")
        if request.format == "ollama":  # before the files move into place: a failure replaces nothing
            result.ollama = _ollama(request, out.expanduser().resolve(), work, found,
                                    _stop_texts(tokenizer, stops), report)
    result.folder = out.expanduser().resolve()
    result.files = target.list_files(result.folder)
    if request.format in ("gguf", "ollama") and result.parity is None:
        result.notes.append(parity.MISSING_NOTE)
    if request.format in ("gguf", "ollama") and request.quant != "f16":
        result.notes.append(gguf_file.K_QUANT_NOTE)
    records.append(facts.record.folder, _entry(request, result))
    report(1.0, "Done")
    return result


def _write_files(manager: Any, facts: tuned.RunFacts, request: ExportRequest, tokenizer: Any, found: Any,
                 stops: list[int], work: Path, report: Progress,
                 stop: threading.Event | None) -> parity.ParityResult | None:
    """The export's files in `work`; the parity check's result for GGUF and Ollama."""
    checked = None
    if request.format == "adapter":
        hf.write_adapter(facts, work)
    elif request.format == "hf":
        _write_hf(facts, manager.models_dir, tokenizer, found, stops, work, report)
    else:
        checked = _write_gguf(manager, facts, request, tokenizer, found, stops, work, report, stop)
    card = hf.model_card(facts, manager.models_dir, found, found.render("{instruction}", "{input}"), request.format,
                         checked.as_dict() if checked else None)
    (work / "README.md").write_text(card, encoding="utf-8")
    if request.format == "ollama":
        (work / "Modelfile").write_text(modelfile.modelfile_text(found, _stop_texts(tokenizer, stops)),
                                        encoding="utf-8")
    return checked


def _config_of(facts: tuned.RunFacts, models_dir: Path) -> Any:
    weights = facts.record.folder / "weights"
    spec = str(weights) if weights.is_dir() else facts.spec
    return SimpleNamespace(model_type=store.model_type(spec, models_dir))


def _write_hf(facts: tuned.RunFacts, models_dir: Path, tokenizer: Any, found: Any, stops: list[int], work: Path,
              report: Progress) -> None:
    report(0.05, "Merging the adapter into a copy of the base model" if facts.is_lora else "Loading the weights")
    model = tuned.merged_model(facts, models_dir)
    report(0.5, "Writing safetensors, tokenizer and generation config")
    hf.write_hf(model, tokenizer, work, jinja_template(found), stops)


def _write_gguf(manager: Any, facts: tuned.RunFacts, request: ExportRequest, tokenizer: Any, found: Any,
                stops: list[int], work: Path, report: Progress,
                stop: threading.Event | None) -> parity.ParityResult | None:
    report(0.02, "Merging the adapter into a copy of the base model" if facts.is_lora else "Loading the weights")
    model = tuned.merged_model(facts, manager.models_dir)
    path = work / modelfile.GGUF_NAME
    bos = adds_bos(tokenizer)
    gguf_file.write_gguf(model, tokenizer, path, request.quant, jinja_template(found), bos, stops,
                         f"{facts.record.run_id} ({request.quant})",
                         on_progress=lambda f, text: report(0.1 + 0.4 * f, text), stop=stop)
    del model
    gc.collect()
    if not parity.llama_cpp_installed():
        return None
    settings = GenerationSettings(max_new_tokens=request.max_new_tokens)
    return parity.check(manager, facts.record.run_id, path, tokenizer, facts.style, facts.template, stops, bos,
                        request.parity_count, settings, stop, lambda f, text: report(0.5 + 0.5 * f, text))


def _stop_texts(tokenizer: Any, stops: list[int]) -> list[str]:
    return [tokenizer.convert_ids_to_tokens(token) for token in stops]


def _ollama(request: ExportRequest, folder: Path, work: Path, found: Any, stop_texts: list[str],
            report: Progress) -> str:
    """The model created on the server from the files in `work` (to be moved to `folder`), or the
    command to create it when there is no server. A server that fails while creating fails the export."""
    name = request.ollama_name or modelfile.model_name(request.run_id)
    host = modelfile.server_host(request.ollama_host)
    if not request.create_on_server or not modelfile.reachable(host):
        return f"No Ollama server at {host}: create the model with\n  {modelfile.create_command(folder, name)}"
    try:
        modelfile.create(host, name, work / modelfile.GGUF_NAME, found, stop_texts,
                         on_progress=lambda f, text: report(0.99, text))
    except PlaygroundError as exc:
        kept = f"the earlier export in {folder} is unchanged" if folder.is_dir() else "nothing was written"
        raise PlaygroundError(f"The Ollama export failed: {exc} The model was not created and {kept}.") from None
    return f"Created the Ollama model {name} at {host}: ollama run {name}"


def _write_manifest(work: Path, request: ExportRequest, result: ExportResult) -> None:
    manifest = {"run": request.run_id, "format": request.format, "time": time.time(),
                "quant": request.quant if request.format in ("gguf", "ollama") else None,
                "parity": result.parity.as_dict() if result.parity else None}
    (work / target.MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")


def _entry(request: ExportRequest, result: ExportResult) -> dict[str, Any]:
    return {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "format": request.format,
            "quant": request.quant if request.format in ("gguf", "ollama") else None, "folder": str(result.folder),
            "files": [{"name": f.name, "bytes": f.size} for f in result.files],
            "parity": result.parity.as_dict() if result.parity else None, "ollama": result.ollama or None}
