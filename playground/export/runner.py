"""One export of a run, start to end: checks, the files built in a temporary folder and moved into place,
the parity check, the model created on a server, and the record kept with the run. What differs between
formats is in their `formats.ExportFormat`."""

from __future__ import annotations

import json
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from .. import runs, store
from ..errors import PlaygroundError
from ..generation import GenerationSettings
from . import gguf_file, hf, parity, records, target, tuned
from .formats import Build, ExportFormat, format_of
from .prompt_format import adds_bos, prompt_format

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
    checkpoint: int | str | None = None  # a checkpoint's step, or "best"; None: the run's final weights

    def check(self) -> ExportFormat:
        fmt = format_of(self.format)
        self.quant = gguf_file.check_quant(self.quant)
        if not 1 <= self.parity_count <= 1000:
            raise PlaygroundError("The parity check needs between 1 and 1000 test prompts.")
        return fmt


@dataclass
class ExportResult:
    folder: Path
    files: list[target.FileEntry]
    parity: parity.ParityResult | None = None
    ollama: str = ""                 # the model created on the server, or the command to create it
    notes: list[str] = field(default_factory=list)
    base_gguf: Path | None = None    # the base model's GGUF an adapter GGUF runs on (in the store)

    def lines(self) -> list[str]:
        out = [f"Exported to {self.folder}:"]
        out += [f"  {entry.name}  {entry.size_text}" for entry in self.files]
        if self.parity is not None:
            out.append(f"Parity with the app: {self.parity.summary}.")
            gguf = next((entry for entry in self.files if entry.name.endswith(".gguf")), None)
            row = parity.cost_row(gguf.name if gguf else "", size_text(self) if gguf else "", self.parity.as_dict())
            out += ["  " + " | ".join(parity.COST_COLUMNS), "  " + " | ".join(row)]
            for diff in self.parity.differences:
                out.append(f"  record {diff.record}: first different token #{diff.token}: llama.cpp "
                           f"{token_text(diff.gguf_token)}, the app {token_text(diff.app_token)}")
        if self.ollama:
            out.append(self.ollama)
        return out + self.notes


def token_text(token: str) -> str:
    """A token as shown in a parity report; an empty one means that answer had ended."""
    return repr(token) if token else "(its answer ended)"


def default_out(models_dir: Path, run_id: str, fmt: str, quant: str, step: int | None = None) -> Path:
    """The run's exports/FORMAT[-QUANT][-stepN] folder."""
    suffix = (f"-{quant}" if format_of(fmt).quantised else "") + (f"-step{step}" if step is not None else "")
    return runs.runs_dir(models_dir) / run_id / "exports" / f"{fmt}{suffix}"


def export_run(manager: Any, request: ExportRequest, on_progress: Progress | None = None,
               stop: threading.Event | None = None, keep_record: bool = True,
               app_answers: dict[Any, list[str]] | None = None, bases_dir: Path | None = None) -> ExportResult:
    """The export `request` asks for; `keep_record` False leaves it out of the run's exports.jsonl (a
    measurement in a temporary folder). `app_answers`, shared by several exports of one run, keeps the
    app's answers to the parity check's prompts so that it answers them once. `bases_dir` is where a
    base model's GGUF for an adapter goes when the store has none of that type (default: the store)."""
    fmt = request.check()
    models_dir = manager.models_dir
    request.run_id = runs.check_run_id(models_dir, request.run_id)
    facts = tuned.run_facts(models_dir, request.run_id, request.checkpoint)
    out = Path(request.out or default_out(models_dir, request.run_id, request.format, request.quant, facts.step))
    target.check_target(out.expanduser().resolve(), request.force)
    if fmt.gguf:
        gguf_file.architecture(_config_of(facts, models_dir))
    report = on_progress or (lambda fraction, text: None)
    report(0.0, "Loading the tokenizer")
    tokenizer = manager.tokenizer(facts.spec)
    found = prompt_format(facts.style, tokenizer, facts.template)
    result = ExportResult(out, [])
    with target.building(out, request.force) as work:
        build = Build(manager, facts, request, tokenizer, found, tuned.stop_tokens(facts, tokenizer), work, report,
                      stop, app_answers=app_answers if app_answers is not None else {}, bases_dir=bases_dir)
        result.parity = _write_files(fmt, build)
        if build.llama_files and build.llama_files[1] is not None:
            result.base_gguf = build.llama_files[0]
            result.notes.append(f"The base model's GGUF for the adapter: {result.base_gguf}")
        _write_manifest(work, request, fmt, result, facts.step)
        if stop is not None and stop.is_set():
            raise PlaygroundError("Export stopped: nothing was written.")
        if fmt.create is not None:  # before the files move into place: a failure replaces nothing
            result.ollama = fmt.create(build, out.expanduser().resolve())
    result.folder = out.expanduser().resolve()
    result.files = target.list_files(result.folder)
    if fmt.parity and result.parity is None:
        result.notes.append(parity.MISSING_NOTE)
    if fmt.note:
        result.notes.append(fmt.note)
    if keep_record:
        records.append(facts.record.folder, _entry(request, fmt, result, facts.step))
    report(1.0, "Done")
    return result


