"""Inspect tab: what the fine-tune changed, token by token, and which task families it moved."""

from __future__ import annotations

import html
from types import SimpleNamespace
from typing import Any, Iterator

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from .. import data, inspection
from ..errors import PlaygroundError
from ..model_refs import BASE, side_name
from .common import (LEGEND_ABOVE_LEFT, Form, Shared, against_choices, against_update, notice, pick, relabel_runs, remember,
                     run_choices, run_update)

SPLITS = [("test", "test"), ("validation", "validation"), ("train (what it learned from)", "train")]
INTRO = ("Both models read the same text, the prompt and the **reference** answer (teacher forcing), and give "
         "each token of the answer a probability. **Base** (purple) and **Tuned** (red): the deeper the colour, the "
         "more sure the model was of the reference token. **Change**: red where the tuned model is surer than the "
         "base, purple where it is less sure. **KL**: how far the tuned model's whole next-token distribution moved "
         "from the base's, KL(tuned ‖ base). Click a token for both models' top 5 next tokens. **Compare with** puts "
         "another model in the base model's place: the run it started from, another run on the same base model, or "
         "a checkpoint.")
EMPTY = "Pick a run and an example of its own split, then press Inspect (or type a text of your own below)."


# The prompt the models read, and one token's top 5 next tokens of each side.
CSS = """
.pg-prompt {font-size: 12px; max-height: 9em; overflow-y: auto; color: #4b5563; margin-bottom: 8px;}
.pg-top5 {display: flex; flex-wrap: wrap; gap: 16px;}
.pg-top5 table {width: auto; min-width: 280px;}
"""


def example_choices(manager: Any, run_id: str | None, split: str) -> list[tuple[str, int]]:
    """("position · record n · task · instruction", position) for each example of the run's split."""
    if not run_id:
        return []
    found = manager.run_data(run_id)
    choices = []
    for position, index in enumerate(found.indices(split)):
        record = found.dataset.records[index]
        task = f" · {record.task}" if record.task else ""
        choices.append((f"{position} · record {index}{task} · {record.instruction[:70]}", position))
    return choices


def heat_rows(result: inspection.Inspection) -> tuple[list, list, list, list]:
    """HighlightedText values (token, score in [-1, 1]): base, tuned, change and KL."""
    peak_kl = max((row.kl for row in result.tokens), default=0.0) or 1.0
    base = [(row.token, -row.base_prob) for row in result.tokens]
    tuned = [(row.token, row.tuned_prob) for row in result.tokens]
    change = [(row.token, row.tuned_prob - row.base_prob) for row in result.tokens]
    kl = [(row.token, row.kl / peak_kl) for row in result.tokens]
    return base, tuned, change, kl


def totals_html(result: inspection.Inspection) -> str:
    """The prompt the models read, then cards: losses base (or the compared model) → tuned, the mean KL,
    the token count."""
    def figure(value: float | None) -> str:
        return "–" if value is None else f"{value:.3f}"

    base, tuned, other = result.totals["base"], result.totals["tuned"], html.escape(result.against_label)
    mean_kl = sum(row.kl for row in result.tokens) / max(1, len(result.tokens))
    cards = [(f"{figure(base['response_loss'])} → {figure(tuned['response_loss'])}",
              f"answer loss, {other} → tuned", "mean loss of the reference answer's tokens"),
             (f"{figure(base['prompt_loss'])} → {figure(tuned['prompt_loss'])}", f"prompt loss, {other} → tuned",
              "mean loss of the prompt's tokens (not trained when the prompt is masked)"),
             (f"{mean_kl:.3f}", f"mean KL(tuned ‖ {other})", "per answer token, in nats"),
             (f"{len(result.tokens)}", "answer tokens", "the end-of-text token included")]
    body = "".join(f'<div class="pg-card" title="{html.escape(hint)}"><b>{value}</b><span>{name}</span></div>'
                   for value, name, hint in cards)
    cut = notice("The text was cut at the run's max length: the tokens after it were never trained.", "warn") \
        if result.truncated else ""
    prompt = (f'<div class="pg-facts">The prompt both models read ({len(result.prompt_tokens)} tokens):</div>'
              f'<div class="pg-text pg-prompt">{html.escape(result.prompt)}</div>')
    return f'{prompt}<div class="pg-cards" id="inspect-totals">{body}</div>{cut}'


