"""Dataset tab: load a dataset, page and search it, see one record and the dataset's stats."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from .. import data, prompts
from ..errors import PlaygroundError
from .common import Shared, notice, tokenizer_or_message

PAGE_SIZES = [10, 20, 50]
TABLE_COLUMNS = ["#", "task", "instruction", "input", "output"]


def filtered(dataset: data.Dataset, query: str) -> pd.DataFrame:
    frame = dataset.to_frame()
    frame.insert(0, "#", range(len(frame)))
    query = (query or "").strip().lower()
    if query:
        text = (frame["instruction"] + "\n" + frame["input"] + "\n" + frame["output"] + "\n" + frame["task"]).str.lower()
        frame = frame[text.str.contains(query, regex=False)]
    return frame


def page_of(dataset: data.Dataset, query: str, page: int, page_size: int) -> tuple[pd.DataFrame, int, str]:
    """One page of the (searched) table, the page number actually shown, and a caption."""
    frame = filtered(dataset, query)
    page_size = int(page_size or PAGE_SIZES[0])
    pages = max(1, -(-len(frame) // page_size))
    page = min(max(1, int(page or 1)), pages)
    shown = frame.iloc[(page - 1) * page_size: page * page_size][TABLE_COLUMNS]
    caption = f"{len(frame):,} of {len(dataset):,} records match" if (query or "").strip() else f"{len(dataset):,} records"
    return shown, page, f"{caption} · page {page} of {pages}"


def stats_html(dataset: data.Dataset) -> str:
    sizes = dataset.splits().sizes()
    tasks = len({r.task for r in dataset.records if r.task})
    cards = [(f"{len(dataset):,}", "records"), (f"{dataset.with_input:,}", "with an input"),
             (f"{sizes['train']:,}", "train (85%)"), (f"{sizes['validation']:,}", "validation (5%)"),
             (f"{sizes['test']:,}", "test (10%)")]
    if tasks:
        cards.append((str(tasks), "task families"))
    body = "".join(f'<div class="pg-card"><b>{v}</b><span>{k}</span></div>' for v, k in cards)
    mapping = ", ".join(f"{k} ← <code>{html.escape(v)}</code>" for k, v in dataset.mapping.items())
    extra = f'<div style="margin-top:6px;font-size:13px;color:#4b5563">Source: {html.escape(dataset.source)} · columns: {mapping}</div>'
    if dataset.duplicates:
        rows = ", ".join(f"{a} repeats {b}" for a, b in dataset.duplicates[:5])
        more = " …" if len(dataset.duplicates) > 5 else ""
        extra += notice(f"{len(dataset.duplicates)} duplicate instruction/input pairs (kept): {rows}{more}", "warn")
    return f'<div class="pg-cards">{body}</div>{extra}'


def length_histogram(dataset: data.Dataset, tokenizer: Any) -> go.Figure:
    """Token counts of each record's Alpaca training text (prompt + response + end-of-text)."""
    texts = [prompts.render(r, "alpaca", tokenizer).training_text for r in dataset.records]
    lengths = pd.Series([len(ids) for ids in tokenizer(texts).input_ids])
    figure = go.Figure(go.Histogram(x=lengths, nbinsx=40, marker_color="#6366f1"))
    figure.update_layout(
        title=f"Token lengths, Alpaca style (median {lengths.median():.0f}, 95th percentile "
              f"{lengths.quantile(0.95):.0f}, max {lengths.max()})",
        xaxis_title="tokens per training example", yaxis_title="records",
        height=300, margin=dict(l=50, r=20, t=50, b=40), bargap=0.05, template="plotly_white")
    return figure


def record_html(dataset: data.Dataset, index: int) -> str:
    if not 0 <= index < len(dataset):
        return notice(f"Record {index} does not exist: the dataset has {len(dataset)} records.", "warn")
    record = dataset.records[index]
    rows = [("instruction", record.instruction), ("input", record.input or "(empty)"), ("output", record.output)]
    if record.task:
        rows.append(("task", f"{record.task} · {'single correct answer' if record.exact else 'open answer'}"))
    body = "".join(f'<div style="margin-bottom:8px"><div style="font-size:12px;color:#6b7280">{k}</div>'
                   f'<div class="pg-text">{html.escape(v)}</div></div>' for k, v in rows)
    return f"<div><b>Record #{index}</b></div>{body}"


