"""Export tab: take a tuned run home as an adapter, a merged Hugging Face folder, a GGUF file or an Ollama
model; GGUF and Ollama exports end with a parity check against the app's own answers."""

from __future__ import annotations

import html
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr

from .. import runs
from ..errors import PlaygroundError
from ..export import FORMATS, ExportRequest, export_run
from ..export.parity import COST_COLUMNS, cost_row
from ..export.runner import token_text
from ..export import records as export_records
from ..export.gguf_file import QUANT_NOTE, QUANTS
from ..export.target import human_size
from .common import Form, SessionStops, Shared, checkpoint_step, checkpoint_update, notice, pick, run_label

EMPTY = "Pick a run and a format, then press Export. The files and, for GGUF and Ollama, the parity check appear here."


@dataclass
class Running:
    """An export being written: what, since when, how far, and its Stop flag."""
    run_id: str
    what: str
    session: str  # the browser session that started it (it sees the progress bar; the others this)
    stop: threading.Event
    started: float = field(default_factory=time.time)
    fraction: float = 0.0
    text: str = "Starting"

    def describe(self) -> str:
        took = int(time.time() - self.started)
        return (f"Run {html.escape(self.run_id)} is being exported as {html.escape(self.what)} (started "
                f"{time.strftime('%H:%M:%S', time.localtime(self.started))}, {took // 60}:{took % 60:02d} ago): "
                f"{self.fraction:.0%} · {html.escape(self.text)}. Stop stops it; nothing half-written is kept.")


class RunningExports:
    """The exports this app is writing, by run, so that a reload or another browser sees one (and can
    stop it) and a second export of the same run waits for the first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_run: dict[str, Running] = {}

    def start(self, running: Running) -> None:
        with self._lock:
            now = self._by_run.get(running.run_id)
            if now is not None:
                raise PlaygroundError(f"Run {running.run_id} is being exported already ({now.what}, {now.text}): "
                                      "wait for it, or stop it first.")
            self._by_run[running.run_id] = running

    def finish(self, run_id: str) -> None:
        with self._lock:
            self._by_run.pop(run_id, None)

    def of(self, run_id: str | None) -> Running | None:
        with self._lock:
            return self._by_run.get(run_id) if run_id else None


def session_of(request: gr.Request | None) -> str:
    return request.session_hash if request is not None and request.session_hash else ""


def saved_runs(manager: Any) -> list[tuple[str, str]]:
    """Runs with a saved adapter or weights that are not training now, then the damaged runs (an
    export of one is refused with what is wrong)."""
    listed = runs.list_runs(manager.models_dir)
    return [(run_label(r), r.run_id) for r in listed if r.has_weights and r.state != "running"] + \
        [(run_label(r), r.run_id) for r in listed if r.damage]


def format_choices() -> list[tuple[str, str]]:
    """(label, name) of every registered export format."""
    return [(fmt.label, fmt.name) for fmt in FORMATS.values()]


def quant_choices() -> list[tuple[str, str]]:
    """(label, name) of every GGUF type."""
    return [(quant.label, quant.name) for quant in QUANTS.values()]


def layout(manager: Any) -> SimpleNamespace:
    """The tab's components: what to export and how (`ui.form`), the buttons and what came out."""
    ui = SimpleNamespace(form=Form())
    gr.Markdown("Writes a run's tuned model where other tools read it: the **adapter** for peft, a **Hugging Face "
                "folder** with the adapter merged in, a **GGUF** file for llama.cpp, or an **Ollama** model; or, for a "
                "LoRA run, the adapter alone as GGUF, run on the base model's GGUF (a few MB per run). The run's "
                "prompt style becomes the chat template, and its end markers the stop tokens. A GGUF or Ollama "
                "export then answers the run's test prompts in llama.cpp and compares with the app's answers. "
                + QUANT_NOTE)
    form = ui.form
    with gr.Row(equal_height=True):
        form.run = gr.Dropdown(saved_runs(manager), value=None, label="Run", scale=3, elem_id="export-run")
        form.checkpoint = gr.Dropdown([("final weights", "")], value="", label="Weights", scale=2,
                                      elem_id="export-checkpoint")
        form.format = gr.Radio(format_choices(), value="gguf", label="Format", scale=3, elem_id="export-format")
        form.quant = gr.Radio(quant_choices(), value="f16", label="GGUF type (an adapter's: its base model's)", scale=2,
                              elem_id="export-quant")
    with gr.Row(equal_height=True):
        form.folder = gr.Textbox(label="Folder (empty: the run's exports/FORMAT folder, replaced each time)", scale=3,
                                 elem_id="export-folder")
        form.force = gr.Checkbox(label="Replace an earlier export in that folder", scale=1)
        form.count = gr.Slider(1, 50, value=10, step=1, label="Parity check: test prompts", scale=2,
                               elem_id="export-parity-count")
        form.host = gr.Textbox(value="", label="Ollama server (empty: $OLLAMA_HOST or 127.0.0.1:11434)", scale=2,
                               visible=False, elem_id="export-host")
    with gr.Row():
        ui.start = gr.Button("Export", variant="primary", scale=3, elem_id="export-start")
        ui.stop = gr.Button("Stop", variant="stop", scale=1, elem_id="export-stop")
    ui.message = gr.HTML(notice(EMPTY), elem_id="export-message")
    ui.running = gr.HTML(visible=False, elem_id="export-running")
    ui.files = gr.HTML(elem_id="export-files")
    ui.parity = gr.HTML(elem_id="export-parity")
    return ui