def token_table(result: inspection.Inspection) -> pd.DataFrame:
    """Every answer token's figures, the compared model's columns named after it."""
    other = result.against_label
    return pd.DataFrame([{"#": n, "token": row.token, f"{other} p": round(row.base_prob, 4),
                          "tuned p": round(row.tuned_prob, 4), f"{other} loss": round(row.base_loss, 3),
                          "tuned loss": round(row.tuned_loss, 3), "KL": round(row.kl, 3)}
                         for n, row in enumerate(result.tokens)])


def token_detail(result: inspection.Inspection | None, n: int | None) -> str:
    """One token's figures and both sides' top 5 next tokens, side by side."""
    if result is None or n is None or not 0 <= n < len(result.tokens):
        return ""
    row = result.tokens[n]

    def top(pairs: list[tuple[str, float]]) -> str:
        return "".join(f"<tr><td><code>{html.escape(t)}</code></td><td>{p:.4f}</td></tr>" for t, p in pairs)

    other = html.escape(result.against_label)
    return (f'<div class="pg-facts">Token {n} <code>{html.escape(row.token)}</code> · {other} p '
            f'{row.base_prob:.4f} · tuned p {row.tuned_prob:.4f} · loss {row.base_loss:.3f} → {row.tuned_loss:.3f} · KL {row.kl:.3f}</div>'
            f'<div class="pg-top5"><table class="pg-findings"><tr><th>{other[:1].upper() + other[1:]}: top 5 next '
            f'tokens</th><th>p</th></tr>'
            f'{top(row.base_top)}</table><table class="pg-findings"><tr><th>Tuned: top 5 next tokens</th><th>p</th>'
            f'</tr>{top(row.tuned_top)}</table></div>')


def families_figure(families: list[inspection.FamilyLoss], other: str = "base") -> go.Figure:
    """Horizontal bars, base (or `other`, the compared model) and tuned, one pair per task family (long
    names stay readable)."""
    names = [f"{f.family} ({f.records})" for f in families]
    figure = go.Figure()
    for side, color in (("base", "#9ca3af"), ("tuned", "#6366f1")):
        shown = other if side == "base" else side
        figure.add_trace(go.Bar(y=names, x=[getattr(f, f"{side}_loss") for f in families], name=shown,
                                orientation="h", marker_color=color,
                                hovertemplate="%{y}: %{x:.3f}<extra>" + shown + "</extra>"))
    figure.update_layout(barmode="group", height=120 + 34 * len(families), template="plotly_white",
                         margin=dict(l=10, r=20, t=40, b=40), xaxis_title="mean loss per response token (lower is better)",
                         yaxis=dict(autorange="reversed", automargin=True),
                         legend=LEGEND_ABOVE_LEFT)
    return figure


def layout(manager: Any) -> SimpleNamespace:
    """The tab's components: the run and its example, a typed text (`ui.typed`), the results, and the
    loss by task family."""
    ui = SimpleNamespace(typed=Form())
    gr.Markdown(INTRO)
    with gr.Row(equal_height=True):
        ui.run = gr.Dropdown(run_choices(manager), value=None, label="Tuned run", scale=3, elem_id="inspect-run")
        ui.against = gr.Dropdown(against_choices(manager, None), value=BASE, label="Compare with", scale=2,
                                 elem_id="inspect-against")
        ui.split = gr.Dropdown(SPLITS, value="test", label="The run's own split", scale=1, elem_id="inspect-split")
        ui.example = gr.Dropdown([], label="Example", scale=4, elem_id="inspect-example")
        ui.go = gr.Button("Inspect", variant="primary", scale=1, elem_id="inspect-go")
    with gr.Accordion("Or a text of your own", open=False):
        with gr.Row():
            ui.typed.instruction = gr.Textbox(label="Instruction", lines=2, elem_id="inspect-instruction")
            ui.typed.input = gr.Textbox(label="Input (optional)", lines=2, elem_id="inspect-input")
            ui.typed.reference = gr.Textbox(label="Reference answer (what both models read)", lines=2,
                                            elem_id="inspect-reference")
        ui.go_typed = gr.Button("Inspect this text", elem_id="inspect-typed")
    ui.message = gr.HTML(notice(EMPTY), elem_id="inspect-message")
    results_layout(ui)
    families_layout(ui)
    return ui


