"""Batch masking tab: one collated training batch as a token grid, from the training collate path; for a
preference dataset, a batch of pairs as DPO collates it (`dpo.collate_pairs`), each pair's chosen row over its
rejected row."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from .. import batching, data, dpo, tiktoken_tokenizer
from ..batching import IGNORE_INDEX, KINDS
from ..errors import PlaygroundError
from ..prompts import style_label
from .common import (BATCH_ORDER_CHOICES, COLORS, MASK_CHOICES, MASK_LABEL, SPLIT_ORDER_CHOICES, Shared, changed, follow,
                     legend, notice, tokenizer_or_message)

SPLITS = ["train", "validation", "test"]


# The grid of positions: each an input token over its target token.
CSS = """
.pg-grid {font-family: ui-monospace, monospace; font-size: 12px;}
.pg-sample {margin: 8px 0 16px 0; border-top: 1px solid #e5e7eb; padding-top: 6px;}
.pg-sample-title {font-family: system-ui, sans-serif; font-size: 13px; color: #374151; margin-bottom: 4px;}
.pg-row {display: flex; flex-wrap: nowrap; gap: 3px 2px; overflow-x: auto; margin-bottom: 6px;}
.pg-tok {display: inline-flex; flex-direction: column; align-items: stretch; text-align: center; min-width: 22px;}
.pg-tok i {font-style: normal; font-size: 9px; color: #9ca3af;}
.pg-tok span {padding: 1px 4px; white-space: pre; color: #111827; border-radius: 3px; line-height: 1.25;}
.pg-tok span.pg-in {background: #f9fafb; border: 1px solid #e5e7eb; margin-bottom: 2px;}
.pg-tok span.pg-tg {border: 1px solid rgba(0,0,0,0.08);}
.pg-tok small {display: block; color: #6b7280; font-size: 9px;}
.pg-pair-rows {border-left: 3px solid #a5b4fc; padding-left: 8px; margin-bottom: 14px;}
.pg-pair-rows .pg-sample {margin: 4px 0 8px 0;}
.pg-side-chosen {color: #166534;}
.pg-side-rejected {color: #991b1b;}
.pg-labels span, .pg-labels i {color: #6b7280; font-family: system-ui, sans-serif; text-align: right; font-size: 11px;
  background: none !important; border: none !important; padding: 1px 4px; line-height: 2.5;}
"""


def column(position: str, top: str, top_id: str, bottom: str, bottom_id: str, color: str, title: str) -> str:
    """One position: its number, the input token over the target token, ids in small print."""
    return (f'<div class="pg-tok" title="{html.escape(title)}"><i>{position}</i>'
            f'<span class="pg-in">{html.escape(top)}<small>{top_id}</small></span>'
            f'<span class="pg-tg" style="background:{color}">{html.escape(bottom)}<small>{bottom_id}</small></span></div>')


LABELS = ('<div class="pg-tok pg-labels"><i>position</i><span>input</span><span>target</span></div>')
PER_LINE = 16  # positions per line of the grid; every line starts with the row labels


def lines(columns: list[str]) -> str:
    """The columns of one sample in lines of PER_LINE, each line with its own labels."""
    return "".join(f'<div class="pg-row">{LABELS}{"".join(columns[start:start + PER_LINE])}</div>'
                   for start in range(0, len(columns), PER_LINE))


def trained_count(row: batching.RowView) -> int:
    return sum(1 for t in row.target_ids if t != IGNORE_INDEX)


def grid_html(view: batching.BatchView, tokenizer: Any) -> str:
    """Per sample: each position's input token over its target, coloured by what happens to the target."""
    blocks = [row_html(f"Sample {number + 1} · record #{row.index}", row, view.width, tokenizer)
              for number, row in enumerate(view.rows)]
    return f'<div class="pg-grid" id="batch-grid">{"".join(blocks)}</div>'


def row_html(title: str, row: batching.RowView, width: int, tokenizer: Any, attributes: str = "") -> str:
    """One row of a batch (`title`: HTML), its counts, then its positions in lines; `attributes` go on its block."""
    inputs = batching.token_text(tokenizer, row.input_ids)
    following = batching.token_text(tokenizer, row.next_ids)
    columns = []
    for position, (token, input_id, target, kind) in enumerate(zip(inputs, row.input_ids, row.target_ids, row.kinds)):
        label = "-100" if target == IGNORE_INDEX else str(target)
        shown = following[position] if position < len(following) else "·"
        columns.append(column(str(position), token, str(input_id), shown, label, COLORS[kind],
                              f"position {position}: {KINDS[kind]}; target id {label}"))
    for offset, (token, token_id) in enumerate(zip(batching.token_text(tokenizer, row.truncated_ids), row.truncated_ids)):
        columns.append(column(f"✂{width + 1 + offset}", token, str(token_id), "", "never seen",
                              COLORS["truncated"], "truncated away by the max length"))
    real = sum(1 for k in row.kinds if k != "pad")
    cut = len(row.truncated_ids)
    heading = (f'<div class="pg-sample-title">{title} · {real} real tokens · {trained_count(row)} trained targets'
               f'{f" · {width - real} padding" if width > real else ""}'
               f'{f" · {cut} tokens truncated" if cut else ""}</div>')
    return f'<div class="pg-sample"{attributes}>{heading}{lines(columns)}</div>'


def pairs_grid_html(view: batching.BatchView, tokenizer: Any) -> str:
    """A batch of pairs (`dpo.collate_pairs`): per pair, its chosen row over its rejected row."""
    blocks = []
    for number, (chosen, rejected) in enumerate(dpo.pair_rows(view), start=1):
        rows = "".join(row_html(f'<b class="pg-side-{side}">{side}</b> · pair {number} · record #{row.index}', row,
                                view.width, tokenizer, f' data-pair="{number}" data-side="{side}"')
                       for side, row in (("chosen", chosen), ("rejected", rejected)))
        blocks.append(f'<div class="pg-pair-rows">{rows}</div>')
    return f'<div class="pg-grid" id="batch-grid">{"".join(blocks)}</div>'


def summary_html(view: batching.BatchView, rows: str = "batch × length") -> str:
    """Cards: the batch's shape (`rows` names it), real, trained and computed tokens, padding."""
    cards = [(f"{len(view.rows)} × {view.width}", rows), (f"{view.real_tokens:,}", "real tokens"),
             (f"{view.trained_tokens:,}", "trained targets"), (f"{view.computed_tokens:,}", "computed positions"),
             (f"{view.padding_fraction:.1%}", "padding")]
    body = "".join(f'<div class="pg-card"><b>{v}</b><span>{k}</span></div>' for v, k in cards)
    return f'<div class="pg-cards" id="batch-summary">{body}</div>'


def empty_samples_warning(view: batching.BatchView, mask: str, max_length: int | None) -> str:
    """A warning when some samples train on nothing: their response was cut away by the max length."""
    empty = [str(number + 1) for number, row in enumerate(view.rows) if trained_count(row) == 0]
    if not empty:
        return ""
    why = (f"with the {mask} masked and a max length of {max_length} tokens, their response was cut away"
           if mask != "none" and max_length else "nothing in them is trained")
    return notice(f"Sample{'s' if len(empty) > 1 else ''} {', '.join(empty)} of this batch "
                  f"{'have' if len(empty) > 1 else 'has'} 0 trained targets: {why}, so "
                  f"{'they add' if len(empty) > 1 else 'it adds'} nothing to the loss. Raise the max length "
                  "or turn off masking.", "warn")


def style_line(style_value: str) -> str:
    return (f'<div class="pg-facts" id="batch-style">Prompt style: <b>{html.escape(style_label(style_value))}</b>, '
            "as chosen in the Prompt styles tab; the Train tab uses the same one.</div>")


def batch_view(dataset: data.Dataset, tokenizer: Any, style: str, template: str, size: int, length: int,
               split_name: str, seed: int, mask: str, grouped: bool, number: int,
               order: str = "shuffled", drop_last: bool = False,
               batch_order: str = "shuffled") -> tuple[str, str, str]:
    """(warning, summary, grid) of one batch of a split, as training collates it; the samples are
    titled by their record number in the dataset (the Dataset tab's #)."""
    indices = getattr(dataset.splits(seed=int(seed or 0), order=order or "shuffled"), split_name)
    mask = mask or "none"
    if dataset.is_preference:
        return pairs_view(dataset, indices, tokenizer, style, template, int(size), int(length) or None, mask, grouped,
                          int(seed or 0), int(number or 0), bool(drop_last), batch_order or "shuffled")
    lengths = batching.dataset_lengths(dataset, style, tokenizer, template) if grouped else None
    batch = batching.training_batch(dataset.records, indices, tokenizer, style, int(size), int(number or 0),
                                    int(length) or None, mask, grouped, int(seed or 0), template, lengths,
                                    bool(drop_last), batch_order or "shuffled")
    view = batching.describe(batch)
    return empty_samples_warning(view, mask, int(length) or None), summary_html(view), grid_html(view, tokenizer)


def pairs_view(dataset: data.Dataset, indices: list[int], tokenizer: Any, style: str, template: str, size: int,
               max_length: int | None, mask: str, grouped: bool, seed: int, number: int, drop_last: bool,
               batch_order: str) -> tuple[str, str, str]:
    """(warning, summary, grid) of one batch of a preference dataset, as a DPO run collates it."""
    lengths = dpo.dataset_pair_lengths(dataset, style, tokenizer, template) if grouped else None
    batch = dpo.training_pairs(dataset.records, indices, tokenizer, style, size, number, max_length, mask, grouped,
                               seed, template, lengths, drop_last, batch_order)
    view = batching.describe(batch)
    cards = summary_html(view, f"{len(view.rows) // 2} pairs: rows × length")
    computes = f'<div class="pg-facts" id="batch-dpo">{html.escape(dpo.computes(mask))}</div>'
    return empty_pair_rows_warning(view, mask, max_length), cards + computes, pairs_grid_html(view, tokenizer)


def empty_pair_rows_warning(view: batching.BatchView, mask: str, max_length: int | None) -> str:
    """A warning when some rows of a batch of pairs score nothing: DPO counts their log-probability as 0."""
    empty = [f"pair {number} {side}" for number, (chosen, rejected) in enumerate(dpo.pair_rows(view), start=1)
             for side, row in (("chosen", chosen), ("rejected", rejected)) if trained_count(row) == 0]
    if not empty:
        return ""
    why = (f"with the {mask} masked and a max length of {max_length} tokens, the response was cut away"
           if mask != "none" and max_length else "nothing in them is trained")
    return notice(f"0 trained targets in {', '.join(empty)}: {why}, so DPO takes that log-probability as 0 and "
                  "the pair teaches little. Raise the max length.", "warn")


def build(shared: Shared) -> None:
    gr.Markdown("One batch exactly as training collates it. Targets are the inputs shifted left by one: "
                "the **target** under each input token is the token the model must predict there. "
                "`-100` marks targets the loss ignores.")
    shown_style = gr.HTML(style_line("alpaca"))
    with gr.Row():
        batch_size = gr.Slider(1, 16, value=4, step=1, label="Batch size", elem_id="batch-size")
        max_length = gr.Slider(0, 1024, value=0, step=8, label="Max length (0 = no truncation)", elem_id="max-length")
        split = gr.Dropdown(SPLITS, value="train", label="Split")
        seed = gr.Number(value=123, precision=0, label="Shuffle seed")
        order = gr.Dropdown(SPLIT_ORDER_CHOICES, value="shuffled", label="Split order", elem_id="batch-split-order")
        batch_order = gr.Dropdown(BATCH_ORDER_CHOICES, value="shuffled", label="Batch order",
                                  elem_id="batch-batch-order")
    with gr.Row():
        mask = gr.Radio(MASK_CHOICES, value="none", label=MASK_LABEL, elem_id="batch-mask")
    with gr.Row():
        drop_last = gr.Checkbox(label="Drop the last, smaller batch (the book's loader)", elem_id="batch-drop-last")
        tokenizer_choice = gr.Dropdown(tiktoken_tokenizer.TAB_CHOICES, value=tiktoken_tokenizer.SESSION,
                                       label="Tokenizer", info=tiktoken_tokenizer.TAB_NOTE, elem_id="batch-tokenizer")
        group = gr.Checkbox(label="Group by length (less padding)", elem_id="group-by-length")
        number = gr.Number(value=0, precision=0, minimum=0, label="Batch number in the epoch", elem_id="batch-number")
        next_batch = gr.Button("Next batch ▶", elem_id="next-batch")
    message = gr.HTML()
    summary = gr.HTML()
    gr.HTML(legend({k: KINDS[k] for k in KINDS} | {"truncated": "truncated away (never seen)"}))
    grid = gr.HTML(elem_id="batch-grid-view")

    def show(dataset, spec, choice, *settings):
        tokenizer, wait_message = (tiktoken_tokenizer.load_or_message() if choice == tiktoken_tokenizer.NAME
                                   else tokenizer_or_message(shared.manager, spec))
        if not tokenizer:
            return notice(wait_message, "error"), "", ""
        try:
            return batch_view(dataset, tokenizer, *settings)
        except PlaygroundError as exc:  # no stale batch under the error
            return notice(str(exc), "error"), "", ""

    inputs = [shared.dataset, shared.tokenizer_spec, tokenizer_choice, shared.style, shared.template, batch_size,
              max_length, split, seed, mask, group, number, order, drop_last, batch_order]
    outputs = [message, summary, grid]
    shared.style.change(style_line, shared.style, shown_style)
    follow([*changed(shared, "dataset", "tokenizer_spec", "style", "template"), *(c.change for c in (
        batch_size, max_length, split, mask, group, order, drop_last, batch_order, tokenizer_choice)),
        seed.submit, number.submit], show, inputs, outputs)
    next_batch.click(lambda n: int(n or 0) + 1, number, number).then(show, inputs, outputs)
