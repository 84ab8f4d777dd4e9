"""Export formats: one `ExportFormat` each in `FORMATS`, added with `register_format()`.

A format carries what the runner, the `export` command and the Export tab need of it: its label,
whether it writes a GGUF file (the model's architecture checked first), takes a GGUF type and ends
with the parity check, its writer and the files that writer makes, and the model it creates on a
server. The GGUF types are `gguf_file.QUANTS`.
"""

from __future__ import annotations

import gc
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .. import store
from ..errors import PlaygroundError
from . import gguf_file, gguf_lora, hf, modelfile, tuned
from .prompt_format import PromptFormat, adds_bos, jinja_template

if TYPE_CHECKING:
    from .runner import ExportRequest

Progress = Callable[[float, str], None]


@dataclass
class Build:
    """One export in the making: the run, its tokenizer, prompt format and stop tokens, and the hidden
    folder its files are written to (renamed into place at the end)."""
    manager: Any
    facts: tuned.RunFacts
    request: ExportRequest
    tokenizer: Any
    found: PromptFormat
    stops: list[int]
    work: Path
    report: Progress
    stop: threading.Event | None = None
    # What the parity check runs in llama.cpp when it is not `gguf_path` alone: (base model, LoRA adapter)
    llama_files: tuple[Path, Path | None] | None = None
    # The app's answers to the parity check's prompts, by what was asked (shared by the exports of one comparison)
    app_answers: dict[Any, list[str]] = field(default_factory=dict)
    bases_dir: Path | None = None  # where a base GGUF missing from the store is written (default: the store)

    @property
    def gguf_path(self) -> Path:
        return self.work / modelfile.GGUF_NAME

    @property
    def checked_files(self) -> tuple[Path, Path | None]:
        return self.llama_files or (self.gguf_path, None)

    @property
    def stop_texts(self) -> list[str]:
        return [self.tokenizer.convert_ids_to_tokens(token) for token in self.stops]


@dataclass(frozen=True)
class ExportFormat:
    name: str
    label: str                      # as the Export tab lists it
    write: Callable[[Build], None]  # the format's files, written into `build.work`
    files: tuple[str, ...]          # what `write` always makes; README.md and export.json come with every format
    gguf: bool = False              # writes `build.gguf_path`: the model's architecture is checked before anything
    quantised: bool = False         # takes a GGUF type (--quant; an adapter's: its base's); default folder FORMAT-QUANT
    parity: bool = False            # ends with llama.cpp's answers on `build.gguf_path` checked against the app's
    # Creates the model on a server from the built files, before they move into place (a failure
    # replaces nothing); returns what it did, or the command that would do it.
    create: Callable[[Build, Path], str] | None = None
    note: str = ""                  # how to use what it wrote, said after every export of it


FORMATS: dict[str, ExportFormat] = {}


def register_format(fmt: ExportFormat) -> ExportFormat:
    """Add a format everywhere: `export --format`, the Export tab and `export_run`."""
    FORMATS[fmt.name] = fmt
    return fmt


def format_of(name: str) -> ExportFormat:
    if name not in FORMATS:
        raise PlaygroundError(f"Unknown export format {name!r}: choose one of {', '.join(FORMATS)}.")
    return FORMATS[name]


def _merging(build: Build, fraction: float) -> None:
    build.report(fraction, "Merging the adapter into a copy of the base model" if build.facts.is_lora
                 else "Loading the weights")


def write_adapter(build: Build) -> None:
    hf.write_adapter(build.facts, build.work)


def write_hf(build: Build) -> None:
    _merging(build, 0.05)
    model = tuned.merged_model(build.facts, build.manager.models_dir)
    build.report(0.5, "Writing safetensors, tokenizer and generation config")
    hf.write_hf(model, build.tokenizer, build.work, jinja_template(build.found), build.stops)


def write_gguf(build: Build) -> None:
    _merging(build, 0.02)
    model = tuned.merged_model(build.facts, build.manager.models_dir)
    quant = build.request.quant
    gguf_file.write_gguf(model, build.tokenizer, build.gguf_path, quant, jinja_template(build.found),
                         adds_bos(build.tokenizer), build.stops, f"{build.facts.name} ({quant})",
                         on_progress=lambda f, text: build.report(0.1 + 0.4 * f, text), stop=build.stop)
    del model
    gc.collect()  # the merged copy is freed before the parity check loads the file


ADAPTER_GGUF = modelfile.ADAPTER_NAME
BASES_FOLDER = "gguf-bases"  # in the models folder: each base model's F16 GGUF, written once for its adapters