def heat_labels(other: str = "base") -> list[str]:
    """The four heat maps' labels, naming the model the run is compared with."""
    return [f"{other[:1].upper() + other[1:]}: probability of each reference token",
            "Tuned: probability of each reference token", f"Change: tuned − {other} probability",
            f"KL(tuned ‖ {other}), scaled to the largest"]


def results_layout(ui: SimpleNamespace) -> None:
    """The losses, the four heat maps, one token's detail and every token's figures."""
    with gr.Column(visible=False) as ui.results:
        ui.totals = gr.HTML(elem_id="inspect-summary")
        ui.heat = [gr.HighlightedText(label=label, elem_id=elem_id, show_inline_category=False) for label, elem_id in
                   zip(heat_labels(), ("inspect-base", "inspect-tuned", "inspect-change", "inspect-kl"))]
        ui.detail = gr.HTML(elem_id="inspect-detail")
        with gr.Accordion("Every token's figures", open=False):
            ui.table = gr.Dataframe(interactive=False, max_height=360, elem_id="inspect-table")
    ui.shown = gr.State(None)  # this session's Inspection, for the token picked
    # in the order of `shown_updates`
    ui.views = [ui.results, ui.totals, *ui.heat, ui.detail, ui.table, ui.shown]


def families_layout(ui: SimpleNamespace) -> None:
    gr.Markdown("### Loss by task family\nThe mean loss of the reference answers' tokens per task family on the run's "
                "own split, base (or the model picked in Compare with) against tuned: which skills the fine-tune "
                "moved, and which it did not.")
    with gr.Row(equal_height=True):
        ui.family_split = gr.Dropdown(SPLITS, value="validation", label="Split", scale=1, elem_id="families-split")
        ui.family_limit = gr.Slider(1, 500, value=200, step=1, label="At most this many examples", scale=2,
                                    elem_id="families-limit")
        ui.family_go = gr.Button("Loss by task family", scale=1, elem_id="families-go")
    ui.family_message = gr.HTML(elem_id="families-message")
    ui.family_plot = gr.Plot(show_label=False, visible=False, elem_id="families-plot")


def shown_updates(result: inspection.Inspection) -> tuple[Any, ...]:
    """The views of an inspection, the heat maps labelled with the model the run was compared with."""
    heat = [gr.update(value=value, label=label)
            for value, label in zip(heat_rows(result), heat_labels(result.against_label))]
    return (gr.update(visible=True), totals_html(result), *heat, token_detail(result, 0), token_table(result), result)


def skip_views() -> tuple[Any, ...]:
    return tuple(gr.skip() for _ in range(9))  # one per component of `ui.views`, each its own update


NO_RUN = "Pick a tuned run first (train one in the Train tab)."


def inspect_example(manager: Any, run_id: str | None, split: str, position: Any,
                    against: str | None = BASE) -> Iterator[tuple[Any, ...]]:
    """The message, then the views of one example of the run's own split, against `against`."""
    if not run_id or position is None:
        yield notice(NO_RUN if not run_id else "Pick an example of the split.", "error"), *skip_views()
        return
    yield notice("Both models are reading the example (the first time, the model loads first)…"), *skip_views()
    try:
        result = inspection.inspect_example(manager, run_id, split, int(position), against or BASE)
    except PlaygroundError as exc:
        yield notice(str(exc), "error"), *skip_views()
        return
    yield notice(f"{result.source} of run {run_id}{against_note(result)}: {len(result.tokens)} answer tokens.",
                 "ok"), *shown_updates(result)