def build(shared: Shared) -> dict[str, Any]:
    with gr.Row():
        with gr.Column(scale=3):
            source = gr.Textbox(label="Load a dataset: file path, URL or Hugging Face dataset id",
                                placeholder="e.g. data/my_instructions.jsonl", elem_id="dataset-path")
            with gr.Row():
                load_button = gr.Button("Load", variant="primary", elem_id="dataset-load")
                builtin_button = gr.Button("Bundled dataset", elem_id="dataset-builtin")
            with gr.Accordion("Column mapping (optional: leave empty to detect)", open=False):
                with gr.Row():
                    map_instruction = gr.Textbox(label="instruction column", placeholder="instruction / prompt / question")
                    map_input = gr.Textbox(label="input column", placeholder="input / context")
                    map_output = gr.Textbox(label="output column", placeholder="output / response / completion / answer")
        with gr.Column(scale=2):
            upload = gr.File(label="…or upload JSON, JSONL, CSV or Parquet", file_types=[".json", ".jsonl", ".csv", ".parquet"],
                             height=170, elem_id="dataset-upload")
    message = gr.HTML()
    stats = gr.HTML()
    histogram = gr.Plot(show_label=False, visible=False, elem_id="dataset-histogram")  # shown once drawn
    with gr.Row():
        with gr.Column(scale=5):
            with gr.Row():
                search = gr.Textbox(label="Search", placeholder="words in instruction, input, output or task",
                                    scale=3, elem_id="dataset-search")
                page_size = gr.Dropdown(PAGE_SIZES, value=PAGE_SIZES[0], label="Rows per page", scale=1)
            # tall enough for a page of wrapped rows; task wide enough for "animal_classification"
            table = gr.Dataframe(headers=TABLE_COLUMNS, interactive=False, wrap=True, max_height=1400,
                                 column_widths=["6%", "20%", "32%", "18%", "24%"], elem_id="dataset-table")
            with gr.Row():
                prev_button = gr.Button("◀ Previous", size="sm", elem_id="page-prev")
                page = gr.Number(value=1, label="Page", precision=0, minimum=1, elem_id="page-number")
                next_button = gr.Button("Next ▶", size="sm", elem_id="page-next")
            caption = gr.Markdown(elem_id="page-caption")
        with gr.Column(scale=2):
            detail = gr.HTML(elem_id="record-detail")

    table_inputs = [shared.dataset, search, page, page_size]
    table_outputs = [table, page, caption]

    def load_source(path_or_file, instruction_col, input_col, output_col, name=None):
        """Load a path, URL or id; an upload is called by its own file `name`, not Gradio's temporary path."""
        mapping = {"instruction": instruction_col, "input": input_col, "output": output_col}
        try:
            dataset = data.load(path_or_file or "", {k: v.strip() for k, v in mapping.items() if v and v.strip()},
                                shared.max_file_mb)
        except PlaygroundError as exc:
            # keep the dataset the session had: no state output changes
            shown = str(exc).replace(str(path_or_file), name) if name else str(exc)
            return gr.skip(), notice(shown, "error"), gr.skip(), gr.skip(), gr.skip()
        if name:
            dataset.source = name  # `origin` keeps the path it was read from
        return dataset, notice(f"Loaded {len(dataset):,} records from {dataset.source}.", "ok"), 0, 1, ""

    def load_upload(path, *mapping):
        """Load an upload, then empty the upload box for the next one (the message names the file)."""
        if not path:
            return (gr.skip(),) * 6
        loaded = load_source(path, *mapping, name=Path(path).name)
        if not isinstance(loaded[0], data.Dataset):  # refused: the server keeps no copy
            data.discard_upload(path, gr.utils.get_upload_folder())
        return *loaded, None

    def refresh_overview(dataset, spec):
        tokenizer, wait_message = tokenizer_or_message(shared.manager, spec)
        if not tokenizer:
            return stats_html(dataset) + notice(wait_message, "error"), gr.update(value=None, visible=False)
        return stats_html(dataset), gr.update(value=length_histogram(dataset, tokenizer), visible=True)

    mapping_inputs = [map_instruction, map_input, map_output]
    load_outputs = [shared.dataset, message, shared.record_index, page, search]
    loaded = [
        load_button.click(load_source, [source, *mapping_inputs], load_outputs),
        source.submit(load_source, [source, *mapping_inputs], load_outputs),
        builtin_button.click(lambda *m: load_source(data.BUILTIN, *m), mapping_inputs, load_outputs),
        upload.upload(load_upload, [upload, *mapping_inputs], [*load_outputs, upload]),
    ]

    search.change(lambda: 1, outputs=page).then(page_of, table_inputs, table_outputs)
    page_size.change(page_of, table_inputs, table_outputs)
    page.submit(page_of, table_inputs, table_outputs)
    prev_button.click(lambda p: max(1, int(p or 1) - 1), page, page).then(page_of, table_inputs, table_outputs)
    next_button.click(lambda p: int(p or 1) + 1, page, page).then(page_of, table_inputs, table_outputs)

    def select_row(dataset, event: gr.SelectData):
        index = int(event.row_value[0])
        return index, record_html(dataset, index)

    table.select(select_row, shared.dataset, [shared.record_index, detail])

    return {
        "loaded": loaded,  # events after which every tab refreshes
        "refreshers": [(page_of, table_inputs, table_outputs),
                       (record_html, [shared.dataset, shared.record_index], detail),
                       (refresh_overview, [shared.dataset, shared.tokenizer_spec], [stats, histogram])],
    }
