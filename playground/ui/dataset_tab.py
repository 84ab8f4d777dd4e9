"""Dataset tab: load a dataset, page and search it, see one record and the dataset's stats; a preference
pair's chosen and rejected responses side by side, their difference highlighted word by word."""

from __future__ import annotations

import html
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import gradio as gr
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .. import batching, data, data_checks, pair_diff, prompts, tiktoken_tokenizer
from ..settings import TrainConfig
from ..errors import PlaygroundError
from .common import (MASK_CHOICES, MASK_LABEL, SPLIT_ORDER_CHOICES, Shared, changed, follow, notice,
                     tokenizer_or_message)

PAGE_SIZES = [10, 20, 50]
TABLE_COLUMNS = ["#", "task", "instruction", "input", "output"]
MASK_TEXT = {"none": "nothing masked", "prompt": "whole prompt masked",
             "instruction": "instruction and input masked, response header trained"}

# A preference pair side by side (two columns while the record view is wide enough, else one over the
# other); words only in one side: underlined on green, struck through on red (both above 4.5:1 contrast,
# and told apart without colour too).
CSS = """
.pg-pair {display: grid; grid-template-columns: repeat(auto-fit, minmax(120px, 1fr)); gap: 8px; margin-bottom: 4px;}
.pg-pair .pg-text {overflow-wrap: anywhere;}
.pg-pair-head {font-size: 12px; margin-bottom: 2px;}
.pg-side-chosen {color: #166534;}
.pg-side-rejected {color: #991b1b;}
#record-detail ins {background: #dcfce7; color: #14532d; text-decoration: underline; text-underline-offset: 2px;
  border-radius: 3px;}
#record-detail del {background: #fee2e2; color: #7f1d1d; text-decoration: line-through; border-radius: 3px;}
"""


def matches(dataset: data.Dataset, query: str) -> Sequence[int]:
    """Record numbers whose instruction, input, output, task or a pair's response holds the query (any
    case); all without one."""
    query = (query or "").strip().lower()
    if not query:
        return range(len(dataset))

    def search() -> np.ndarray:
        found = [i for i, r in enumerate(dataset.records)
                 if query in f"{r.instruction}\n{r.input}\n{r.output}\n{r.task}\n{r.chosen}\n{r.rejected}".lower()]
        return np.array(found, dtype=np.int32)

    return dataset.remember(("search", query), search)


def page_rows(dataset: data.Dataset, numbers: Sequence[int]) -> pd.DataFrame:
    """The table rows of the given records only."""
    records = [dataset.records[int(i)] for i in numbers]
    return pd.DataFrame([[int(i), r.task, r.instruction, r.input, r.output] for i, r in zip(numbers, records)],
                        columns=TABLE_COLUMNS)


