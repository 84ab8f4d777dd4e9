"""What the tabs share: the manager, per-session state, and small helpers for messages and runs.

Each tab subscribes to the shared state it shows (`changed`): a new dataset, record, tokenizer or
prompt style redraws the tabs that use it, and no tab knows about another.
"""

from __future__ import annotations

import html
import threading
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable, Sequence

import gradio as gr

from .. import checkpoints, runs
from ..errors import PlaygroundError
from ..manager import ModelManager
from ..model_refs import BASE as BASE_REF

# One colour per part of a training example, used by every tab.
COLORS = {
    "prompt": "#dbeafe",         # blue: prompt, trained
    "prompt_masked": "#e5e7eb",  # grey: prompt, masked
    "response": "#bbf7d0",       # green: response, trained
    "eos": "#fde68a",            # amber: the first end-of-text token, trained
    "pad": "#f3f4f6",            # light grey: padding, ignored
    "truncated": "#fecaca",      # red: cut away by the max length
}


@dataclass
class Shared:
    """Components and state every tab reads; one per app, the State values one per browser session."""
    manager: ModelManager
    app: gr.Blocks            # for its `load` event: a tab draws itself when a page opens
    dataset: gr.State         # the current playground.data.Dataset
    record_index: gr.Number   # the record picked in the Dataset tab
    tokenizer_spec: gr.State  # "default", a hub id or a folder
    style: gr.State           # the session's prompt style, chosen in the Prompt styles tab
    template: gr.State        # the custom style's template
    browser: gr.BrowserState  # what `remember` keeps in this browser's storage, by key (outside the tabs: a
                              # component in a tab not shown yet is not mounted, and would not read it)
    max_file_mb: float


class SessionStops:
    """The Stop button of a long job, per browser session: each job gets a flag of its own, and Stop sets
    the session's latest one (a job stopped earlier keeps its flag set, whatever starts after it)."""

    def __init__(self) -> None:
        self._latest: dict[str, threading.Event] = {}

    @staticmethod
    def _key(request: gr.Request | None) -> str:
        return request.session_hash if request is not None and request.session_hash else ""

    def fresh(self, request: gr.Request | None) -> threading.Event:
        event = self._latest[self._key(request)] = threading.Event()
        return event

    def stop(self, request: gr.Request | None) -> None:
        self._latest.setdefault(self._key(request), threading.Event()).set()


class Form(SimpleNamespace):
    """Components a handler reads together, by name: `inputs()` lists them for an event in the order
    they were set, and `read(values)` gives the values Gradio passes back in that order by the same
    names, so that a handler takes one named group instead of a long list of positional values."""

    def inputs(self) -> list[Any]:
        return list(vars(self).values())

    def read(self, values: Sequence[Any]) -> SimpleNamespace:
        return SimpleNamespace(**dict(zip(vars(self), values, strict=True)))


def remember(shared: Shared, components: dict[str, Any], key: str,
             cleaned: dict[str, Callable[[Any], Any]] | None = None) -> None:
    """Keep the components' values in the browser (`shared.browser`, under `key`) and put them back when
    the page opens again: a reload keeps what the user typed or picked there. `cleaned[name]` gives
    what of a value may be kept (a judge host without its password)."""
    names, fields = list(components), list(components.values())
    cleaned = cleaned or {}

    def restore(saved: dict[str, Any] | None) -> Any:
        values = (saved or {}).get(key, {})
        updates = tuple(values[name] if name in values else gr.skip() for name in names)
        return updates if len(updates) > 1 else updates[0]  # one output takes its value alone

    def keep(saved: dict[str, Any] | None, *values: Any) -> dict[str, Any]:
        return {**(saved or {}), key: {name: cleaned.get(name, lambda v: v)(value) for name, value in zip(names, values)}}

    shared.app.load(restore, shared.browser, fields, show_progress="hidden")
    gr.on([field.change for field in fields], keep, [shared.browser, *fields], shared.browser, show_progress="hidden")


def changed(shared: Shared, *names: str) -> list[Any]:
    """Triggers for a tab that shows the named shared state: the page opening, and each one's change."""
    return [shared.app.load, *(getattr(shared, name).change for name in names)]


def follow(triggers: list[Any], fn: Callable[..., Any], inputs: Any, outputs: Any, **kwargs: Any) -> Any:
    """Draws a view again whenever one of `triggers` fires. A trigger that fires while the view is
    being drawn draws it once more afterwards: Gradio's default for a listener whose first trigger
    is not a change drops it, and the view would keep showing the older state."""
    return gr.on(triggers, fn, inputs, outputs, trigger_mode="always_last", **kwargs)


