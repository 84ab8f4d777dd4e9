"""Train tab: pick a model and settings, start a short fine-tune, watch it learn, stop it, list runs."""

from __future__ import annotations

import html
import math
import time
from types import SimpleNamespace
from typing import Any, Callable

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from .. import data_checks, dpo, estimate, experiments, runs, store
from ..errors import PlaygroundError
from ..manager import JobSnapshot, resume_checkpoint
from ..prompts import style_label, style_of
from ..settings import FIRST_PRESET, LR_SCHEDULES, PRESETS, TrainConfig, presets_for
from ..training import Event
from .common import (BATCH_ORDER_CHOICES, LEGEND_ABOVE_LEFT, MASK_CHOICES, MASK_LABEL, SPLIT_ORDER_CHOICES, Form,
                     Shared, changed, follow, notice, run_label)

OBJECTIVE_CHOICES = [("Supervised: learn the responses", "sft"),
                     ("Preference (DPO): prefer chosen over rejected", "dpo")]
BASE_START = ("the base model (no supervised run)", "")


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
    return f" · {rate(inputs)} tokens/s ({rate(trained)} trained; mean of {window})"


def rate(per_second: float) -> str:
    """Whole numbers from 10 up; below, two significant digits, so a slow rate never reads as 0."""
    return f"{per_second:,.0f}" if per_second >= 10 else f"{per_second:.2g}"


def remaining_seconds(events: list[Event], steps: list[Event]) -> float | None:
    """Seconds left at the pace of this job's steps so far (validation and probes included); None
    before its first step. A resumed run's pace counts from where it went on, not from step 0."""
    started = next((e for e in events if e.kind == "phase" and e.values["phase"] == "training"), None)
    if not steps or started is None or steps[-1].step <= started.step:
        return None
    per_step = (steps[-1].elapsed - started.elapsed) / (steps[-1].step - started.step)
    return per_step * (steps[-1].total_steps - steps[-1].step)


def elapsed_text(job: JobSnapshot) -> str:
    """The run's time: a resumed run's time before its Resume too, which its curve counts."""
    if not job.resumed:
        return f"elapsed {clock(job.elapsed)}"
    resumed = next((e for e in reversed(job.events) if e.kind == "resume"), None)
    before = resumed.elapsed if resumed else max((e.elapsed for e in job.events), default=0.0)
    return f"elapsed {clock(before + job.elapsed)} ({clock(job.elapsed)} since Resume)"


def progress_html(job: JobSnapshot | None) -> str:
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
    parts.append(elapsed_text(job))
    left = remaining_seconds(list(job.events), steps)
    if job.running and left is not None:
        parts.append(f"remaining ~{clock(left)}")
    line = f'<div id="train-progress" style="font-size:14px;margin:6px 0">{" · ".join(parts)}{speed_text(steps)}</div>'
    if job.running and not job.stopping:
        return bar + line
    kind = {"finished": "ok", "stopped": "warn", "failed": "error"}.get(job.state, "info")
    return bar + line + notice(job.message, kind)


def snapshot(manager: Any) -> JobSnapshot | None:
    """The manager's training job at this moment, every field read together; None before the first."""
    job = manager.job
    return job.snapshot() if job is not None else None


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
    for resumed in (e for e in events if e.kind == "resume"):
        figure.add_vline(x=resumed.step, line=dict(color="#9ca3af", dash="dot"),
                         annotation_text=f"resumed at {resumed.step}", annotation_position="top left")
    preference = any("reward_margin" in e.values for e in events)
    figure.update_layout(height=320, margin=dict(l=50, r=20, t=40, b=40), template="plotly_white",
                         xaxis_title="optimizer step", yaxis_title="DPO loss" if preference else "cross-entropy loss",
                         legend=LEGEND_ABOVE_LEFT)
    return figure