def page_of(dataset: data.Dataset, query: str, page: int, page_size: int) -> tuple[pd.DataFrame, int, str]:
    """One page of the (searched) table, the page number actually shown, and a caption."""
    found = matches(dataset, query)
    page_size = int(page_size or PAGE_SIZES[0])
    pages = max(1, -(-len(found) // page_size))
    page = min(max(1, int(page or 1)), pages)
    shown = page_rows(dataset, found[(page - 1) * page_size: page * page_size])
    caption = f"{len(found):,} of {len(dataset):,} records match" if (query or "").strip() else f"{len(dataset):,} records"
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
    if dataset.is_preference:
        extra += pairs_html(dataset)
    return f'<div class="pg-cards">{body}</div>{extra}'


HISTOGRAM_SAMPLE = 20_000  # records drawn for the histogram of a larger dataset


def histogram_lengths(dataset: data.Dataset, tokenizer: Any, sample: int = HISTOGRAM_SAMPLE) -> np.ndarray:
    """Training-sample lengths in the Alpaca style: of every record, or of a seeded uniform sample
    of `sample` records when there are more."""
    if len(dataset) <= sample:
        return batching.dataset_lengths(dataset, "alpaca", tokenizer)
    picked = np.sort(np.random.default_rng(0).choice(len(dataset), size=sample, replace=False))
    return batching.sample_lengths(dataset.records, "alpaca", tokenizer, indices=picked.tolist())


def length_histogram(dataset: data.Dataset, tokenizer: Any, sample: int = HISTOGRAM_SAMPLE) -> go.Figure:
    """Token counts of each record's Alpaca training sample (prompt + response + end-of-text)."""
    lengths = histogram_lengths(dataset, tokenizer, sample)
    drawn = "" if len(lengths) == len(dataset) else f"; a uniform sample of {len(lengths):,} of {len(dataset):,} records"
    figure = go.Figure(go.Histogram(x=lengths, nbinsx=40, marker_color="#6366f1"))
    figure.update_layout(
        title=f"Token lengths, Alpaca style (median {np.median(lengths):.0f}, 95th percentile "
              f"{np.percentile(lengths, 95):.0f}, max {lengths.max()}{drawn})",
        xaxis_title="tokens per training example", yaxis_title="records",
        height=300, margin=dict(l=50, r=20, t=50, b=40), bargap=0.05, template="plotly_white")
    return figure


def record_html(dataset: data.Dataset, index: int) -> str:
    if not 0 <= index < len(dataset):
        return notice(f"Record {index} does not exist: the dataset has {len(dataset)} records.", "warn")
    record = dataset.records[index]
    rows = [("instruction", record.instruction), ("input", record.input or "(empty)")]
    if not record.is_pair or record.output != record.chosen:  # a pair's output is often its chosen response
        rows.append(("output", record.output))
    if record.task:
        rows.append(("task", f"{record.task} · {'single correct answer' if record.exact else 'open answer'}"))
    body = "".join(f'<div style="margin-bottom:8px"><div style="font-size:12px;color:#6b7280">{k}</div>'
                   f'<div class="pg-text">{html.escape(v)}</div></div>' for k, v in rows)
    if record.is_pair:
        body += pair_html(record) + record_findings_html(dataset, index)
    return f"<div><b>Record #{index}</b></div>{body}"


def pair_html(record: data.Record) -> str:
    """The chosen and the rejected response side by side, the words that differ highlighted, and their counts."""
    diff = pair_diff.word_diff(record.chosen, record.rejected)
    columns = "".join(
        f'<div class="pg-pair-side" data-side="{side}"><div class="pg-pair-head pg-side-{side}">{side}</div>'
        f'<div class="pg-text">{diff_text(parts, tag) if "".join(t for t, _ in parts).strip() else "<i>(empty)</i>"}'
        '</div></div>'
        for side, parts, tag in (("chosen", diff.chosen, "ins"), ("rejected", diff.rejected, "del")))
    words = "word" if diff.only_chosen == 1 else "words"
    key = (f'<div class="pg-facts" id="record-pair-key">Word by word: <ins>{diff.only_chosen} {words} only in '
           f'chosen</ins> · <del>{diff.only_rejected} only in rejected</del> · {diff.shared} in both.</div>')
    return f'<div class="pg-pair" id="record-pair">{columns}</div>{key}'


def diff_text(parts: Sequence[tuple[str, bool]], tag: str) -> str:
    """One side's segments as HTML: the changed ones inside `tag` (ins or del), everything escaped."""
    return "".join(f"<{tag}>{html.escape(text)}</{tag}>" if changed else html.escape(text) for text, changed in parts)


def pair_findings(dataset: data.Dataset) -> list[data_checks.Finding]:
    """The preference pairs' own findings on the default split, computed once per dataset."""
    return dataset.remember(("pair_findings",), lambda: data_checks.pair_findings(dataset.records, dataset.splits()))


def record_findings_html(dataset: data.Dataset, index: int) -> str:
    """The pair findings that concern one record, as a warning; nothing when there are none."""
    found = [f.title + (f" ({f.notes[index]})" if index in f.notes else "")
             for f in pair_findings(dataset) if index in f.records]
    return notice("This pair: " + "; ".join(found) + ".", "warn") if found else ""


def pairs_html(dataset: data.Dataset) -> str:
    """A preference dataset's pair findings (the default split), in the data check's table."""
    findings = pair_findings(dataset)
    found = sum(1 for f in findings if f.count)
    if not found:
        return ('<div id="dataset-pairs">' + notice("Preference pairs (chosen and rejected): no identical or empty "
                                                    "sides, no prompt in several splits.", "ok") + "</div>")
    rows = "".join(finding_row(f) for f in findings)
    summary = notice(f"Preference pairs (chosen and rejected): {found} kind{'s' if found != 1 else ''} of pair "
                     "problem found (on the 85/5/10 split with seed 123).", "warn")
    return (f'<div id="dataset-pairs">{summary}<table class="pg-findings"><tr><th>finding</th><th>records</th>'
            f'<th>first record numbers</th><th>what it means</th></tr>{rows}</table></div>')


def layout() -> SimpleNamespace:
    """The tab's components: the loaders, the message and stats, the table and the record."""
    ui = SimpleNamespace()
    with gr.Row():
        with gr.Column(scale=3):
            ui.source = gr.Textbox(label="Load a dataset: file path, URL or Hugging Face dataset id",
                                   placeholder="e.g. data/my_instructions.jsonl", elem_id="dataset-path")
            with gr.Row():
                ui.load = gr.Button("Load", variant="primary", elem_id="dataset-load")
                ui.builtin = gr.Button("Bundled dataset", elem_id="dataset-builtin")
                ui.skip_bad = gr.Checkbox(label="Skip bad rows (load the rest and list each one skipped)",
                                          elem_id="dataset-skip-bad-rows")
            ui.tokenizer = gr.Dropdown(tiktoken_tokenizer.TAB_CHOICES, value=tiktoken_tokenizer.SESSION,
                                       label="Tokenizer for the lengths and the check",
                                       info=tiktoken_tokenizer.TAB_NOTE, elem_id="dataset-tokenizer")
            with gr.Accordion("Column mapping (optional: leave empty to detect)", open=False):
                with gr.Row():
                    ui.mapping = [gr.Textbox(label="instruction column", placeholder="instruction / prompt / question"),
                                  gr.Textbox(label="input column", placeholder="input / context"),
                                  gr.Textbox(label="output column",
                                             placeholder="output / response / completion / answer")]
        with gr.Column(scale=2):
            ui.upload = gr.File(label="…or upload JSON, JSONL, CSV or Parquet", height=170, elem_id="dataset-upload",
                                file_types=[".json", ".jsonl", ".csv", ".parquet"])
    ui.message = gr.HTML()
    ui.stats = gr.HTML()
    ui.histogram = gr.Plot(show_label=False, visible=False, elem_id="dataset-histogram")  # shown once drawn
    ui.check = check_layout()
    with gr.Row():
        with gr.Column(scale=5):
            with gr.Row():
                ui.search = gr.Textbox(label="Search", placeholder="words in instruction, input, output or task",
                                       scale=3, elem_id="dataset-search")
                ui.page_size = gr.Dropdown(PAGE_SIZES, value=PAGE_SIZES[0], label="Rows per page", scale=1)
            # tall enough for a page of wrapped rows; task wide enough for "animal_classification"
            ui.table = gr.Dataframe(headers=TABLE_COLUMNS, interactive=False, wrap=True, max_height=1400,
                                    column_widths=["6%", "20%", "32%", "18%", "24%"], elem_id="dataset-table")
            with gr.Row():
                ui.previous = gr.Button("◀ Previous", size="sm", elem_id="page-prev")
                ui.page = gr.Number(value=1, label="Page", precision=0, minimum=1, elem_id="page-number")
                ui.next = gr.Button("Next ▶", size="sm", elem_id="page-next")
            ui.caption = gr.Markdown(elem_id="page-caption")
        with gr.Column(scale=2):
            ui.detail = gr.HTML(elem_id="record-detail")
    return ui


def check_layout() -> SimpleNamespace:
    """The data check: the training settings it assumes, its button, the findings and a record picker."""
    check = SimpleNamespace()
    with gr.Accordion("Check the data before training", open=True):
        with gr.Row():
            check.max_length = gr.Number(value=TrainConfig.max_length, precision=0, minimum=0,
                                         label="Max length (0 = no truncation)", elem_id="check-max-length")
            check.split_seed = gr.Number(value=123, precision=0, label="Split seed", elem_id="check-split-seed")
            check.mask = gr.Radio(MASK_CHOICES, value="none", label=MASK_LABEL, elem_id="check-mask")
            check.order = gr.Dropdown(SPLIT_ORDER_CHOICES,
                                      value="shuffled", label="Split order", elem_id="check-split-order")
            check.run = gr.Button("Check the data", variant="primary", elem_id="data-check")
        check.findings = gr.HTML(elem_id="data-check-findings")
        check.record = gr.Dropdown([], value=None, label="Show a record found (in the record view beside the table)",
                                   interactive=True, elem_id="data-check-record")
    return check


def findings_html(report: data_checks.Report) -> str:
    """The settings and lengths, then a table: each finding, its count, its first records, what it means."""
    settings, lengths = report.settings, report.lengths
    facts = (f"{report.records:,} records in the {prompts.style_label(settings.style)} style, max length "
             f"{settings.max_length or 'none'}, {MASK_TEXT[settings.mask]}, "
             f"split seed {settings.split_seed} ({settings.split_order}). Training positions per record: median {lengths.median:.0f}, "
             f"95th percentile {lengths.p95:.0f}, longest {lengths.longest}; {lengths.over:,} over the max length, "
             f"{lengths.lost_share:.1%} of all positions cut away.")
    rows = "".join(finding_row(f) for f in report.findings)
    found = len(report.problems())
    summary = notice(f"{found} kind{'s' if found != 1 else ''} of problem found." if found else "No problem found.",
                     "warn" if found else "ok")
    return (f'{summary}<div class="pg-facts">{html.escape(facts)}</div>'
            f'<table class="pg-findings"><tr><th>finding</th><th>records</th><th>first record numbers</th>'
            f'<th>what it means</th></tr>{rows}</table>')


def finding_row(finding: data_checks.Finding) -> str:
    listed = ", ".join(f"#{n}" + (f" ({finding.notes[n]})" if n in finding.notes else "") for n in finding.shown())
    if finding.count > data_checks.SHOWN:
        listed += f" … {finding.count - data_checks.SHOWN:,} more"
    style = "" if finding.count else ' style="color:#9ca3af"'
    return (f'<tr{style}><td>{html.escape(finding.title)}</td><td><b>{finding.count:,}</b></td>'
            f'<td>{html.escape(listed)}</td><td>{html.escape(finding.advice) if finding.count else ""}</td></tr>')


def record_choices(report: data_checks.Report) -> list[tuple[str, str]]:
    """One choice per listed record of each finding; the value is `finding key:record number`."""
    return [(f"{f.title}: #{n}" + (f" ({f.notes[n]})" if n in f.notes else ""), f"{f.key}:{n}")
            for f in report.problems() for n in f.shown()]


def tab_tokenizer(shared: Shared, spec: str, choice: str) -> tuple[Any, str]:
    """The session's tokenizer, or the book's (GPT-2 through tiktoken) when chosen here."""
    if choice == tiktoken_tokenizer.NAME:
        return tiktoken_tokenizer.load_or_message()
    return tokenizer_or_message(shared.manager, spec)


def check_data(shared: Shared, dataset: data.Dataset, spec: str, style: str, template: str, max_length: float,
               mask: str, split_seed: float, order: str = "shuffled",
               choice: str = tiktoken_tokenizer.SESSION, progress: gr.Progress = gr.Progress()):
    """(findings, record picker) for the session's dataset, prompt style and tokenizer."""
    tokenizer, wait_message = tab_tokenizer(shared, spec, choice)
    if not tokenizer:
        return notice(wait_message, "error"), gr.update(choices=[], value=None)
    settings = data_checks.CheckSettings(style=style, template=template, max_length=int(max_length or 0) or None,
                                         mask=mask or "none",
                                         split_seed=int(split_seed or 0), split_order=order or "shuffled")
    try:
        report = data_checks.check(dataset, tokenizer, settings,
                                   on_progress=lambda done: progress(done, desc="tokenising as training does"))
    except PlaygroundError as exc:
        return notice(str(exc), "error"), gr.update(choices=[], value=None)
    return findings_html(report), gr.update(choices=record_choices(report), value=None)


def picked_finding(value: str | None) -> Any:
    return int(value.rsplit(":", 1)[1]) if value else gr.skip()


def skipped_html(dataset: data.Dataset) -> str:
    """Every row left out by "skip bad rows", with its reason."""
    if not dataset.skipped:
        return ""
    rows = "".join(f"<li>{html.escape(why)}</li>" for _, why in dataset.skipped)
    return (notice(f"Skipped {len(dataset.skipped):,} bad row{'s' if len(dataset.skipped) != 1 else ''}:", "warn")
            + f'<ul class="pg-facts" id="dataset-skipped">{rows}</ul>')


def load_source(shared: Shared, path_or_file: Any, mapping_values: tuple[str, ...], name: str | None = None,
                skip_bad_rows: bool = False):
    """(dataset, message, record, page, search) after loading a path, URL or id; on an error the
    session keeps its dataset. An upload is called by its own file `name`, not Gradio's temporary path."""
    mapping = dict(zip(("instruction", "input", "output"), mapping_values))
    try:
        dataset = data.load(path_or_file or "", {k: v.strip() for k, v in mapping.items() if v and v.strip()},
                            shared.max_file_mb, skip_bad_rows=bool(skip_bad_rows))
    except PlaygroundError as exc:
        shown = str(exc).replace(str(path_or_file), name) if name else str(exc)
        return gr.skip(), notice(shown, "error"), gr.skip(), gr.skip(), gr.skip()
    if name:
        dataset.source = name  # `origin` keeps the path it was read from
    message = notice(f"Loaded {len(dataset):,} records from {dataset.source}.", "ok") + skipped_html(dataset)
    return dataset, message, 0, 1, ""


def picked_row(event: gr.SelectData) -> int:
    return int(event.row_value[0])


def build(shared: Shared) -> None:
    ui = layout()
    table_inputs, table_outputs = [shared.dataset, ui.search, ui.page, ui.page_size], [ui.table, ui.page, ui.caption]

    def load_upload(path, skip_bad_rows, *mapping):
        """Load an upload, then empty the upload box for the next one (the message names the file)."""
        if not path:
            return (gr.skip(),) * 6
        loaded = load_source(shared, path, mapping, name=Path(path).name, skip_bad_rows=skip_bad_rows)
        if not isinstance(loaded[0], data.Dataset):  # refused: the server keeps no copy
            data.discard_upload(path, gr.utils.get_upload_folder())
        return *loaded, None

    def overview(dataset, spec, choice):
        tokenizer, wait_message = tab_tokenizer(shared, spec, choice)
        if not tokenizer:
            return stats_html(dataset) + notice(wait_message, "error"), gr.update(value=None, visible=False)
        return stats_html(dataset), gr.update(value=length_histogram(dataset, tokenizer), visible=True)

    loaded = [shared.dataset, ui.message, shared.record_index, ui.page, ui.search]
    gr.on([ui.load.click, ui.source.submit], lambda path, skip, *m: load_source(shared, path, m, skip_bad_rows=skip),
          [ui.source, ui.skip_bad, *ui.mapping], loaded)
    ui.builtin.click(lambda *m: load_source(shared, data.BUILTIN, m), ui.mapping, loaded)
    ui.upload.upload(load_upload, [ui.upload, ui.skip_bad, *ui.mapping], [*loaded, ui.upload])

    follow(changed(shared, "dataset"), page_of, table_inputs, table_outputs)
    follow([*changed(shared, "dataset", "tokenizer_spec"), ui.tokenizer.change], overview,
          [shared.dataset, shared.tokenizer_spec, ui.tokenizer], [ui.stats, ui.histogram])
    follow(changed(shared, "dataset", "record_index"), record_html, [shared.dataset, shared.record_index], ui.detail)
    ui.search.change(lambda: 1, outputs=ui.page).then(page_of, table_inputs, table_outputs)
    gr.on([ui.page_size.change, ui.page.submit], page_of, table_inputs, table_outputs)
    ui.previous.click(lambda p: max(1, int(p or 1) - 1), ui.page, ui.page).then(page_of, table_inputs, table_outputs)
    ui.next.click(lambda p: int(p or 1) + 1, ui.page, ui.page).then(page_of, table_inputs, table_outputs)
    ui.table.select(picked_row, None, shared.record_index)
    connect_check(shared, ui.check, ui.tokenizer)


def connect_check(shared: Shared, check: SimpleNamespace, tokenizer_choice: gr.Dropdown) -> None:
    """The check runs on a click; a new dataset clears its findings; a picked record opens in the record view."""
    settings = [shared.dataset, shared.tokenizer_spec, shared.style, shared.template, check.max_length, check.mask,
                check.split_seed, check.order, tokenizer_choice]
    check.run.click(partial(check_data, shared), settings, [check.findings, check.record])
    shared.dataset.change(lambda: ("", gr.update(choices=[], value=None)), None, [check.findings, check.record])
    check.record.change(picked_finding, check.record, shared.record_index)