DAMAGED = " · damaged: "  # in the label of a damaged run


# What the loss ignores (-100), the same three choices wherever masking is picked: Batch masking, the
# data check and Train.
MASK_CHOICES = [("Nothing (the book's chapter)", "none"),
                ("The whole prompt, response header included", "prompt"),
                ("Instruction and input only (the book's exercise 7.2)", "instruction")]
MASK_LABEL = "Mask (-100) the targets of"

# Which records are train, validation and test (data.SPLIT_ORDERS), and the order of an epoch's
# batches (settings.BATCH_ORDERS): the same choices in the Batch tab, the data check and Train.
SPLIT_ORDER_CHOICES = [("Shuffled with the split seed", "shuffled"), ("In file order (the book's)", "book")]
BATCH_ORDER_CHOICES = [("Shuffled with the seed", "shuffled"),
                       ("The book's DataLoader (torch.manual_seed(seed), shuffle=True)", "book")]

# A figure's legend goes above its plot at the left: Plotly's toolbar appears at the top right, over
# anything drawn there.
LEGEND_ABOVE_LEFT = dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom")


def run_label(record: runs.RunRecord, kind: str = "") -> str:
    """How a run reads in a list: its id, its kind (method or variant) and its state, or its damage."""
    if record.damage:
        return f"{record.run_id}{DAMAGED}{record.damage}"
    return f"{record.run_id} · {kind or record.config.method} · {record.state}"


def run_choices(manager: ModelManager) -> list[tuple[str, str]]:
    """Runs that can answer: saved adapters or weights, and the run training now (live weights);
    damaged runs are listed too, last, so that they can be seen (picking one says what is wrong)."""
    choices, damaged = [], []
    job = manager.job
    if job is not None and job.running:
        choices.append((f"● training now: {job.run_id} (latest step)", job.run_id))
    for record in runs.list_runs(manager.models_dir):
        if record.damage:
            damaged.append((run_label(record), record.run_id))
        elif record.has_weights and not (job is not None and job.running and job.run_id == record.run_id):
            choices.append((run_label(record), record.run_id))
    return choices + damaged


def against_choices(manager: ModelManager, run_id: str | None) -> list[tuple[str, str]]:
    """What a run can be compared with (`model_refs` texts): the base model first, then the run it
    started from (a DPO run's supervised run), then every other run on the same base model with its
    final weights and each of its checkpoints, and the run's own checkpoints."""
    choices = [("base model", BASE_REF)]
    if not run_id:
        return choices
    try:
        record = runs.read(manager.models_dir, run_id)
    except PlaygroundError:
        return choices
    spec, started_from = record.config.model, record.config.from_run
    others = [r for r in runs.list_runs(manager.models_dir)
              if not r.damage and r.has_weights and r.config.model == spec]
    others.sort(key=lambda r: (r.run_id == run_id, r.run_id != started_from))  # stable: newest first otherwise
    for other in others:
        note = " (it started from this run)" if other.run_id == started_from else ""
        if other.run_id != run_id:
            choices.append((run_label(other) + note, other.run_id))
        for checkpoint in checkpoints.list_checkpoints(other.folder):
            choices.append((f"{other.run_id} at step {checkpoint.step}{best_note(other, checkpoint.step)}{note}",
                            f"{other.run_id}@{checkpoint.step}"))
    return choices


def checkpoint_step(value: Any) -> int | None:
    """The Weights dropdown's value: "" for the run's final weights, else a checkpoint's step."""
    return int(value) if value not in (None, "") else None


def checkpoint_update(manager: Any, run_id: str | None, current: Any = "") -> Any:
    """The run's final weights and each of its checkpoints, keeping the current pick while it is there."""
    choices = [("final weights", "")]
    if run_id:
        try:
            record = runs.read(manager.models_dir, run_id)
        except PlaygroundError:
            record = None
        choices += [(f"step {c.step} checkpoint{best_note(record, c.step)}", str(c.step))
                    for c in checkpoints.list_checkpoints(record.folder)] if record else []
    values = [value for _, value in choices]
    return gr.update(choices=choices, value=current if current in values else "")


def best_note(record: runs.RunRecord, step: int) -> str:
    """A label's mark for the checkpoint whose answers scored best while the run trained."""
    best = record.status.get("best_checkpoint") or {}
    return " (best answers)" if best.get("step") == step else ""


def against_update(manager: ModelManager, run_id: str | None, current: str | None = None) -> Any:
    """The models the run can be compared with, keeping the current pick while it is listed (else the base)."""
    choices = against_choices(manager, run_id)
    return gr.update(choices=choices, value=pick(choices, current))