def against_note(result: inspection.Inspection) -> str:
    """" against run X" in a message when the run was compared with another model than the base."""
    return "" if result.against == BASE else f" against {result.against_label}"


def inspect_typed(manager: Any, run_id: str | None, typed: SimpleNamespace,
                  against: str | None = BASE) -> Iterator[tuple[Any, ...]]:
    """The message, then the views of a text the user typed."""
    if not run_id:
        yield notice(NO_RUN, "error"), *skip_views()
        return
    if not (typed.instruction or "").strip() or not (typed.reference or "").strip():
        yield notice("Type an instruction and a reference answer: the models read the answer token by token.",
                     "error"), *skip_views()
        return
    yield notice("Both models are reading the text…"), *skip_views()
    try:
        record = data.Record(typed.instruction.strip(), (typed.input or "").strip(), typed.reference.strip())
        result = inspection.inspect_record(manager, run_id, record, against=against or BASE)
    except PlaygroundError as exc:
        yield notice(str(exc), "error"), *skip_views()
        return
    yield notice(f"Your text, read by run {run_id}{against_note(result)}: {len(result.tokens)} answer tokens.",
                 "ok"), *shown_updates(result)


def picked_token(result: inspection.Inspection | None, event: gr.SelectData) -> str:
    return token_detail(result, event.index if isinstance(event.index, int) else None)


def family_report(manager: Any, run_id: str | None, split: str, limit: Any, progress: Any,
                  against: str | None = BASE) -> tuple[str, Any]:
    """(message, bar chart) of the loss per task family on the run's split, against `against`."""
    if not run_id:
        return notice("Pick a tuned run first.", "error"), gr.update(visible=False)
    try:
        progress(0, desc="Loading the model")
        families = inspection.family_losses(
            manager, run_id, split, int(limit),
            on_progress=lambda done, total: progress(done / total, desc=f"example {done} of {total}"),
            against=against or BASE)
    except PlaygroundError as exc:
        return notice(str(exc), "error"), gr.update(visible=False)
    other = side_name(against)
    records = sum(f.records for f in families)
    moved = sum(f.tuned_loss < f.base_loss for f in families)
    text = notice(f"{records} examples of the {split} split, {len(families)} task families: the tuned "
                  f"model's loss is lower than the {other}'s in {moved} of them.", "ok")
    return text, gr.update(value=families_figure(families, other), visible=True)


def refresh_examples(manager: Any, run_id: str | None, split: str, current: Any = None) -> tuple[Any, Any]:
    """The examples of the run's split, keeping the current one while it is there."""
    try:
        choices = example_choices(manager, run_id, split)
    except PlaygroundError as exc:
        return gr.update(choices=[], value=None), notice(str(exc), "error")
    values = [value for _, value in choices]
    keep = current if current in values else (values[0] if values else None)
    return gr.update(choices=choices, value=keep), gr.skip()


SAVED = "inspect"  # the run, split, example and compared model picked and what was inspected last, in the browser


def kept_pick(saved: dict[str, Any] | None, run_id: str | None, split: str, position: Any,
              against: str | None = BASE, inspected: dict[str, Any] | None = None) -> dict[str, Any]:
    """The browser's stored settings with this tab's picks, and what was inspected when it is given."""
    before = (saved or {}).get(SAVED) or {}
    now = {"run": run_id, "split": split, "example": position, "against": against or BASE,
           "inspected": inspected or before.get("inspected")}
    return {**(saved or {}), SAVED: now}


def restored_pick(manager: Any, saved: dict[str, Any] | None) -> tuple[Any, ...]:
    """The page opening: (run, split, example, compared model, message) as this browser left them, where
    still there."""
    kept = (saved or {}).get(SAVED) or {}
    choices = run_choices(manager)
    run_id = pick(choices, kept.get("run"))
    split = kept.get("split") if kept.get("split") in [value for _, value in SPLITS] else "test"
    examples, message = refresh_examples(manager, run_id, split, kept.get("example") if run_id == kept.get("run")
                                         else None)
    against = against_update(manager, run_id, kept.get("against"))
    return gr.update(choices=choices, value=run_id), split, examples, against, message


