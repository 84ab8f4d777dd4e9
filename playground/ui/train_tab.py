"""Train tab: pick a model and settings, start a short fine-tune, watch it learn, stop it, list runs."""

from __future__ import annotations

import html
import time
from typing import Any

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from .. import runs, store
from ..errors import PlaygroundError
from ..manager import TrainingJob
from ..training import PRESETS, Event, TrainConfig
from .common import Shared, notice

def clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


SPEED_WINDOW = 10  # steps in the tokens/s moving average


def speed_text(steps: list[Event]) -> str:
    """Tokens per second averaged over the last few steps: one step's figure jumps with its batch."""
    if not steps:
        return ""
    recent = steps[-SPEED_WINDOW:]
    inputs = sum(e.values["input_tokens_per_s"] for e in recent) / len(recent)
    trained = sum(e.values["tokens_per_s"] for e in recent) / len(recent)
    window = "the last step" if len(recent) == 1 else f"the last {len(recent)} steps"
    return f" · {inputs:,.0f} tokens/s ({trained:,.0f} trained; mean of {window})"


def remaining_seconds(job: TrainingJob, steps: list[Event]) -> float | None:
    """Seconds left at the pace of the steps so far (validation and probes included); None before a step."""
    started = next((e.elapsed for e in job.events if e.kind == "phase" and e.values["phase"] == "training"), None)
    if not steps or started is None:
        return None
    per_step = (steps[-1].elapsed - started) / steps[-1].step
    return per_step * (steps[-1].total_steps - steps[-1].step)


def progress_html(job: TrainingJob | None) -> str:
    if job is None:
        return notice("No run yet in this session of the app. Pick a preset and press Start.", "info")
    steps = [e for e in job.events if e.kind == "step"]
    start = next((e for e in job.events if e.kind == "start"), None)
    total = start.values["total_steps"] if start else None
    step = steps[-1].step if steps else 0
    fraction = step / total if total else 0.0
    bar = (f'<div style="background:#e5e7eb;border-radius:6px;height:14px;overflow:hidden">'
           f'<div id="train-bar" style="width:{fraction:.1%};background:#6366f1;height:14px"></div></div>')
    parts = [f"Run <b>{html.escape(job.run_id)}</b>"]
    if job.running:
        parts.append(f'<span id="train-phase"><b>{html.escape(job.phase.capitalize())}</b>…</span>')
    if total:
        parts.append(f"step <b>{step}</b> of {total}" + (f" · epoch {steps[-1].epoch:.2f}" if steps else ""))
    parts.append(f"elapsed {clock(job.elapsed)}")
    left = remaining_seconds(job, steps)
    if job.running and left is not None:
        parts.append(f"remaining ~{clock(left)}")
    line = f'<div id="train-progress" style="font-size:14px;margin:6px 0">{" · ".join(parts)}{speed_text(steps)}</div>'
    if job.running and not job.stop.is_set():
        return bar + line
    kind = {"finished": "ok", "stopped": "warn", "failed": "error"}.get(job.state, "info")
    return bar + line + notice(job.message, kind)


def loss_figure(events: list[Event]) -> go.Figure | None:
    """Train and validation loss by step; None until there is a point to draw."""
    train_points = [(e.step, e.values["train_loss"]) for e in events if e.kind == "step"]
    val_points = [(e.step, e.values["val_loss"]) for e in events if e.kind == "eval" and e.values.get("val_loss") is not None]
    if not train_points and not val_points:
        return None
    figure = go.Figure()
    if train_points:
        figure.add_trace(go.Scatter(x=[p[0] for p in train_points], y=[p[1] for p in train_points],
                                    mode="lines", name="train loss", line=dict(color="#a5b4fc")))
    if len(train_points) >= 5:  # the raw loss of small batches is noisy: add a moving average
        smooth, value = [], train_points[0][1]
        for _, loss in train_points:
            value = 0.8 * value + 0.2 * loss
            smooth.append(value)
        figure.add_trace(go.Scatter(x=[p[0] for p in train_points], y=smooth, mode="lines",
                                    name="train loss (smoothed)", line=dict(color="#312e81", width=3)))
    if val_points:
        figure.add_trace(go.Scatter(x=[p[0] for p in val_points], y=[p[1] for p in val_points],
                                    mode="lines+markers", name="validation loss", line=dict(color="#f59e0b")))
    figure.update_layout(height=320, margin=dict(l=50, r=20, t=40, b=40), template="plotly_white",
                         xaxis_title="optimizer step", yaxis_title="cross-entropy loss",
                         legend=dict(orientation="h", x=1, xanchor="right", y=1.02, yanchor="bottom"))
    return figure


