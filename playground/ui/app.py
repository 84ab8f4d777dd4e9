"""Builds the Blocks app: a header with the model status, then one tab per step of the workflow."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import gradio as gr

from .. import data
from ..manager import ModelManager
from . import batch_tab, chat_tab, dataset_tab, judge_tab, prompts_tab, train_tab
from .common import Shared, notice

Refresher = tuple[Callable[..., Any], list[Any], Any]

INTRO = ("**Instruction-tuning playground** — see what supervised instruction fine-tuning does, step by "
         "step: the data, the prompt text, the batches the model learns from, a short fine-tune, the tuned model beside the base, and a judge's scores.")


def status_html(manager: ModelManager, spec: str) -> tuple[str, Any]:
    """The tokenizer banner, and the timer update: keep ticking only while it loads."""
    status = manager.tokenizer_status(spec)
    kind = {"loading": "info", "ready": "ok", "error": "error"}[status.state]
    return notice(status.message, kind), gr.Timer(active=status.state == "loading")


def chain(event: Any, refreshers: Iterable[Refresher]) -> Any:
    for function, inputs, outputs in refreshers:
        event = event.then(function, inputs, outputs)
    return event


def build_app(manager: ModelManager, max_file_mb: float | None = None) -> gr.Blocks:
    max_file_mb = max_file_mb or data.DEFAULT_MAX_MB
    builtin = data.load(data.BUILTIN)
    manager.request_tokenizer()
    with gr.Blocks(title="Instruction-tuning playground") as demo:
        gr.Markdown(INTRO)
        shared = Shared(
            manager=manager,
            dataset=gr.State(builtin),
            record_index=gr.Number(value=0, precision=0, minimum=0, label="Record #", render=False,
                                   elem_id="record-index"),
            tokenizer_spec=gr.State(manager.default_tokenizer),
            max_file_mb=max_file_mb,
        )
        with gr.Row(equal_height=True):
            banner = gr.HTML(elem_id="model-status")
            spec_box = gr.Textbox(value=manager.default_tokenizer, label="Tokenizer: 'default' (Gemma 3 270M), a Hugging Face id or a folder",
                                  scale=2, elem_id="tokenizer-spec")
            use_spec = gr.Button("Use tokenizer", scale=0, elem_id="tokenizer-use")
        timer = gr.Timer(1.0)
        with gr.Tabs():
            with gr.Tab("Dataset", id="dataset"):
                dataset_parts = dataset_tab.build(shared)
            with gr.Tab("Prompt styles", id="prompts"):
                prompt_parts = prompts_tab.build(shared)
            with gr.Tab("Batch masking", id="batch"):
                batch_parts = batch_tab.build(shared, prompt_parts["style"], prompt_parts["template"])
            with gr.Tab("Train", id="train"):
                train_parts = train_tab.build(shared, prompt_parts["style"], prompt_parts["template"])
            with gr.Tab("Chat", id="chat") as chat:
                chat_parts = chat_tab.build(shared)
            with gr.Tab("Judge", id="judge") as grading:
                judge_parts = judge_tab.build(shared)
        chain(chat.select(*chat_parts["refresh_runs"]), chat_parts["after_refresh"])
        grading.select(*judge_parts["refresh_runs"])
        refreshers = (dataset_parts["refreshers"] + train_parts["refreshers"] + chat_parts["refreshers"]
                      + judge_parts["refreshers"] + prompt_parts["refreshers"] + batch_parts["refreshers"])

        def banner_update(spec):
            return status_html(manager, spec)

        timer.tick(banner_update, shared.tokenizer_spec, [banner, timer], show_progress="hidden")

        def use_tokenizer(spec):
            spec = (spec or "").strip() or manager.default_tokenizer
            manager.request_tokenizer(spec)
            return (spec, *status_html(manager, spec))

        chain(use_spec.click(use_tokenizer, spec_box, [shared.tokenizer_spec, banner, timer]), refreshers)
        chain(spec_box.submit(use_tokenizer, spec_box, [shared.tokenizer_spec, banner, timer]), refreshers)
        for event in dataset_parts["loaded"]:
            chain(event, refreshers)
        chain(demo.load(banner_update, shared.tokenizer_spec, [banner, timer]), refreshers)
    return demo
