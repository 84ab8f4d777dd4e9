"""Export tab: take a tuned run home as an adapter, a merged Hugging Face folder, a GGUF file or an Ollama
model; GGUF and Ollama exports end with a parity check against the app's own answers."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import gradio as gr

from .. import runs
from ..errors import PlaygroundError
from ..export import FORMATS, ExportRequest, export_run
from ..export.runner import token_text
from ..export import records as export_records
from ..export.gguf_file import K_QUANT_NOTE, QUANTS
from ..export.target import human_size
from .common import SessionStops, Shared, notice, pick, run_label

EMPTY = "Pick a run and a format, then press Export. The files and, for GGUF and Ollama, the parity check appear here."


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


def build(shared: Shared, tab: gr.Tab) -> None:
    manager = shared.manager
    stops = SessionStops()
    gr.Markdown("Writes a run's tuned model where other tools read it: the **adapter** for peft, a **Hugging Face "
                "folder** with the adapter merged in, a **GGUF** file for llama.cpp, or an **Ollama** model. The run's "
                "prompt style becomes the chat template, and its end markers the stop tokens. A GGUF or Ollama "
                "export then answers the run's test prompts in llama.cpp and compares with the app's answers. "
                + K_QUANT_NOTE)
    with gr.Row(equal_height=True):
        run = gr.Dropdown(saved_runs(manager), value=None, label="Run", scale=3, elem_id="export-run")
        fmt = gr.Radio(format_choices(), value="gguf", label="Format", scale=3, elem_id="export-format")
        quant = gr.Radio(quant_choices(), value="f16", label="GGUF type", scale=2, elem_id="export-quant")
    with gr.Row(equal_height=True):
        folder = gr.Textbox(label="Folder (empty: the run's exports/FORMAT folder, replaced each time)", scale=3,
                            elem_id="export-folder")
        force = gr.Checkbox(label="Replace an earlier export in that folder", scale=1)
        count = gr.Slider(1, 50, value=10, step=1, label="Parity check: test prompts", scale=2,
                          elem_id="export-parity-count")
        host = gr.Textbox(value="", label="Ollama server (empty: $OLLAMA_HOST or 127.0.0.1:11434)", scale=2,
                          visible=False, elem_id="export-host")
    with gr.Row():
        start = gr.Button("Export", variant="primary", scale=3, elem_id="export-start")
        stop = gr.Button("Stop", variant="stop", scale=1, elem_id="export-stop")
    message = gr.HTML(notice(EMPTY), elem_id="export-message")
    files = gr.HTML(elem_id="export-files")
    parity = gr.HTML(elem_id="export-parity")

    def on_format(fmt_value):
        chosen = FORMATS[fmt_value]
        return (gr.update(visible=chosen.quantised), gr.update(visible=chosen.parity),
                gr.update(visible=chosen.create is not None))

    fmt.change(on_format, fmt, [quant, count, host])

    def on_export(run_id, fmt_value, quant_value, count_value, folder_value, force_on, host_value,
                  request: gr.Request, progress=gr.Progress()):
        stop_event = stops.fresh(request)
        if not run_id:
            return notice("Pick a run first (train one in the Train tab).", "error"), gr.skip(), gr.skip()
        typed = (folder_value or "").strip()
        export = ExportRequest(run_id=run_id, format=fmt_value, quant=quant_value, parity_count=int(count_value),
                               out=Path(typed) if typed else None, force=bool(force_on) or not typed,
                               ollama_host=(host_value or "").strip() or None)
        try:
            progress(0, desc="Starting the export")
            result = export_run(manager, export, on_progress=lambda f, text: progress(f, desc=text), stop=stop_event)
        except PlaygroundError as exc:
            return notice(str(exc), "error"), gr.skip(), gr.skip()
        text = f"Exported run {run_id} as {fmt_value} to {result.folder}."
        if result.ollama:
            text += "\n" + result.ollama
        text += "".join("\n" + note for note in result.notes)
        return (notice(text, "ok"), files_html([(f.name, f.size) for f in result.files]),
                parity_html(result.parity.as_dict() if result.parity else None))

    start.click(on_export, [run, fmt, quant, count, folder, force, host], [message, files, parity],
                show_progress_on=[message])

    def on_stop(request: gr.Request):
        stops.stop(request)
        return notice("Stopping: nothing half-written is kept.", "warn")

    stop.click(on_stop, None, message)

    def last_export(run_id):
        """The run's latest export as recorded, so it shows again after a reload."""
        try:
            entries = export_records.read(runs.read(manager.models_dir, run_id).folder) if run_id else []
        except PlaygroundError as exc:
            return notice(str(exc), "error"), "", ""
        if not entries:
            return notice(EMPTY), "", ""
        last = entries[-1]
        head = (f"The last export of this run ({last['time']}): {last['format']}"
                + (f" {last['quant']}" if last.get("quant") else "") + f" in {last['folder']}.")
        return (notice(head), files_html([(f["name"], f["bytes"]) for f in last["files"]]),
                parity_html(last.get("parity")))

    def refresh(current):
        choices = saved_runs(manager)
        value = pick(choices, current)
        return gr.update(choices=choices, value=value), *last_export(value)

    run.change(last_export, run, [message, files, parity])
    gr.on([shared.app.load, tab.select], refresh, run, [run, message, files, parity])


def files_html(files: list[tuple[str, int]]) -> str:
    rows = "".join(f"<tr><td>{html.escape(name)}</td><td style='text-align:right'>{human_size(size)}</td></tr>"
                   for name, size in files)
    return f'<table class="pg-findings"><tr><th>File</th><th>Size</th></tr>{rows}</table>'


def parity_html(parity: dict[str, Any] | None) -> str:
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
    return notice(f"Parity with the app: {parity['summary']}.", kind) + table