def inspect_again(manager: Any, saved: dict[str, Any] | None, shown: Any) -> Iterator[tuple[Any, ...]]:
    """Opening the tab after a reload: what this browser inspected last, read again (nothing when this
    page already shows a result or nothing was inspected)."""
    inspected = ((saved or {}).get(SAVED) or {}).get("inspected")
    if shown is not None or not isinstance(inspected, dict):
        yield gr.skip(), *skip_views()
    elif inspected.get("kind") == "typed":
        typed = SimpleNamespace(**{key: str(inspected.get(key) or "") for key in ("instruction", "input", "reference")})
        yield from inspect_typed(manager, inspected.get("run"), typed, inspected.get("against"))
    else:
        yield from inspect_example(manager, inspected.get("run"), str(inspected.get("split") or "test"),
                                   inspected.get("example"), inspected.get("against"))


def build(shared: Shared, tab: gr.Tab) -> None:
    manager = shared.manager
    ui = layout(manager)
    picks = [shared.browser, ui.run, ui.split, ui.example, ui.against]

    def asked(saved: Any, run_id: Any, split: Any, position: Any, against: Any, inspected: dict[str, Any],
              updates: Iterator[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
        """The inspection's updates, each with the browser's settings holding what was asked: the page
        keeps it from the moment it asks (a reload then reads it again)."""
        kept = kept_pick(saved, run_id, split, position, against, {**inspected, "run": run_id, "against": against})
        for update in updates:
            yield *update, kept

    ui.go.click(lambda saved, r, s, e, a: (yield from asked(saved, r, s, e, a,
                                                            {"kind": "example", "split": s, "example": e},
                                                            inspect_example(manager, r, s, e, a))),
                picks, [ui.message, *ui.views, shared.browser], show_progress="hidden")

    def on_typed(saved, r, s, e, a, *values):
        typed = ui.typed.read(values)
        yield from asked(saved, r, s, e, a, {"kind": "typed", **vars(typed)}, inspect_typed(manager, r, typed, a))

    ui.go_typed.click(on_typed, [*picks, *ui.typed.inputs()], [ui.message, *ui.views, shared.browser],
                      show_progress="hidden")
    remember(shared, {"instruction": ui.typed.instruction, "input": ui.typed.input, "reference": ui.typed.reference},
             "inspect-typed")
    for view in ui.heat:
        view.select(picked_token, ui.shown, ui.detail)

    def on_families(run_id, split, limit, against, progress=gr.Progress()):
        return family_report(manager, run_id, split, limit, progress, against)

    ui.family_go.click(on_families, [ui.run, ui.family_split, ui.family_limit, ui.against],
                       [ui.family_message, ui.family_plot], show_progress_on=[ui.family_message])
    # the user's pick of run or split lists its examples, the current one kept while it is there; the
    # page opening and the tab's refresh list them themselves (a change event would race their pick)
    gr.on([ui.run.input, ui.split.input], lambda *values: refresh_examples(manager, *values),
          [ui.run, ui.split, ui.example], [ui.example, ui.message])
    ui.run.input(lambda run_id, against: against_update(manager, run_id, against), [ui.run, ui.against], ui.against)
    gr.on([ui.run.input, ui.split.input, ui.example.input, ui.against.input], kept_pick, picks, shared.browser,
          show_progress="hidden")

    def refresh_runs(current, split, current_example, against):
        """The runs, the picked run's examples and the models it can be compared with."""
        update = run_update(manager, current)
        examples, message = refresh_examples(manager, update.get("value"), split, current_example)
        return update, examples, against_update(manager, update.get("value"), against), message

    shared.app.load(lambda saved: restored_pick(manager, saved), shared.browser,
                    [ui.run, ui.split, ui.example, ui.against, ui.message])
    tab.select(refresh_runs, [ui.run, ui.split, ui.example, ui.against],
               [ui.run, ui.example, ui.against, ui.message]).then(
        lambda saved, shown: (yield from inspect_again(manager, saved, shown)), [shared.browser, ui.shown],
        [ui.message, *ui.views], show_progress="hidden")
    relabel_runs(manager, ui.run)