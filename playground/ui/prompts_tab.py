"""Prompt styles tab: one record rendered in a style, the exact training and inference texts."""

from __future__ import annotations

import html
import random
from typing import Any

import gradio as gr

from .. import batching, data, prompts, tiktoken_tokenizer
from ..errors import PlaygroundError
from .common import COLORS, Shared, changed, follow, legend, notice, remember, tokenizer_or_message

def style_choices() -> list[tuple[str, str]]:
    """(label, name) of every registered style, in the order they were registered."""
    return [(style.label, style.name) for style in prompts.STYLES.values()]


def highlighted(rendered: prompts.Rendered) -> str:
    """The training text with the prompt, response and end-of-text spans coloured."""
    parts = "".join(f'<span style="background:{COLORS[part]}" title="{part}">{html.escape(text)}</span>'
                    for text, part in rendered.spans() if text)
    return f'<div class="pg-text" id="training-text">{parts}</div>'


def plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"


def preview(dataset: data.Dataset, index: Any, style: str, template: str, tokenizer: Any) -> tuple[str, str, str]:
    """(highlighted training text, inference text, token counts) for one record."""
    index = int(index or 0)
    if not 0 <= index < len(dataset):
        raise PlaygroundError(f"Record {index} does not exist: the dataset has {len(dataset)} records (0–{len(dataset) - 1}).")
    record = dataset.records[index]
    rendered = prompts.render(record, style, tokenizer, template)
    sample = batching.encode(record, style, tokenizer, template)
    prompt_tokens = sample.prompt_len
    response_tokens = len(sample.ids) - prompt_tokens - 1
    header_tokens = sample.prompt_len - sample.instruction_len
    cards = [(prompt_tokens, plural(prompt_tokens, "prompt token")),
             (header_tokens, "of them in the response header"),
             (response_tokens, plural(response_tokens, "response token")), (1, "end-of-text token"),
             (len(sample.ids), plural(len(sample.ids), "training token") + " in all")]
    counts = ('<div class="pg-cards" id="token-counts">'
              + "".join(f'<div class="pg-card"><b>{n}</b><span>{label}</span></div>' for n, label in cards) + "</div>")
    title = (f"<div style='margin-bottom:6px'><b>Record #{index}</b> · "
             f"{'with' if record.input else 'without'} an input"
             f"{' · ' + html.escape(record.task) if record.task else ''}</div>")
    parts = legend({"prompt": "prompt (instruction + input + template)", "response": "response",
                    "eos": f"end-of-text token {rendered.eos}"})
    return title + parts + highlighted(rendered), rendered.prompt, counts


def pick(dataset: data.Dataset, want_input: bool) -> Any:
    """A random record with (or without) an input."""
    choices = [i for i, r in enumerate(dataset.records) if bool(r.input.strip()) == want_input]
    return random.choice(choices) if choices else gr.skip()


def build(shared: Shared) -> None:
    gr.Markdown("The **training text** is what the model learns from: prompt + response + one end-of-text "
                "token. The **inference text** is what it is given when you chat with it: the prompt alone, "
                "ending where the response should begin.")
    with gr.Row():
        shared.record_index.render()
        with_input = gr.Button("Random record with an input", size="sm", elem_id="random-with-input")
        without_input = gr.Button("Random record without an input", size="sm", elem_id="random-without-input")
        tokenizer_choice = gr.Dropdown(tiktoken_tokenizer.TAB_CHOICES, value=tiktoken_tokenizer.SESSION,
                                       label="Tokenizer for the counts", info=tiktoken_tokenizer.TAB_NOTE,
                                       elem_id="prompts-tokenizer")
    style = gr.Radio(style_choices(), value="alpaca", elem_id="prompt-style",
                     label="Prompt style: the one choice of this session, shown in Batch masking and used by Train")
    template = gr.Textbox(value=prompts.DEFAULT_CUSTOM, label="Custom template: {instruction}, {input}, {output}",
                          lines=3, visible=False, elem_id="custom-template")
    message = gr.HTML()
    training = gr.HTML(label="Training text", elem_id="training-view")
    counts = gr.HTML()
    inference = gr.Textbox(label="Inference text (prompt only; the model writes what follows)", lines=6,
                           interactive=False, buttons=["copy"], elem_id="inference-text")

    def show(dataset, index, style_value, template_value, spec, choice):
        tokenizer, wait_message = (tiktoken_tokenizer.load_or_message() if choice == tiktoken_tokenizer.NAME
                                   else tokenizer_or_message(shared.manager, spec))
        if not tokenizer:
            return notice(wait_message, "error"), "", "", ""
        try:
            text, prompt, token_counts = preview(dataset, index, style_value, template_value, tokenizer)
        except PlaygroundError as exc:  # no stale preview under the error
            return notice(str(exc), "error"), "", "", ""
        return "", text, token_counts, prompt

    # this tab sets the session's style and template; every tab that uses them subscribes to them
    style.change(lambda s: (s, gr.update(visible=prompts.style_of(s).uses_template)), style,
                 [shared.style, template])
    gr.on([template.submit, template.blur], lambda t: t, template, shared.template)
    follow([*changed(shared, "dataset", "record_index", "tokenizer_spec", "style", "template"),
           shared.record_index.submit, tokenizer_choice.change], show,
          [shared.dataset, shared.record_index, shared.style, shared.template, shared.tokenizer_spec, tokenizer_choice],
          [message, training, counts, inference])
    # a reload keeps the style and the custom template (the box and the session's template it sets)
    remember(shared, {"style": style, "template_box": template, "template": shared.template}, "prompt-style")
    with_input.click(lambda d: pick(d, True), shared.dataset, shared.record_index)
    without_input.click(lambda d: pick(d, False), shared.dataset, shared.record_index)