def format_switched(name: str) -> tuple[Any, Any, Any]:
    """The GGUF types, the parity count and the Ollama address, each shown when the format uses it."""
    chosen = FORMATS[name]
    return (gr.update(visible=chosen.quantised), gr.update(visible=chosen.parity),
            gr.update(visible=chosen.create is not None))


def export(manager: Any, exports: RunningExports, form: SimpleNamespace, session: str, stop: threading.Event,
           progress: Any) -> tuple[Any, Any, Any]:
    """(message, files, parity check) of one export."""
    if not form.run:
        return notice("Pick a run first (train one in the Train tab).", "error"), gr.skip(), gr.skip()
    typed = (form.folder or "").strip()
    step = checkpoint_step(form.checkpoint)
    request = ExportRequest(run_id=form.run, format=form.format, quant=form.quant, parity_count=int(form.count),
                            out=Path(typed) if typed else None, force=bool(form.force) or not typed,
                            ollama_host=(form.host or "").strip() or None, checkpoint=step)
    what = (form.format + (f" {form.quant.upper()}" if FORMATS[form.format].quantised else "")
            + (f" (checkpoint at step {step})" if step is not None else ""))
    running = Running(form.run, what, session, stop)

    def report(fraction: float, text: str) -> None:
        running.fraction, running.text = fraction, text
        progress(fraction, desc=text)

    try:
        exports.start(running)
    except PlaygroundError as exc:
        return notice(str(exc), "error"), gr.skip(), gr.skip()
    try:
        progress(0, desc="Starting the export")
        result = export_run(manager, request, on_progress=report, stop=stop)
    except PlaygroundError as exc:
        return notice(str(exc), "error"), gr.skip(), gr.skip()
    finally:
        exports.finish(form.run)
    text = (f"Exported run {form.run}" + (f"'s checkpoint at step {step}" if step is not None else "")
            + f" as {form.format} to {result.folder}.")
    if result.ollama:
        text += "\n" + result.ollama
    text += "".join("\n" + note for note in result.notes)
    return (notice(text, "ok"), files_html([(f.name, f.size) for f in result.files]),
            parity_html(result.parity.as_dict() if result.parity else None,
                        gguf_file_of([(f.name, f.size) for f in result.files]), result.base_gguf))


def last_export(manager: Any, run_id: str | None) -> tuple[str, str, str]:
    """The run's latest export as recorded, so it shows again after a reload."""
    try:
        entries = export_records.read(runs.read(manager.models_dir, run_id).folder) if run_id else []
    except PlaygroundError as exc:
        return notice(str(exc), "error"), "", ""
    if not entries:
        return notice(EMPTY), "", ""
    last = entries[-1]
    head = (f"The last export of this run ({last['time']}): {last['format']}"
            + (f" {last['quant']}" if last.get("quant") else "")
            + (f" of the checkpoint at step {last['checkpoint']}" if last.get("checkpoint") is not None else "")
            + f" in {last['folder']}.")
    files = [(f["name"], f["bytes"]) for f in last["files"]]
    return notice(head), files_html(files), parity_html(last.get("parity"), gguf_file_of(files), last.get("base_gguf"))