def run_update(manager: ModelManager, current: str | None) -> Any:
    """Fresh run choices for a dropdown, keeping the current pick while it is still there; else the
    first run that is not damaged."""
    choices = run_choices(manager)
    return gr.update(choices=choices, value=pick(choices, current))


def runs_signature(manager: ModelManager) -> list[Any]:
    """What the run labels depend on, read cheaply: the job training now and each run folder's status
    time (a stat per run, where listing the runs checks every file of each)."""
    job = manager.job
    stamps = []
    try:
        folders = sorted(runs.runs_dir(manager.models_dir).iterdir())
    except OSError:  # no runs folder yet
        folders = []
    for folder in folders:
        try:
            stamps.append([folder.name, (folder / "status.json").stat().st_mtime_ns])
        except OSError:
            stamps.append([folder.name, None])
    return [job.run_id if job else None, bool(job and job.running), stamps]


def relabel_runs(manager: ModelManager, dropdown: gr.Dropdown, every: float = 5.0) -> None:
    """Keep a run dropdown's labels current while its tab stays open (a run training now ends, another
    is saved), the pick kept; the runs are read again only when their signature changed."""
    timer, seen = gr.Timer(every), gr.State(None)

    def tick(current: str | None, last: Any) -> tuple[Any, Any]:
        signature = runs_signature(manager)
        if signature == last:
            return gr.skip(), last
        # the labels only: a value set here could overwrite a pick the user made meanwhile
        return gr.update(choices=run_choices(manager)), signature

    timer.tick(tick, [dropdown, seen], [dropdown, seen], show_progress="hidden")


def pick(choices: list[tuple[str, str]], current: str | None) -> str | None:
    """The current pick while it is still listed, else the first run that is not damaged."""
    if current in [value for _, value in choices]:
        return current
    return next((value for label, value in choices if DAMAGED not in label), None)


def tokenizer_or_message(manager: ModelManager, spec: str, wait: float = 600.0) -> tuple[Any, str]:
    """(tokenizer, "") when it loads within `wait` seconds, else (None, a message to show)."""
    try:
        return manager.tokenizer(spec, timeout=wait), ""
    except PlaygroundError as exc:
        return None, str(exc)


def notice(text: str, kind: str = "info") -> str:
    """A message box as HTML; kind is info, ok, warn or error."""
    return f'<div class="pg-notice pg-{kind}">{html.escape(text).replace(chr(10), "<br>")}</div>'


def legend(items: dict[str, str]) -> str:
    """Coloured labels for the parts of a training example (keys of COLORS)."""
    spans = "".join(f'<span style="background:{COLORS[k]}">{html.escape(v)}</span>' for k, v in items.items())
    return f'<div class="pg-legend">{spans}</div>'


# What every tab uses; a tab's own classes are in its module's CSS, and `app.CSS` joins them all.
CSS = """
.pg-notice {padding: 8px 12px; border-radius: 6px; margin: 4px 0; font-size: 14px; white-space: normal;}
.pg-info {background: #eff6ff; border: 1px solid #bfdbfe; color: #1e3a8a;}
.pg-ok {background: #f0fdf4; border: 1px solid #bbf7d0; color: #14532d;}
.pg-warn {background: #fffbeb; border: 1px solid #fde68a; color: #78350f;}
.pg-error {background: #fef2f2; border: 1px solid #fecaca; color: #7f1d1d;}
.pg-cards {display: flex; flex-wrap: wrap; gap: 8px;}
.pg-card {border: 1px solid #e5e7eb; border-radius: 8px; padding: 8px 14px; min-width: 110px; background: #fff;}
.pg-card b {display: block; font-size: 22px; color: #111827;}
.pg-card span {font-size: 12px; color: #6b7280;}
.pg-facts {font-size: 12px; color: #4b5563; margin: 6px 0;}
.pg-findings {border-collapse: collapse; font-size: 13px; width: 100%;}
.pg-findings th, .pg-findings td {border-bottom: 1px solid #e5e7eb; padding: 4px 8px; text-align: left; vertical-align: top;}
.pg-legend span {display: inline-block; padding: 2px 8px; margin: 2px 4px 2px 0; border-radius: 4px;
  font-size: 12px; color: #111827; border: 1px solid #d1d5db;}
.pg-text {font-family: ui-monospace, monospace; white-space: pre-wrap; font-size: 13px; line-height: 1.5;
  border: 1px solid #e5e7eb; border-radius: 6px; padding: 10px; background: #fff; color: #111827;}
.pg-text span {border-radius: 3px;}
"""