@dataclass(frozen=True)
class QuantCost:
    """One file of a comparison: a GGUF type of the merged model, or the LoRA adapter on the base model
    at that type; its size and what the parity check measured."""
    quant: str
    size: str
    parity: parity.ParityResult
    adapter: bool = False

    def row(self) -> list[str]:
        name = f"LoRA on {self.quant.upper()} base" if self.adapter else self.quant.upper()
        return list(parity.cost_row(name, self.size, self.parity.as_dict()))


def compare_quants(manager: Any, run_id: str, parity_count: int = 10, max_new_tokens: int = 64,
                   on_progress: Progress | None = None, stop: threading.Event | None = None,
                   quants: list[str] | None = None, adapters: bool | None = None,
                   checkpoint: int | str | None = None) -> list[QuantCost]:
    """The run exported to each GGUF type (`quants`, default all, F16 first) in a temporary folder
    (removed after), each measured against the app on the run's own test split; for a LoRA run (or as
    `adapters` says) also its adapter GGUF on the base model at each type. The app answers the test
    prompts once for all of them. `checkpoint` (a step or "best") measures that checkpoint instead of
    the final weights."""
    if not parity.llama_cpp_installed():
        raise PlaygroundError(parity.MISSING_NOTE)
    names = [gguf_file.check_quant(name) for name in quants] if quants else list(gguf_file.QUANTS)
    with_adapters = tuned.run_facts(manager.models_dir, run_id, checkpoint).is_lora if adapters is None else adapters
    jobs = [(fmt, quant) for fmt in ("gguf", "gguf-lora")[:1 + with_adapters] for quant in names]
    measured, app_answers = [], {}
    with tempfile.TemporaryDirectory(prefix="compare-quants-") as folder:
        for number, (fmt, quant) in enumerate(jobs):
            def report(fraction: float, text: str, number: int = number, name: str = f"{fmt} {quant.upper()}") -> None:
                if on_progress:
                    on_progress((number + fraction) / len(jobs), f"{name}: {text}")

            request = ExportRequest(run_id=run_id, format=fmt, quant=quant, out=Path(folder) / f"{fmt}-{quant}",
                                    parity_count=parity_count, max_new_tokens=max_new_tokens, checkpoint=checkpoint)
            result = export_run(manager, request, report, stop, keep_record=False, app_answers=app_answers,
                                bases_dir=Path(folder) / "bases")
            measured.append(QuantCost(quant, size_text(result), result.parity, adapter=fmt == "gguf-lora"))
    return measured


def size_text(result: ExportResult) -> str:
    """The GGUF file's size; for an adapter, its size and its base's."""
    gguf = next(entry for entry in result.files if entry.name.endswith(".gguf"))
    if result.base_gguf is None:
        return gguf.size_text
    return f"{gguf.size_text} + {target.human_size(result.base_gguf.stat().st_size)} base"


def _write_files(fmt: ExportFormat, build: Build) -> parity.ParityResult | None:
    """The format's files and the model card in `build.work`; the parity check's result when the format has one."""
    fmt.write(build)
    missing = [name for name in fmt.files if not (build.work / name).is_file()]
    if missing:
        raise PlaygroundError(f"The {fmt.name} export did not write {', '.join(missing)}.")
    checked = _parity(build) if fmt.parity and parity.llama_cpp_installed() else None
    found = build.found
    card = hf.model_card(build.facts, build.manager.models_dir, found, found.render("{instruction}", "{input}"),
                         fmt.name, checked.as_dict() if checked else None)
    (build.work / "README.md").write_text(card, encoding="utf-8")
    return checked


def _config_of(facts: tuned.RunFacts, models_dir: Path) -> Any:
    saved = facts.weights
    spec = facts.spec if saved.is_adapter else str(saved.folder)
    return SimpleNamespace(model_type=store.model_type(spec, models_dir))


def _parity(build: Build) -> parity.ParityResult:
    request, facts = build.request, build.facts
    settings = GenerationSettings(max_new_tokens=request.max_new_tokens)
    model, lora = build.checked_files
    return parity.check(build.manager, facts.record.run_id, model, build.tokenizer, facts.style,
                        facts.template, build.stops, adds_bos(build.tokenizer), request.parity_count, settings,
                        build.stop, lambda f, text: build.report(0.5 + 0.5 * f, text), lora, build.app_answers,
                        facts.step)


def _quant(request: ExportRequest, fmt: ExportFormat) -> str | None:
    return request.quant if fmt.quantised else None


def _write_manifest(work: Path, request: ExportRequest, fmt: ExportFormat, result: ExportResult,
                    step: int | None) -> None:
    manifest = {"run": request.run_id, "checkpoint": step, "format": request.format, "time": time.time(),
                "quant": _quant(request, fmt),
                "base_gguf": str(result.base_gguf) if result.base_gguf else None,
                "parity": result.parity.as_dict() if result.parity else None}
    (work / target.MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")


def _entry(request: ExportRequest, fmt: ExportFormat, result: ExportResult, step: int | None) -> dict[str, Any]:
    return {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "checkpoint": step, "format": request.format,
            "quant": _quant(request, fmt),
            "folder": str(result.folder), "files": [{"name": f.name, "bytes": f.size} for f in result.files],
            "parity": result.parity.as_dict() if result.parity else None, "ollama": result.ollama or None,
            "base_gguf": str(result.base_gguf) if result.base_gguf else None}