def probes_html(events: list[Event]) -> str:
    """Each probe's first answer and its latest one; one answer column until a second round exists."""
    probes = [e for e in events if e.kind == "probe"]
    if not probes:
        return ""
    first, last = probes[0], probes[-1]
    rounds = [first] if len(probes) == 1 else [first, last]
    rows = []
    for number, before in enumerate(first.values["probes"]):
        prompt = before["instruction"] + (f"\n{before['input']}" if before["input"] else "")
        answers = "".join(f"<td{' class=pg-latest' if r is last and len(rounds) > 1 else ''}>"
                          f"{html.escape(r.values['probes'][number]['answer'])}</td>" for r in rounds)
        rows.append(f"<tr><td>{html.escape(prompt)}</td><td>{html.escape(before['reference'])}</td>{answers}</tr>")
    share = f"{62 / len(rounds):.0f}%"  # answer columns share the width evenly
    head = "".join(f'<th style="width:{share}">answer at step {r.step}</th>' for r in rounds)
    return (f'<table class="pg-probes" id="train-probes"><tr><th style="width:24%">instruction</th>'
            f'<th style="width:14%">reference</th>{head}</tr>{"".join(rows)}</table>')


def runs_frame(models_dir: Any, job: TrainingJob | None = None) -> pd.DataFrame:
    """Every saved run, newest first, and the run starting now before its folder exists."""
    rows = []
    records = runs.list_runs(models_dir)
    if job is not None and job.running and job.run_id not in {r.run_id for r in records}:
        rows.append({"run": job.run_id, "state": job.phase, "method": job.config.method, "model": job.config.model,
                     "steps": "0/?", "train loss": "", "val loss": "", "saved": "no", "started": "now"})
    for record in records:
        settings = record.config.get("settings", {})
        status = record.status
        state = record.state
        if state == "running" and job is not None and job.run_id == record.run_id and job.running:
            state = f"running: {job.phase}"
        rows.append({"run": record.run_id, "state": state, "method": settings.get("method", ""),
                     "model": settings.get("model", ""), "steps": f"{status.get('steps', status.get('step', 0))}"
                                                                  f"/{status.get('total_steps', '?')}",
                     "train loss": _rounded(status.get("train_loss")), "val loss": _rounded(status.get("val_loss")),
                     "saved": "yes" if record.has_weights else "no",
                     "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(status.get("started", 0)))})
    columns = ["run", "state", "method", "model", "steps", "train loss", "val loss", "saved", "started"]
    return pd.DataFrame(rows, columns=columns)


def _rounded(value: Any) -> Any:
    return round(value, 4) if isinstance(value, (int, float)) else ""


def config_from(values: dict[str, Any]) -> TrainConfig:
    """Settings from the form; empty numbers mean 'not set'."""
    values = dict(values)
    values["max_steps"] = int(values["max_steps"]) if values.get("max_steps") else None
    for name in ("batch_size", "grad_accum", "warmup_steps", "seed", "split_seed", "eval_every", "probe_every", "probes",
                 "lora_r", "lora_alpha"):
        values[name] = int(values[name] or 0)
    values["max_length"] = int(values["max_length"]) if values.get("max_length") else None
    return TrainConfig.from_dict(values)


PROBES_CSS = """
.pg-probes {border-collapse: collapse; width: 100%; font-size: 13px; table-layout: fixed;}
.pg-probes th {text-align: left; background: #f3f4f6; padding: 6px; color: #374151;}
.pg-probes td {border-top: 1px solid #e5e7eb; padding: 6px; vertical-align: top; white-space: pre-wrap; color: #111827;}
.pg-probes td.pg-latest {background: #f0fdf4;}
"""


def build(shared: Shared, style: gr.Radio, template: gr.Textbox) -> dict[str, Any]:
    manager = shared.manager
    defaults = TrainConfig(**PRESETS["Quick CPU demo"])
    with gr.Row(equal_height=True):
        model_spec = gr.Textbox(value=store.DEFAULT, label="Base model: 'default' (Gemma 3 270M), a Hugging Face id or a folder",
                                scale=3, elem_id="train-model")
        load_model = gr.Button("Load model", scale=0, elem_id="train-load-model")
    model_status = gr.HTML(elem_id="train-model-status")
    with gr.Row():
        preset = gr.Dropdown(list(PRESETS), value="Quick CPU demo", label="Preset", elem_id="train-preset")
        method = gr.Radio([("LoRA (adapter on the shared base)", "lora"),
                           ("Full fine-tune (its own copy: doubles memory)", "full")],
                          value=defaults.method, label="Method", elem_id="train-method")
    source = gr.HTML()
    with gr.Row():
        max_steps = gr.Number(value=defaults.max_steps, precision=0, label="Max steps (empty: use epochs)", elem_id="train-max-steps")
        epochs = gr.Number(value=defaults.epochs, label="Epochs")
        batch_size = gr.Number(value=defaults.batch_size, precision=0, label="Batch size", minimum=1)
        grad_accum = gr.Number(value=defaults.grad_accum, precision=0, label="Gradient accumulation", minimum=1)
        lr = gr.Number(value=defaults.lr, label="Learning rate")
        warmup = gr.Number(value=defaults.warmup_steps, precision=0, label="Warmup steps", minimum=0)
    with gr.Row():
        max_length = gr.Number(value=defaults.max_length, precision=0, label="Max length (tokens)")
        seed = gr.Number(value=defaults.seed, precision=0, label="Seed (initialisation, batch order)")
        split_seed = gr.Number(value=defaults.split_seed, precision=0, label="Split seed (train/validation/test)",
                               elem_id="train-split-seed")
        eval_every = gr.Number(value=defaults.eval_every, precision=0, label="Validate every N steps", elem_id="train-eval-every")
        probe_every = gr.Number(value=defaults.probe_every, precision=0, label="Probe answers every N steps", elem_id="train-probe-every")
        probes = gr.Number(value=defaults.probes, precision=0, label="Probe instructions", minimum=0)
    with gr.Row():
        mask = gr.Checkbox(value=defaults.mask_instruction, label="Mask instruction tokens")
        group = gr.Checkbox(value=defaults.group_by_length, label="Group by length")
    with gr.Accordion("LoRA settings", open=False):
        with gr.Row():
            lora_r = gr.Number(value=defaults.lora_r, precision=0, label="Rank r")
            lora_alpha = gr.Number(value=defaults.lora_alpha, precision=0, label="Alpha")
            lora_dropout = gr.Number(value=defaults.lora_dropout, label="Dropout")
            targets = gr.Textbox(value=defaults.target_modules, label="Target modules ('all-linear' or names, comma-separated)")
    with gr.Row():
        start = gr.Button("Start training", variant="primary", elem_id="train-start")
        stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
    message = gr.HTML(elem_id="train-message")  # Start and Stop answers: the poller never writes here
    progress = gr.HTML(elem_id="train-status")
    curve = gr.Plot(show_label=False, visible=False, elem_id="train-curve")
    gr.Markdown("**Probe answers**: a few validation instructions, answered greedily by the model before "
                "training and again every few steps.")
    probe_table = gr.HTML(elem_id="train-probe-view")
    gr.Markdown("**Runs** (kept under `models/runs/`; they survive a restart)")
    runs_table = gr.Dataframe(runs_frame(manager.models_dir, manager.job), interactive=False, elem_id="runs-table")
    refresh_runs = gr.Button("Refresh runs", size="sm")
    seen = gr.State(None)  # the job's (run, events, state, phase) last drawn in this browser session
    poll = gr.Timer(1.0)

    fields = [method, max_steps, epochs, batch_size, grad_accum, lr, warmup, max_length, seed, split_seed, mask, group,
              eval_every, probe_every, probes, lora_r, lora_alpha, lora_dropout, targets]
    names = ["method", "max_steps", "epochs", "batch_size", "grad_accum", "lr", "warmup_steps", "max_length", "seed",
             "split_seed", "mask_instruction", "group_by_length", "eval_every", "probe_every", "probes", "lora_r", "lora_alpha",
             "lora_dropout", "target_modules"]

    def apply_preset(name):
        config = TrainConfig(**PRESETS[name])
        return [getattr(config, n) for n in names]

    preset.change(apply_preset, preset, fields)
    def describe_source(dataset, style_value, split_seed_value):
        sizes = dataset.splits(seed=int(split_seed_value or 0)).sizes()
        return (f"<div style='font-size:13px;color:#4b5563'>Trains on <b>{html.escape(dataset.source)}</b> "
                f"({len(dataset):,} records: train {sizes['train']:,}, validation {sizes['validation']:,}, "
                f"test {sizes['test']:,} with split seed {int(split_seed_value or 0)}) in the "
                f"<b>{html.escape(style_value)}</b> prompt style, both as chosen in the earlier tabs. The run "
                "keeps its split: chat examples and grading use its own test records.</div>")

    for component in (style, split_seed):
        component.change(describe_source, [shared.dataset, style, split_seed], source)

    def on_load_model(spec):
        try:
            manager.request_model(spec)
        except PlaygroundError as exc:
            return notice(str(exc), "error")
        return notice(manager.model_status().message, "info")

    load_model.click(on_load_model, model_spec, model_status)

    def on_start(dataset, spec, style_value, template_value, *values):
        settings = dict(zip(names, values))
        try:
            config = config_from({**settings, "model": (spec or store.DEFAULT).strip(), "style": style_value,
                                  "template": template_value if style_value == "custom" else None})
            manager.request_model(config.model)
            manager.start_training(dataset, config)
        except PlaygroundError as exc:
            return notice(str(exc), "error"), gr.skip(), gr.skip()
        return "", progress_html(manager.job), None

    start.click(on_start, [shared.dataset, model_spec, style, template, *fields], [message, progress, seen])

    def on_stop():
        job = manager.job
        if job is None or not job.running:
            return notice("No run is training.", "warn")
        manager.stop_training()
        return notice(f"Stopping run {job.run_id} after the current step…", "warn")

    stop.click(on_stop, outputs=message)

    def on_tick(seen_state):
        job = manager.job
        status = manager.model_status()
        model_line = notice(status.message, {"loading": "info", "ready": "ok", "error": "error"}[status.state]) \
            if status.message != "No model loaded yet." else ""
        if job is None:
            return model_line, gr.skip(), gr.skip(), gr.skip(), gr.skip(), seen_state
        now = (job.run_id, len(job.events), job.state, job.phase)
        if now == seen_state:  # nothing new: only the clock moves
            return (model_line, progress_html(job) if job.running else gr.skip(), gr.skip(), gr.skip(), gr.skip(),
                    gr.skip(), now)
        # a refusal given while the run trained is stale once it ends; otherwise the message stays
        ended = seen_state is not None and seen_state[0] == job.run_id and seen_state[2] != job.state \
            and not job.running
        events = list(job.events)
        figure = loss_figure(events)
        return (model_line, progress_html(job), gr.update(value=figure, visible=figure is not None),
                probes_html(events), runs_frame(manager.models_dir, job), "" if ended else gr.skip(), now)

    poll.tick(on_tick, seen, [model_status, progress, curve, probe_table, runs_table, message, seen],
              show_progress="hidden")
    refresh_runs.click(lambda: runs_frame(manager.models_dir, manager.job), outputs=runs_table)
    return {"refreshers": [(describe_source, [shared.dataset, style, split_seed], source),
                           (lambda: runs_frame(manager.models_dir, manager.job), [], runs_table)]}