def answers_figure(events: list[Event]) -> go.Figure | None:
    """Exact match (single-answer records) and ROUGE-L of the validation answers scored while training, by
    step, with the best checkpoint marked; None until answers were scored."""
    scored = [e for e in events if e.kind == "answers"]
    if not scored:
        return None
    steps = [e.step for e in scored]
    figure = go.Figure()
    exact = [e.values.get("val_exact_match") for e in scored]
    if any(value is not None for value in exact):
        figure.add_trace(go.Scatter(x=steps, y=[None if v is None else 100 * v for v in exact], mode="lines+markers",
                                    name="exact match, single-answer records (%)", line=dict(color="#0f766e", width=3)))
    figure.add_trace(go.Scatter(x=steps, y=[100 * e.values["val_rouge_l"] for e in scored], mode="lines+markers",
                                name="ROUGE-L, all records (x100)", line=dict(color="#db2777")))
    best = scored[-1].values.get("best_checkpoint")
    if best:
        figure.add_vline(x=best["step"], line=dict(color="#0f766e", dash="dot"),
                         annotation_text=f"best checkpoint: step {best['step']}", annotation_position="top left")
    examples = scored[-1].values.get("examples")
    figure.update_layout(height=300, margin=dict(l=50, r=20, t=40, b=40), template="plotly_white",
                         xaxis_title="optimizer step", yaxis=dict(title=f"score on {examples} validation records",
                                                                  range=[0, 101]),
                         legend=LEGEND_ABOVE_LEFT)
    return figure


def margin_figure(events: list[Event]) -> go.Figure | None:
    """A DPO run's reward margin (chosen minus rejected reward) by step, train and validation, with the
    validation reward accuracy (the share of pairs whose chosen reward is the larger), as the book plots
    them; None for a supervised run."""
    train = [(e.step, e.values["reward_margin"]) for e in events if e.kind == "step" and "reward_margin" in e.values]
    val = [(e.step, e.values["val_reward_margin"], e.values.get("val_reward_accuracy")) for e in events
           if e.kind == "eval" and e.values.get("val_reward_margin") is not None]
    if not train and not val:
        return None
    figure = go.Figure()
    if train:
        figure.add_trace(go.Scatter(x=[p[0] for p in train], y=[p[1] for p in train], mode="lines",
                                    name="train reward margin", line=dict(color="#86efac")))
    if val:
        figure.add_trace(go.Scatter(x=[p[0] for p in val], y=[p[1] for p in val], mode="lines+markers",
                                    name="validation reward margin", line=dict(color="#15803d", width=3)))
        figure.add_trace(go.Scatter(x=[p[0] for p in val], y=[p[2] for p in val], mode="lines+markers", yaxis="y2",
                                    name="validation reward accuracy", line=dict(color="#7c3aed", dash="dot")))
    figure.add_hline(y=0, line=dict(color="#9ca3af", width=1))
    figure.update_layout(height=300, margin=dict(l=50, r=50, t=40, b=40), template="plotly_white",
                         xaxis_title="optimizer step", yaxis_title="reward margin (log-ratio)",
                         yaxis2=dict(title="reward accuracy", overlaying="y", side="right", range=[0, 1.05],
                                     showgrid=False),
                         legend=LEGEND_ABOVE_LEFT)
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