def watch(manager: Any, exports: RunningExports, run_id: str | None, session: str, watching: bool) -> tuple[Any, ...]:
    """A timer's look at the picked run: (running panel, message, files, parity, watching). An export
    another page started (this browser before a reload, or another one) shows with its progress; when
    it ends, its result replaces the panel."""
    running = exports.of(run_id)
    if running is not None and running.session != session:
        return gr.update(value=notice(running.describe(), "info"), visible=True), gr.skip(), gr.skip(), gr.skip(), True
    if watching:
        return (gr.update(value="", visible=False), *last_export(manager, run_id), False)
    return gr.skip(), gr.skip(), gr.skip(), gr.skip(), False


def build(shared: Shared, tab: gr.Tab) -> None:
    manager, stops, exports = shared.manager, SessionStops(), RunningExports()
    ui = layout(manager)
    form, shown = ui.form, [ui.message, ui.files, ui.parity]
    form.format.change(format_switched, form.format, [form.quant, form.count, form.host])

    def on_export(request: gr.Request, progress=gr.Progress(), *values):
        return export(manager, exports, form.read(values), session_of(request), stops.fresh(request), progress)

    ui.start.click(on_export, form.inputs(), shown, show_progress_on=[ui.message])

    def on_stop(run_id: str | None, request: gr.Request):
        stops.stop(request)
        running = exports.of(run_id)  # started by another page: this browser before a reload, or another one
        if running is not None:
            running.stop.set()
        return notice("Stopping: nothing half-written is kept.", "warn")

    ui.stop.click(on_stop, form.run, ui.message)

    def refresh(current, checkpoint):
        choices = saved_runs(manager)
        value = pick(choices, current)
        return (gr.update(choices=choices, value=value), checkpoint_update(manager, value, checkpoint),
                *last_export(manager, value))

    def run_picked(run_id: str | None):  # another run: its final weights first
        return checkpoint_update(manager, run_id), *last_export(manager, run_id)

    form.run.change(run_picked, form.run, [form.checkpoint, *shown])
    gr.on([shared.app.load, tab.select], refresh, [form.run, form.checkpoint], [form.run, form.checkpoint, *shown])
    watching = gr.State(False)

    def on_tick(run_id: str | None, seen: bool, request: gr.Request):
        return watch(manager, exports, run_id, session_of(request), seen)

    gr.Timer(2.0).tick(on_tick, [form.run, watching], [ui.running, *shown, watching], show_progress="hidden")


def files_html(files: list[tuple[str, int]]) -> str:
    rows = "".join(f"<tr><td>{html.escape(name)}</td><td style='text-align:right'>{human_size(size)}</td></tr>"
                   for name, size in files)
    return f'<table class="pg-findings"><tr><th>File</th><th>Size</th></tr>{rows}</table>'


def gguf_file_of(files: list[tuple[str, int]]) -> tuple[str, int] | None:
    return next(((name, size) for name, size in files if name.endswith(".gguf")), None)


def parity_html(parity: dict[str, Any] | None, gguf: tuple[str, int] | None = None,
                base: str | Path | None = None) -> str:
    """The parity check: its summary, what the file costs (a row of the cost table; an adapter's size with its
    base model's GGUF `base`) and the answers that differ."""
    if not parity:
        return ""
    kind = "ok" if parity["identical"] == parity["total"] else "warn"
    rows = "".join(
        f"<tr><td>{d['record']}</td><td>{html.escape(d['instruction'])}</td><td>{d['token']}</td>"
        f"<td>{html.escape(token_text(d['app_token']))}</td><td>{html.escape(token_text(d['gguf_token']))}</td>"
        f"<td>{html.escape(d['app'])}</td><td>{html.escape(d['gguf'])}</td></tr>" for d in parity["differences"])
    table = ("" if not rows else '<table class="pg-findings"><tr><th>Record</th><th>Instruction</th>'
             "<th>First different token</th><th>App</th><th>llama.cpp</th><th>App's answer</th>"
             f"<th>llama.cpp's answer</th></tr>{rows}</table>")
    name, size = gguf or ("model.gguf", None)
    size_text = human_size(size) if size is not None else "–"
    if base and Path(base).is_file():
        size_text += f" + {human_size(Path(base).stat().st_size)} base"
    cells = cost_row(name, size_text, parity)
    cost = ('<table class="pg-findings" id="export-cost"><tr>' + "".join(f"<th>{c}</th>" for c in COST_COLUMNS)
            + "</tr><tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr></table>")
    return notice(f"Parity with the app: {parity['summary']}.", kind) + cost + table