def base_gguf(build: Build, base: Any) -> Path:
    """The base model's GGUF of the asked type in the store, written the first time an adapter of it is
    exported at that type: the file an adapter GGUF runs on (llama.cpp's --lora, Ollama's ADAPTER),
    shared by every run of that base. The adapter stays in float on it: a 4-bit base keeps what the
    fine-tune changed, where a 4-bit merged model rounds small changes away."""
    facts, quant = build.facts, build.request.quant
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", facts.spec).strip("-.")
    name = f"{slug}.{quant}.gguf"
    kept = build.manager.models_dir / BASES_FOLDER / name
    if kept.is_file():
        build.report(0.5, f"The base model's GGUF: {kept} (written before)")
        return kept
    path = (build.bases_dir or kept.parent) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        # the base model's own chat template and end marker: the file is not any one run's
        tokenizer = build.tokenizer
        gguf_file.write_gguf(base, tokenizer, partial, quant, getattr(tokenizer, "chat_template", None) or "",
                             adds_bos(tokenizer), [tokenizer.eos_token_id], f"{facts.spec} (base, {quant})",
                             stop=build.stop,
                             on_progress=lambda f, text: build.report(0.15 + 0.35 * f, f"The base model's GGUF: {text}"))
        os.replace(partial, path)  # whole or not at all: another export may read it next
    finally:
        partial.unlink(missing_ok=True)
    return path


def write_gguf_lora(build: Build) -> None:
    """The LoRA adapter alone in llama.cpp's adapter format (float), for the base model's GGUF of the
    asked type in the store (`base_gguf`), which the parity check runs it on."""
    import torch

    facts = build.facts
    if not facts.is_lora:
        raise PlaygroundError(f"Run {facts.record.run_id} is a full fine-tune: it has no adapter. Export it as "
                              "gguf instead.")
    base = store.load_model(facts.spec, build.manager.models_dir, dtype=torch.float32)
    name = f"{facts.name} (LoRA adapter)"
    gguf_lora.write_lora_gguf(facts.weights.folder, base.config, build.work / ADAPTER_GGUF, name,
                              on_progress=lambda f, text: build.report(0.05 + 0.1 * f, text), stop=build.stop)
    build.llama_files = (base_gguf(build, base), build.work / ADAPTER_GGUF)
    del base
    gc.collect()


def write_ollama(build: Build) -> None:
    write_gguf(build)
    (build.work / "Modelfile").write_text(modelfile.modelfile_text(build.found, build.stop_texts), encoding="utf-8")


def write_ollama_lora(build: Build) -> None:
    write_gguf_lora(build)
    base, _ = build.checked_files
    (build.work / "Modelfile").write_text(modelfile.modelfile_text(build.found, build.stop_texts, base=base),
                                          encoding="utf-8")


def create_ollama(build: Build, folder: Path) -> str:
    """The model created on the server from the files in `build.work` (to be moved to `folder`), or the
    command to create it when there is no server. A server that fails while creating fails the export."""
    request = build.request
    name = request.ollama_name or modelfile.model_name(build.facts.name)
    host = modelfile.server_host(request.ollama_host)
    if not request.create_on_server or not modelfile.reachable(host):
        return f"No Ollama server at {host}: create the model with\n  {modelfile.create_command(folder, name)}"
    try:
        model, adapter = build.checked_files
        modelfile.create(host, name, model, build.found, build.stop_texts,
                         on_progress=lambda f, text: build.report(0.99, text), adapter=adapter)
    except PlaygroundError as exc:
        kept = f"the earlier export in {folder} is unchanged" if folder.is_dir() else "nothing was written"
        raise PlaygroundError(f"The Ollama export failed: {exc} The model was not created and {kept}.") from None
    return f"Created the Ollama model {name} at {host}: ollama run {name}"


# In the order the tab and `--help` list them.
register_format(ExportFormat("adapter", "Adapter (peft)", write_adapter, hf.ADAPTER_FILES))
register_format(ExportFormat("hf", "Hugging Face folder (merged)", write_hf,
                             ("config.json", "generation_config.json", "tokenizer_config.json", "chat_template.jinja")))
register_format(ExportFormat("gguf", "GGUF (llama.cpp)", write_gguf, (modelfile.GGUF_NAME,),
                             gguf=True, quantised=True, parity=True))
register_format(ExportFormat("gguf-lora", "LoRA adapter GGUF (on the base model's GGUF)", write_gguf_lora,
                             (ADAPTER_GGUF,), gguf=True, quantised=True, parity=True,
                             note="Use adapter.gguf on the base model's GGUF (its path is below): `llama-server -m "
                                  "BASE.gguf --lora adapter.gguf`, or in an Ollama Modelfile `FROM BASE.gguf` and "
                                  "`ADAPTER ./adapter.gguf` (the ollama-lora format writes that). The parity check "
                                  "ran it on that file."))
register_format(ExportFormat("ollama", "Ollama model", write_ollama, (modelfile.GGUF_NAME, "Modelfile"),
                             gguf=True, quantised=True, parity=True, create=create_ollama))
register_format(ExportFormat("ollama-lora", "Ollama model: the LoRA adapter on the base model (ADAPTER)",
                             write_ollama_lora, (ADAPTER_GGUF, "Modelfile"), gguf=True, quantised=True, parity=True,
                             create=create_ollama,
                             note="The Modelfile reads the base model's GGUF from the store (FROM) and puts "
                                  "./adapter.gguf on it (ADAPTER): the adapters of one base share its file, on disk "
                                  "and on the Ollama server."))