def runs_frame(models_dir: Any, job: JobSnapshot | None = None) -> pd.DataFrame:
    """Every saved run, newest first, and the run starting now before its folder exists."""
    rows = []
    records = runs.list_runs(models_dir)
    if job is not None and job.running and job.run_id not in {r.run_id for r in records}:
        rows.append({"run": job.run_id, "state": job.phase, "method": job.config.method, "model": job.config.model,
                     "steps": "0/?", "train loss": "", "val loss": "", "saved": "no", "started": "now"})
    for record in records:
        if record.damage:  # nothing of it is read: its state names the file and why
            rows.append({"run": record.run_id, "state": record.state})
            continue
        config = record.config
        status = record.status
        state = record.state
        if state == "running" and job is not None and job.run_id == record.run_id and job.running:
            state = f"running: {job.phase}"
        rows.append({"run": record.run_id, "state": state, "method": config.method,
                     "model": config.model, "steps": f"{status.get('steps', status.get('step', 0))}"
                                                                  f"/{status.get('total_steps', '?')}",
                     "train loss": _rounded(status.get("train_loss")), "val loss": _rounded(status.get("val_loss")),
                     "saved": "yes" if record.has_weights else "no",
                     "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(status.get("started", 0)))})
    columns = ["run", "state", "method", "model", "steps", "train loss", "val loss", "saved", "started"]
    return pd.DataFrame(rows, columns=columns).fillna("")


def _rounded(value: Any) -> Any:
    return round(value, 4) if isinstance(value, (int, float)) else ""


def config_from(values: dict[str, Any]) -> TrainConfig:
    """Settings from the form; empty numbers mean 'not set'."""
    values = dict(values)
    values["max_steps"] = whole(values["max_steps"]) if values.get("max_steps") else None
    for name in ("batch_size", "grad_accum", "warmup_steps", "seed", "split_seed", "eval_every", "probe_every", "probes",
                 "lora_r", "lora_alpha", "checkpoint_every", "score_answers_every", "score_answers_sample"):
        values[name] = whole(values[name] or 0)
    values["max_length"] = whole(values["max_length"]) if values.get("max_length") else None
    values["from_run"] = (values.get("from_run") or None) if values.get("objective") == "dpo" else None
    return TrainConfig.from_dict(values)


def whole(value: Any) -> Any:
    """A form's number as a whole number; NaN or infinity stay as they are, for the settings' check
    to name them as the command line does."""
    return int(value) if math.isfinite(value) else value


CSS = """  # the probe answers' table
.pg-probes {border-collapse: collapse; width: 100%; font-size: 13px; table-layout: fixed;}
.pg-probes th {text-align: left; background: #f3f4f6; padding: 6px; color: #374151;}
.pg-probes td {border-top: 1px solid #e5e7eb; padding: 6px; vertical-align: top; white-space: pre-wrap; color: #111827;}
.pg-probes td.pg-latest {background: #f0fdf4;}
"""


def describe_source(dataset: Any, style: str, split_seed: Any, split_order: str = "shuffled",
                    objective: str = "sft") -> str:
    """What a run started now trains on: the session's dataset, split and prompt style (for DPO, its
    preference pairs, or why this dataset has none)."""
    sizes = dataset.splits(seed=int(split_seed or 0), order=split_order or "shuffled").sizes()
    how = (f"with split seed {int(split_seed or 0)}" if split_order != "book" else "in file order, as the book slices it")
    what = "preference pairs" if objective == "dpo" else "records"
    line = (f"<div style='font-size:13px;color:#4b5563' id='train-source'>Trains on <b>{html.escape(dataset.source)}</b> "
            f"({len(dataset):,} {what}: train {sizes['train']:,}, validation {sizes['validation']:,}, "
            f"test {sizes['test']:,} {how}) in the "
            f"<b>{html.escape(style_label(style))}</b> prompt style, both as chosen in the earlier tabs. "
            "The run keeps its split: chat examples and grading use its own test records.</div>")
    if objective == "dpo" and not all(record.is_pair for record in dataset.records):
        line += notice(dpo.NOT_PAIRS + " The Dataset tab loads one (builtin-pairs: the bundled records paired with "
                       "wrong answers).", "warn")
    return line


def estimate_html(manager: Any, dataset: Any, config: TrainConfig) -> str:
    """Memory and time for these settings, with a warning when it will probably not fit."""
    splits = dataset.splits(seed=config.split_seed, order=config.split_order)
    try:
        result = estimate.for_settings(manager, dataset, config, splits.train)
    except PlaygroundError as exc:
        return notice(str(exc), "warn")
    return notice(estimate.describe(result), "error" if result.fits is False else "info")


def findings_html(manager: Any, dataset: Any, config: TrainConfig) -> str:
    """The data problems that matter with these settings (see the Dataset tab's full check); not blocking."""
    settings = data_checks.CheckSettings.for_training(config)
    try:
        report = data_checks.check(dataset, manager.tokenizer(config.model, timeout=60), settings)
    except PlaygroundError as exc:
        return notice(str(exc), "warn")
    problems = report.problems()
    if not problems:
        return notice(f"The data check found nothing to fix in {report.records:,} records with these settings.", "ok")
    rows = "".join(f"<tr><td><b>{html.escape(f.title)}</b>: {f.count:,}</td><td>records "
                   f"{', '.join(map(str, f.shown()[:8]))}{' …' if f.count > 8 else ''}</td>"
                   f"<td>{html.escape(f.advice)}</td></tr>" for f in problems)
    return (notice(f"The data check found {len(problems)} kind{'s' * (len(problems) > 1)} of problem with these "
                   "settings; training can start anyway. The Dataset tab's check opens each record.", "warn")
            + f'<table class="pg-findings" id="train-findings">{rows}</table>')


def variants_html(manager: Any) -> Any:
    """The variants' progress while they train and after; nothing when none were started."""
    experiment = manager.experiment
    if experiment is None:
        return gr.skip()
    lines = experiments.status_lines(experiment)
    head = "The variants are training, one after another." if experiment.running else \
        "The variants have run: compare them in the Compare tab."
    return notice("\n".join([head, *lines]), "info" if experiment.running else "ok")


def settings_form() -> tuple[gr.Dropdown, gr.HTML, Form]:
    """The preset, the data line, the training settings by TrainConfig field name (Quick CPU demo's values),
    and the DPO settings' row and note."""
    defaults = TrainConfig(**PRESETS["Quick CPU demo"])

    def number(name: str, label: str, **options: Any) -> gr.Number:
        return gr.Number(value=getattr(defaults, name), label=label, **options)

    form = Form()
    with gr.Row():
        preset = gr.Dropdown(presets_for("sft"), value=FIRST_PRESET["sft"], label="Preset", elem_id="train-preset")
        form.method = gr.Radio([("LoRA (adapter on the shared base)", "lora"),
                                ("Full fine-tune (its own copy: doubles memory)", "full")],
                               value=defaults.method, label="Method", elem_id="train-method")
        form.objective = gr.Radio(OBJECTIVE_CHOICES, value=defaults.objective, label="Objective",
                                  elem_id="train-objective")
    dpo_view = SimpleNamespace()  # shown for the DPO objective only
    with gr.Row(visible=False, elem_id="train-dpo-settings") as dpo_view.row:
        form.from_run = gr.Dropdown([BASE_START], value="", scale=3, elem_id="train-from-run",
                                    label="Start from (and hold to, as the reference model) this supervised run")
        form.beta = number("beta", "Beta (how strongly the reference holds)", minimum=0, scale=1,
                           elem_id="train-beta")
    source = gr.HTML()
    dpo_view.note = gr.HTML(visible=False, elem_id="train-dpo-note")
    with gr.Row():
        form.max_steps = number("max_steps", "Max steps (empty: use epochs)", precision=0, elem_id="train-max-steps")
        form.epochs = number("epochs", "Epochs")
        form.batch_size = number("batch_size", "Batch size", precision=0, minimum=1)
        form.grad_accum = number("grad_accum", "Gradient accumulation", precision=0, minimum=1)
        form.lr = number("lr", "Learning rate")
        form.weight_decay = number("weight_decay", "Weight decay", minimum=0, elem_id="train-weight-decay")
        form.warmup_steps = number("warmup_steps", "Warmup steps", precision=0, minimum=0)
    with gr.Row():
        form.max_length = number("max_length", "Max length (tokens)", precision=0)
        form.seed = number("seed", "Seed (initialisation, batch order)", precision=0)
        form.split_seed = number("split_seed", "Split seed (train/validation/test)", precision=0,
                                 elem_id="train-split-seed")
        form.eval_every = number("eval_every", "Validate every N steps", precision=0, elem_id="train-eval-every")
        form.probe_every = number("probe_every", "Probe answers every N steps", precision=0,
                                  elem_id="train-probe-every")
        form.probes = number("probes", "Probe instructions", precision=0, minimum=0)
        form.checkpoint_every = number("checkpoint_every", "Checkpoint every N steps (0: only on Stop)",
                                       precision=0, minimum=0, elem_id="train-checkpoint-every")
        form.score_answers_every = number("score_answers_every", "Score answers every N steps (0: off)",
                                          precision=0, minimum=0, elem_id="train-score-every")
        form.score_answers_sample = number("score_answers_sample", "Validation records scored", precision=0,
                                           minimum=1, elem_id="train-score-sample")
    with gr.Row():
        form.mask = gr.Radio(MASK_CHOICES, value=defaults.mask, label=MASK_LABEL, elem_id="train-mask")
        form.split_order = gr.Radio(SPLIT_ORDER_CHOICES,
                                    value=defaults.split_order, label="Split order", elem_id="train-split-order")
        form.batch_order = gr.Dropdown(BATCH_ORDER_CHOICES,
                                       value=defaults.batch_order, label="Batch order", elem_id="train-batch-order")
        form.lr_schedule = gr.Dropdown(list(LR_SCHEDULES), value=defaults.lr_schedule,
                                       label="Learning rate after the warmup", elem_id="train-lr-schedule",
                                       info="; ".join(f"{name}: {what}" for name, what in LR_SCHEDULES.items()))
    with gr.Row():
        form.group_by_length = gr.Checkbox(value=defaults.group_by_length, label="Group by length")
        form.pack = gr.Checkbox(value=defaults.pack, elem_id="train-pack",
                                label="Pack several samples per row of max length (each attends to itself; "
                                      "the batch size counts rows)")
        form.drop_last = gr.Checkbox(value=defaults.drop_last, elem_id="train-drop-last",
                                     label="Drop the last, smaller batch of each epoch (the book's loader)")
        form.gradient_checkpointing = gr.Checkbox(value=defaults.gradient_checkpointing,
                                                  elem_id="train-gradient-checkpointing",
                                                  label="Gradient checkpointing (less memory: layers and logits "
                                                        "computed again in the backward pass)")
        form.ignore_memory_estimate = gr.Checkbox(value=False, elem_id="train-ignore-memory",
                                                  label="Start even when the memory estimate is more than is free")
    with gr.Accordion("LoRA settings", open=False):
        with gr.Row():
            form.lora_r = number("lora_r", "Rank r", precision=0)
            form.lora_alpha = number("lora_alpha", "Alpha", precision=0)
            form.lora_dropout = number("lora_dropout", "Dropout")
            form.target_modules = gr.Textbox(value=defaults.target_modules,
                                             label="Target modules ('all-linear' or names, comma-separated)")
    return preset, source, form, dpo_view


def preset_values(fields: list[str], name: str) -> list[Any]:
    """The values of a preset for the form's `fields`; the run a DPO run starts from stays as picked."""
    preset = TrainConfig(**PRESETS[name])
    return [gr.skip() if field == "from_run" else getattr(preset, field) for field in fields]


def from_run_choices(manager: Any) -> list[tuple[str, str]]:
    """What a DPO run can start from: the base model, or a supervised run with saved weights."""
    return [BASE_START] + [(run_label(record), record.run_id) for record in runs.list_runs(manager.models_dir)
                           if not record.damage and record.has_weights and record.config.objective == "sft"]


def from_run_update(manager: Any, current: str | None) -> Any:
    choices = from_run_choices(manager)
    return gr.update(choices=choices, value=current if current in {value for _, value in choices} else "")


def run_view(manager: Any) -> SimpleNamespace:
    """Start and Stop, and what a run shows as it goes: progress, loss curves, probe answers, the runs."""
    view = SimpleNamespace()
    with gr.Row():
        view.start = gr.Button("Start training", variant="primary", elem_id="train-start")
        view.stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
    view.message = gr.HTML(elem_id="train-message")  # Start and Stop answers: the poller never writes here
    view.progress = gr.HTML(elem_id="train-status")
    view.curve = gr.Plot(show_label=False, visible=False, elem_id="train-curve")
    view.margins = gr.Plot(show_label=False, visible=False, elem_id="train-margins")
    view.answers = gr.Plot(show_label=False, visible=False, elem_id="train-answers")
    gr.Markdown("**Probe answers**: a few validation instructions, answered greedily by the model before "
                "training and again every few steps.")
    view.probes = gr.HTML(elem_id="train-probe-view")
    gr.Markdown("**Runs** (kept under `models/runs/`; they survive a restart)")
    view.runs = gr.Dataframe(runs_frame(manager.models_dir, snapshot(manager)), interactive=False, elem_id="runs-table")
    view.refresh = gr.Button("Refresh runs", size="sm")
    with gr.Row(equal_height=True):
        view.resumable = gr.Dropdown(resumable_choices(manager), value=None, scale=4, elem_id="train-resumable",
                                     label="Resume a stopped or interrupted run from its latest checkpoint "
                                           "(its own settings and data; the curve goes on)")
        view.resume = gr.Button("Resume", scale=1, elem_id="train-resume")
    view.seen = gr.State(None)  # the job's (run, events, state, phase) last drawn in this browser session
    view.poll = gr.Timer(1.0)
    return view


def resumable_choices(manager: Any) -> list[tuple[str, str]]:
    """Runs that can go on: stopped, interrupted or failed, with a checkpoint."""
    choices = []
    for record in runs.list_runs(manager.models_dir):
        try:
            latest = resume_checkpoint(record)
        except PlaygroundError:  # finished, training, or without a checkpoint
            continue
        total = record.status.get("total_steps", "?")
        choices.append((f"{record.run_id} · {record.state} · checkpoint at step {latest.step} of {total}",
                        record.run_id))
    return choices


def resumable_update(manager: Any, current: str | None) -> Any:
    choices = resumable_choices(manager)
    return gr.update(choices=choices, value=current if current in {value for _, value in choices} else None)


def poll_update(manager: Any, seen: Any) -> tuple[Any, ...]:
    """(model status, progress, curve, margins, answers, probes, runs, message, seen): the clock every tick,
    the rest on news."""
    job = snapshot(manager)
    status = manager.model_status()
    model_line = notice(status.message, {"loading": "info", "ready": "ok", "error": "error"}[status.state]) \
        if status.message != "No model loaded yet." else ""
    if job is None:
        return model_line, *(gr.skip(),) * 7, seen
    now = (job.run_id, len(job.events), job.state, job.phase)
    if now == seen:  # nothing new: only the clock moves
        return model_line, progress_html(job) if job.running else gr.skip(), *(gr.skip(),) * 6, now
    # a refusal given while the run trained is stale once it ends; otherwise the message stays
    ended = seen is not None and seen[0] == job.run_id and seen[2] != job.state and not job.running
    events = list(job.events)
    figures = [loss_figure(events), margin_figure(events), answers_figure(events)]
    return (model_line, progress_html(job), *(gr.update(value=f, visible=f is not None) for f in figures),
            probes_html(events),
            runs_frame(manager.models_dir, job), "" if ended else gr.skip(), now)


def layout(manager: Any) -> SimpleNamespace:
    """The tab's components: the base model, the settings (`ui.form`), the checks, the variants and the run view."""
    ui = SimpleNamespace()
    with gr.Row(equal_height=True):
        ui.model_spec = gr.Textbox(value=store.DEFAULT, scale=3, elem_id="train-model",
                                   label="Base model: 'default' (Gemma 3 270M), a Hugging Face id or a folder")
        ui.load_model = gr.Button("Load model", scale=0, elem_id="train-load-model")
    ui.model_status = gr.HTML(elem_id="train-model-status")
    ui.preset, ui.source, ui.form, ui.dpo = settings_form()
    with gr.Row(equal_height=True):
        ui.check = gr.Button("Before Start: memory, time and data check", size="sm", scale=0, min_width=340,
                             elem_id="train-check")
    ui.preflight = gr.HTML(elem_id="train-preflight")
    with gr.Accordion("Exercises: train several variants of these settings one after another", open=False,
                      elem_id="train-variants-box"):
        gr.Markdown("Each variant is an ordinary run on the same data, split and seeds, changed only as its name "
                    "says (the book's chapter 7 exercises among them). Stop ends the current run and skips the rest. "
                    "When they have run, set them side by side in the Compare tab.")
        with gr.Row(equal_height=True):
            ui.variants = gr.CheckboxGroup(list(experiments.VARIANTS), value=list(experiments.VARIANTS)[:3],
                                           label="Variants", scale=4, elem_id="train-variants")
            ui.run_variants = gr.Button("Run the ticked variants", scale=1, elem_id="train-run-variants")
        ui.variants_status = gr.HTML(elem_id="train-variants-status")
    ui.view = run_view(manager)
    return ui


def form_config(spec: str, style: str, template: str, form: SimpleNamespace, models_dir: Any) -> TrainConfig:
    """The settings of the form (`ui.form` read) with the session's base model and prompt style; a DPO
    run from a supervised run takes that run's model, method, style and LoRA shape instead."""
    config = config_from({**vars(form), "model": (spec or store.DEFAULT).strip(), "style": style,
                          "template": template if style_of(style).uses_template else None})
    if config.from_run:
        config.check()
        config = dpo.settings_from_run(config, models_dir)
    return config


def start_note(manager: Any, run_id: str | None) -> str:
    """What a DPO run takes from the run it starts from."""
    if not run_id:
        return notice("DPO from the base model: the base model is the reference, and the session's prompt style "
                      "and the form's method are used.", "info")
    try:
        start = runs.read(manager.models_dir, run_id).config
    except PlaygroundError as exc:
        return notice(str(exc), "error")
    return notice(f"DPO from run {run_id}: it starts from that run's weights, which stay the reference model, with its "
                  f"base model ({start.model}), method ({start.method}) and prompt style ({style_label(start.style)}).",
                  "info")


def load_model(manager: Any, spec: str) -> str:
    try:
        manager.request_model(spec)
    except PlaygroundError as exc:
        return notice(str(exc), "error")
    return notice(manager.model_status().message, "info")


def refuse_while_variants_train(manager: Any) -> None:
    if manager.experiment is not None and manager.experiment.running:
        raise PlaygroundError("The variants are training one after another; stop them first.")


def start(manager: Any, dataset: Any, config: Callable[[], TrainConfig]) -> tuple[Any, Any, Any, Any]:
    """(message, progress, seen, preflight) once a run of the form's settings has started, or why not;
    the estimate and data check of before go (the run's own progress and time replace them)."""
    try:
        refuse_while_variants_train(manager)
        chosen = config()
        manager.request_model(chosen.model)
        manager.start_training(dataset, chosen)
    except PlaygroundError as exc:
        return notice(str(exc), "error"), gr.skip(), gr.skip(), gr.skip()
    return "", progress_html(snapshot(manager)), None, ""


def preflight(manager: Any, dataset: Any, config: Callable[[], TrainConfig]) -> str:
    """The memory and time estimate and the data check of the form's settings."""
    try:
        chosen = config()
        chosen.check()
    except PlaygroundError as exc:
        return notice(str(exc), "error")
    return estimate_html(manager, dataset, chosen) + findings_html(manager, dataset, chosen)


def start_variants(manager: Any, dataset: Any, config: Callable[[], TrainConfig], ticked: list[str] | None) -> Any:
    try:
        chosen = experiments.variant_configs(config(), list(ticked or []))
        manager.request_model(chosen[0][1].model)
        manager.start_experiment(dataset, chosen)
    except PlaygroundError as exc:
        return notice(str(exc), "error")
    return variants_html(manager)


def resume(manager: Any, run_id: str | None) -> tuple[Any, Any, Any]:
    if not run_id:
        return notice("Pick a run to resume.", "warn"), gr.skip(), gr.skip()
    try:
        refuse_while_variants_train(manager)
        manager.resume_training(run_id)
    except PlaygroundError as exc:
        return notice(str(exc), "error"), gr.skip(), gr.skip()
    return "", progress_html(snapshot(manager)), None


def stop(manager: Any) -> str:
    job = manager.job
    if job is None or not job.running:
        return notice("No run is training.", "warn")
    manager.stop_training()
    said = job.message  # Stop's first press, or its second (which skips the last validation and probes)
    return notice(f"Run {job.run_id}: {said[0].lower()}{said[1:]}", "warn")


def build(shared: Shared) -> None:
    manager = shared.manager
    ui = layout(manager)
    view, form = ui.view, ui.form
    session = [shared.dataset, ui.model_spec, shared.style, shared.template]  # what every form handler reads first

    def with_config(action: Callable[..., Any]) -> Callable[..., Any]:
        """A handler of `session`, then `extra` values, then the form's, calling `action(manager, dataset,
        config, *extra)` where `config()` builds the checked settings."""
        def handler(dataset, spec, style, template, *values):
            extra, settings = values[:len(values) - len(form.inputs())], values[len(values) - len(form.inputs()):]
            return action(manager, dataset,
                          lambda: form_config(spec, style, template, form.read(settings), manager.models_dir), *extra)
        return handler

    ui.preset.change(lambda name: preset_values(list(vars(form)), name), ui.preset, form.inputs())
    form.objective.input(lambda objective: gr.update(choices=presets_for(objective), value=FIRST_PRESET[objective]),
                         form.objective, ui.preset)
    form.objective.change(lambda objective: [gr.update(visible=objective == "dpo")] * 2, form.objective,
                          [ui.dpo.row, ui.dpo.note])
    form.from_run.change(lambda run_id: start_note(manager, run_id), form.from_run, ui.dpo.note)
    follow([*changed(shared, "dataset", "style"), form.split_seed.change, form.split_order.change, form.objective.change],
          describe_source, [shared.dataset, shared.style, form.split_seed, form.split_order, form.objective], ui.source)
    follow([shared.app.load, view.runs.change], lambda current: from_run_update(manager, current), form.from_run,
          form.from_run)
    ui.load_model.click(lambda spec: load_model(manager, spec), ui.model_spec, ui.model_status)
    view.start.click(with_config(start), [*session, *form.inputs()], [view.message, view.progress, view.seen, ui.preflight])
    view.stop.click(lambda: stop(manager), outputs=view.message)
    view.resume.click(lambda run_id: resume(manager, run_id), view.resumable, [view.message, view.progress, view.seen])
    ui.run_variants.click(with_config(start_variants), [*session, ui.variants, *form.inputs()], ui.variants_status)
    ui.check.click(with_config(preflight), [*session, *form.inputs()], ui.preflight, show_progress_on=[ui.preflight])
    view.poll.tick(lambda: variants_html(manager), None, ui.variants_status, show_progress="hidden")
    view.poll.tick(lambda seen: poll_update(manager, seen), view.seen,
                   [ui.model_status, view.progress, view.curve, view.margins, view.answers, view.probes, view.runs,
                    view.message, view.seen],
                   show_progress="hidden")
    gr.on([shared.app.load, view.refresh.click], lambda: runs_frame(manager.models_dir, snapshot(manager)), None, view.runs)
    follow([shared.app.load, view.refresh.click, view.runs.change],
           lambda current: resumable_update(manager, current), view.resumable, view.resumable)
