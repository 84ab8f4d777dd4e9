"""Inspect tab: what the fine-tune changed, token by token, and which task families it moved."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from .. import data, inspection
from ..errors import PlaygroundError
from .common import LEGEND_ABOVE_LEFT, Shared, notice, run_choices, run_update

SPLITS = [("test", "test"), ("validation", "validation"), ("train (what it learned from)", "train")]
INTRO = ("Both models read the same text, the prompt and the **reference** answer (teacher forcing), and give "
         "each token of the answer a probability. **Base** (purple) and **Tuned** (red): the deeper the colour, the "
         "more sure the model was of the reference token. **Change**: red where the tuned model is surer than the "
         "base, purple where it is less sure. **KL**: how far the tuned model's whole next-token distribution moved "
         "from the base's, KL(tuned ‖ base). Click a token for both models' top 5 next tokens.")
EMPTY = "Pick a run and an example of its own split, then press Inspect (or type a text of your own below)."


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
    """The prompt the models read, then cards: losses base → tuned, the mean KL, the token count."""
    def figure(value: float | None) -> str:
        return "–" if value is None else f"{value:.3f}"

    base, tuned = result.totals["base"], result.totals["tuned"]
    mean_kl = sum(row.kl for row in result.tokens) / max(1, len(result.tokens))
    cards = [(f"{figure(base['response_loss'])} → {figure(tuned['response_loss'])}", "answer loss, base → tuned",
              "mean loss of the reference answer's tokens"),
             (f"{figure(base['prompt_loss'])} → {figure(tuned['prompt_loss'])}", "prompt loss, base → tuned",
              "mean loss of the prompt's tokens (not trained when the prompt is masked)"),
             (f"{mean_kl:.3f}", "mean KL(tuned ‖ base)", "per answer token, in nats"),
             (f"{len(result.tokens)}", "answer tokens", "the end-of-text token included")]
    body = "".join(f'<div class="pg-card" title="{html.escape(hint)}"><b>{value}</b><span>{name}</span></div>'
                   for value, name, hint in cards)
    cut = notice("The text was cut at the run's max length: the tokens after it were never trained.", "warn") \
        if result.truncated else ""
    prompt = (f'<div class="pg-facts">The prompt both models read ({len(result.prompt_tokens)} tokens):</div>'
              f'<div class="pg-text pg-prompt">{html.escape(result.prompt)}</div>')
    return f'{prompt}<div class="pg-cards" id="inspect-totals">{body}</div>{cut}'


def token_table(result: inspection.Inspection) -> pd.DataFrame:
    return pd.DataFrame([{"#": n, "token": row.token, "base p": round(row.base_prob, 4),
                          "tuned p": round(row.tuned_prob, 4), "base loss": round(row.base_loss, 3),
                          "tuned loss": round(row.tuned_loss, 3), "KL": round(row.kl, 3)}
                         for n, row in enumerate(result.tokens)])


def token_detail(result: inspection.Inspection | None, n: int | None) -> str:
    """One token's figures and both sides' top 5 next tokens, side by side."""
    if result is None or n is None or not 0 <= n < len(result.tokens):
        return ""
    row = result.tokens[n]

    def top(pairs: list[tuple[str, float]]) -> str:
        return "".join(f"<tr><td><code>{html.escape(t)}</code></td><td>{p:.4f}</td></tr>" for t, p in pairs)

    return (f'<div class="pg-facts">Token {n} <code>{html.escape(row.token)}</code> · base p {row.base_prob:.4f} · '
            f'tuned p {row.tuned_prob:.4f} · loss {row.base_loss:.3f} → {row.tuned_loss:.3f} · KL {row.kl:.3f}</div>'
            f'<div class="pg-top5"><table class="pg-findings"><tr><th>Base: top 5 next tokens</th><th>p</th></tr>'
            f'{top(row.base_top)}</table><table class="pg-findings"><tr><th>Tuned: top 5 next tokens</th><th>p</th>'
            f'</tr>{top(row.tuned_top)}</table></div>')


def families_figure(families: list[inspection.FamilyLoss]) -> go.Figure:
    """Horizontal bars, base and tuned, one pair per task family (long names stay readable)."""
    names = [f"{f.family} ({f.records})" for f in families]
    figure = go.Figure()
    for side, color in (("base", "#9ca3af"), ("tuned", "#6366f1")):
        figure.add_trace(go.Bar(y=names, x=[getattr(f, f"{side}_loss") for f in families], name=side,
                                orientation="h", marker_color=color,
                                hovertemplate="%{y}: %{x:.3f}<extra>" + side + "</extra>"))
    figure.update_layout(barmode="group", height=120 + 34 * len(families), template="plotly_white",
                         margin=dict(l=10, r=20, t=40, b=40), xaxis_title="mean loss per response token (lower is better)",
                         yaxis=dict(autorange="reversed", automargin=True),
                         legend=LEGEND_ABOVE_LEFT)
    return figure


def build(shared: Shared, tab: gr.Tab) -> None:
    manager = shared.manager
    gr.Markdown(INTRO)
    with gr.Row(equal_height=True):
        run = gr.Dropdown(run_choices(manager), value=None, label="Tuned run", scale=3, elem_id="inspect-run")
        split = gr.Dropdown(SPLITS, value="test", label="The run's own split", scale=1, elem_id="inspect-split")
        example = gr.Dropdown([], label="Example", scale=4, elem_id="inspect-example")
        go_button = gr.Button("Inspect", variant="primary", scale=1, elem_id="inspect-go")
    with gr.Accordion("Or a text of your own", open=False):
        with gr.Row():
            instruction = gr.Textbox(label="Instruction", lines=2, elem_id="inspect-instruction")
            given = gr.Textbox(label="Input (optional)", lines=2, elem_id="inspect-input")
            reference = gr.Textbox(label="Reference answer (what both models read)", lines=2,
                                   elem_id="inspect-reference")
        typed_button = gr.Button("Inspect this text", elem_id="inspect-typed")
    message = gr.HTML(notice(EMPTY), elem_id="inspect-message")
    with gr.Column(visible=False) as results:
        totals = gr.HTML(elem_id="inspect-summary")
        base_text = gr.HighlightedText(label="Base: probability of each reference token", elem_id="inspect-base",
                                       show_inline_category=False)
        tuned_text = gr.HighlightedText(label="Tuned: probability of each reference token", elem_id="inspect-tuned",
                                        show_inline_category=False)
        change_text = gr.HighlightedText(label="Change: tuned − base probability", elem_id="inspect-change",
                                         show_inline_category=False)
        kl_text = gr.HighlightedText(label="KL(tuned ‖ base), scaled to the largest", elem_id="inspect-kl",
                                     show_inline_category=False)
        detail = gr.HTML(elem_id="inspect-detail")
        with gr.Accordion("Every token's figures", open=False):
            table = gr.Dataframe(interactive=False, max_height=360, elem_id="inspect-table")
    gr.Markdown("### Loss by task family\nThe mean loss of the reference answers' tokens per task family on the run's "
                "own split, base against tuned: which skills the fine-tune moved, and which it did not.")
    with gr.Row(equal_height=True):
        family_split = gr.Dropdown(SPLITS, value="validation", label="Split", scale=1, elem_id="families-split")
        family_limit = gr.Slider(1, 500, value=200, step=1, label="At most this many examples", scale=2)
        family_button = gr.Button("Loss by task family", scale=1, elem_id="families-go")
    family_message = gr.HTML(elem_id="families-message")
    family_plot = gr.Plot(show_label=False, visible=False, elem_id="families-plot")
    shown = gr.State(None)  # this session's Inspection, for the token picked
    views = [results, totals, base_text, tuned_text, change_text, kl_text, detail, table, shown]

    def show(result: inspection.Inspection) -> tuple[Any, ...]:
        return (gr.update(visible=True), totals_html(result), *heat_rows(result), token_detail(result, 0),
                token_table(result), result)

    def inspect(run_id, split_name, position):
        skip = (gr.skip(),) * len(views)
        if not run_id:
            yield notice("Pick a tuned run first (train one in the Train tab).", "error"), *skip
            return
        if position is None:
            yield notice("Pick an example of the split.", "error"), *skip
            return
        yield notice("Both models are reading the example (the first time, the model loads first)…"), *skip
        try:
            result = inspection.inspect_example(manager, run_id, split_name, int(position))
        except PlaygroundError as exc:
            yield notice(str(exc), "error"), *skip
            return
        yield notice(f"{result.source} of run {run_id}: {len(result.tokens)} answer tokens.", "ok"), *show(result)

    def inspect_typed(run_id, instruction_text, input_text, reference_text):
        skip = (gr.skip(),) * len(views)
        if not run_id:
            yield notice("Pick a tuned run first (train one in the Train tab).", "error"), *skip
            return
        if not (instruction_text or "").strip() or not (reference_text or "").strip():
            yield notice("Type an instruction and a reference answer: the models read the answer token by token.",
                         "error"), *skip
            return
        yield notice("Both models are reading the text…"), *skip
        try:
            typed = data.Record(instruction_text.strip(), (input_text or "").strip(), reference_text.strip())
            result = inspection.inspect_record(manager, run_id, typed)
        except PlaygroundError as exc:
            yield notice(str(exc), "error"), *skip
            return
        yield notice(f"Your text, read by run {run_id}: {len(result.tokens)} answer tokens.", "ok"), *show(result)

    go_button.click(inspect, [run, split, example], [message, *views], show_progress="hidden")
    typed_button.click(inspect_typed, [run, instruction, given, reference], [message, *views],
                       show_progress="hidden")

    def pick_token(result, event: gr.SelectData):
        return token_detail(result, event.index if isinstance(event.index, int) else None)

    for view in (base_text, tuned_text, change_text, kl_text):
        view.select(pick_token, shown, detail)

    def on_families(run_id, split_name, limit, progress=gr.Progress()):
        if not run_id:
            return notice("Pick a tuned run first.", "error"), gr.update(visible=False)
        try:
            progress(0, desc="Loading the model")
            families = inspection.family_losses(
                manager, run_id, split_name, int(limit),
                on_progress=lambda done, total: progress(done / total, desc=f"example {done} of {total}"))
        except PlaygroundError as exc:
            return notice(str(exc), "error"), gr.update(visible=False)
        records = sum(f.records for f in families)
        moved = sum(f.tuned_loss < f.base_loss for f in families)
        text = notice(f"{records} examples of the {split_name} split, {len(families)} task families: the tuned "
                      f"model's loss is lower in {moved} of them.", "ok")
        return text, gr.update(value=families_figure(families), visible=True)

    family_button.click(on_families, [run, family_split, family_limit], [family_message, family_plot],
                        show_progress_on=[family_message])

    def refresh_examples(run_id, split_name, current=None):
        try:
            choices = example_choices(manager, run_id, split_name)
        except PlaygroundError as exc:
            return gr.update(choices=[], value=None), notice(str(exc), "error")
        values = [value for _, value in choices]
        keep = current if current in values else (values[0] if values else None)
        return gr.update(choices=choices, value=keep), gr.skip()

    gr.on([run.change, split.change], refresh_examples, [run, split], [example, message])

    def refresh_runs(current, split_name, current_example):
        """The runs, and the picked run's examples (a reload keeps the run, so no change event fires)."""
        update = run_update(manager, current)
        return update, *refresh_examples(update.get("value"), split_name, current_example)

    gr.on([shared.app.load, tab.select], refresh_runs, [run, split, example], [run, example, message])
