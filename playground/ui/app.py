"""Builds the Blocks app: a header with the tokenizer status, then one tab per step of the workflow.

The tabs share state through `Shared` (the dataset, the record, the tokenizer, the prompt style) and
each subscribes to the parts it shows; nothing here knows what a tab refreshes.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from .. import data, prompts
from ..manager import ModelManager
from . import batch_tab, chat_tab, compare_tab, dataset_tab, export_tab, inspect_tab, judge_tab, prompts_tab, train_tab
from . import common
from .common import Shared, notice

TABS = (dataset_tab, prompts_tab, batch_tab, train_tab, chat_tab, inspect_tab, judge_tab, compare_tab, export_tab)
CSS = common.CSS + "".join(getattr(tab, "CSS", "") for tab in TABS)  # each tab's own styles sit beside it

INTRO = ("**Instruction-tuning playground** — see what supervised instruction fine-tuning does, step by "
         "step: the data, the prompt text, the batches the model learns from, a short fine-tune, the tuned model beside the base, and a judge's scores.")


def status_html(manager: ModelManager, spec: str) -> tuple[str, Any]:
    """The tokenizer banner, and the timer update: keep ticking only while it loads."""
    status = manager.tokenizer_status(spec)
    kind = {"loading": "info", "ready": "ok", "error": "error"}[status.state]
    return notice(status.message, kind), gr.Timer(active=status.state == "loading")


def tokenizer_bar(shared: Shared) -> None:
    """The banner and the tokenizer box: picking a tokenizer sets the session's `tokenizer_spec`."""
    manager = shared.manager
    with gr.Row(equal_height=True):
        banner = gr.HTML(elem_id="model-status")
        spec_box = gr.Textbox(value=manager.default_tokenizer, scale=2, elem_id="tokenizer-spec",
                              label="Tokenizer: 'default' (Gemma 3 270M), a Hugging Face id or a folder")
        use_spec = gr.Button("Use tokenizer", scale=0, elem_id="tokenizer-use")
    timer = gr.Timer(1.0)

    def banner_update(spec):
        return status_html(manager, spec)

    def use_tokenizer(spec):
        spec = (spec or "").strip() or manager.default_tokenizer
        manager.request_tokenizer(spec)
        return (spec, *status_html(manager, spec))

    timer.tick(banner_update, shared.tokenizer_spec, [banner, timer], show_progress="hidden")
    gr.on([use_spec.click, spec_box.submit], use_tokenizer, spec_box, [shared.tokenizer_spec, banner, timer])
    shared.app.load(banner_update, shared.tokenizer_spec, [banner, timer])


def build_app(manager: ModelManager, max_file_mb: float | None = None) -> gr.Blocks:
    manager.request_tokenizer()
    with gr.Blocks(title="Instruction-tuning playground") as demo:
        gr.Markdown(INTRO)
        shared = Shared(
            manager=manager,
            app=demo,
            dataset=gr.State(data.load(data.BUILTIN)),
            record_index=gr.Number(value=0, precision=0, minimum=0, label="Record #", render=False,
                                   elem_id="record-index"),
            tokenizer_spec=gr.State(manager.default_tokenizer),
            style=gr.State("alpaca"),
            template=gr.State(prompts.DEFAULT_CUSTOM),
            # settings, not secrets: a fixed key, so that they also outlive a restart of the app
            browser=gr.BrowserState({}, storage_key="instruction-tuning-playground", secret="playground-settings"),
            max_file_mb=max_file_mb or data.DEFAULT_MAX_MB,
        )
        tokenizer_bar(shared)
        with gr.Tabs():
            with gr.Tab("Dataset", id="dataset"):
                dataset_tab.build(shared)
            with gr.Tab("Prompt styles", id="prompts"):
                prompts_tab.build(shared)
            with gr.Tab("Batch masking", id="batch"):
                batch_tab.build(shared)
            with gr.Tab("Train", id="train"):
                train_tab.build(shared)
            with gr.Tab("Chat", id="chat") as chat:
                chat_tab.build(shared, chat)
            with gr.Tab("Inspect", id="inspect") as inspecting:
                inspect_tab.build(shared, inspecting)
            with gr.Tab("Judge", id="judge") as grading:
                judge_tab.build(shared, grading)
            with gr.Tab("Compare", id="compare") as comparing:
                compare_tab.build(shared, comparing)
            with gr.Tab("Export", id="export") as exporting:
                export_tab.build(shared, exporting)
    return demo
