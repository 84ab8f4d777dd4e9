"""Prompt styles: turn a record into the exact text a model is trained on and prompted with.

`render()` returns the prompt (what the model sees at inference), the response (what it learns to
write) and the end-of-text token that closes a training example, so that every caller (the preview,
the batch view, training, chat) splits the text the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, Sequence

from .errors import PlaygroundError

STYLES = ("alpaca", "phi3", "chat", "custom")
STYLE_LABELS = {
    "alpaca": "Alpaca (the book's template)",
    "phi3": "Phi-3 (<|user|> / <|assistant|>)",
    "chat": "The tokenizer's chat template",
    "custom": "Custom template",
}
PLACEHOLDERS = ("{instruction}", "{input}", "{output}")
DEFAULT_CUSTOM = "Question: {instruction}\n{input}\nAnswer: {output}"


class RecordLike(Protocol):
    instruction: str
    input: str
    output: str


class Prompt(NamedTuple):
    """Text for a model to continue, and whether it already holds the tokenizer's special tokens."""
    text: str
    has_special_tokens: bool = False


@dataclass(frozen=True)
class Rendered:
    prompt: str    # inference text: everything before the response
    response: str  # the part the model learns to write
    eos: str       # end-of-text token text that ends a training example
    # True when the prompt already holds the tokenizer's special tokens (a chat template writes
    # its own <bos>), so tokenising must not add them a second time.
    has_special_tokens: bool = False
    header: str = ""  # the response header closing the prompt ("\n\n### Response:\n" in Alpaca)

    @property
    def instruction(self) -> str:
        """The prompt without its response header: the book's `format_input(entry)` in Alpaca."""
        return self.prompt[:len(self.prompt) - len(self.header)]

    @property
    def inference(self) -> Prompt:
        return Prompt(self.prompt, self.has_special_tokens)

    @property
    def training_text(self) -> str:
        return self.prompt + self.response + self.eos

    def spans(self) -> list[tuple[str, str]]:
        """(text, part) pieces in order: part is 'prompt', 'response' or 'eos'."""
        return [(self.prompt, "prompt"), (self.response, "response"), (self.eos, "eos")]


ALPACA_HEADER = "\n\n### Response:\n"
PHI3_HEADER = "\n<|assistant|>:\n"


def alpaca_instruction(record: RecordLike) -> str:
    """The book's `format_input`: the instruction and the input, without the response header."""
    text = ("Below is an instruction that describes a task. "
            "Write a response that appropriately completes the request."
            f"\n\n### Instruction:\n{record.instruction}")
    if record.input:
        text += f"\n\n### Input:\n{record.input}"
    return text


def alpaca_prompt(record: RecordLike) -> str:
    """The book's `format_input` plus the response header, so generation starts at the answer."""
    return alpaca_instruction(record) + ALPACA_HEADER


def phi3_prompt(record: RecordLike) -> str:
    """The book's exercise 7.1 solution (`format_input_phi` and its response header)."""
    text = f"<|user|>\n{record.instruction}"
    if record.input:
        text += f"\n{record.input}"
    return text + PHI3_HEADER


def check_template(template: str) -> None:
    """A custom template needs {instruction} and {output} once each, with {output} after the rest."""
    problems = []
    unknown = sorted({f"{{{name}}}" for name in re.findall(r"\{(\w+)\}", template)} - set(PLACEHOLDERS))
    if unknown:
        problems.append(f"unknown placeholder{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                        f"(use {', '.join(PLACEHOLDERS)})")
    for name in ("{instruction}", "{output}"):
        count = template.count(name)
        if count != 1:
            problems.append(f"it must contain {name} exactly once (found {count})")
    if template.count("{input}") > 1:
        problems.append("it may contain {input} at most once")
    if not problems:
        cut = template.index("{output}")
        if "{instruction}" in template[cut:] or "{input}" in template[cut:]:
            problems.append("{output} must come after {instruction} and {input}")
    if problems:
        raise PlaygroundError("Custom template: " + "; ".join(problems) + ".")


def custom_parts(record: RecordLike, template: str) -> tuple[str, str, str]:
    """(prompt, response, header): the header is the template's text between its last
    {instruction} or {input} and {output}."""
    check_template(template)
    before, after = template.split("{output}")

    def fill(text: str) -> str:
        return text.replace("{instruction}", record.instruction).replace("{input}", record.input)

    header = re.split(r"\{instruction\}|\{input\}", before)[-1]
    return fill(before), record.output + fill(after), header


def chat_parts(record: RecordLike, tokenizer: Any) -> tuple[str, str, str]:
    """Split the tokenizer's own chat template into prompt (with generation header), response and
    that header (empty when the template's prompt does not extend the bare user turn)."""
    if not getattr(tokenizer, "chat_template", None):
        raise PlaygroundError("This tokenizer has no chat template; pick the Alpaca, Phi-3 or "
                              "custom style instead.")
    user = record.instruction + (f"\n\n{record.input}" if record.input else "")
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": user}],
                                           tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template([{"role": "user", "content": user},
                                          {"role": "assistant", "content": record.output}],
                                         tokenize=False)
    if not full.startswith(prompt):
        raise PlaygroundError("The chat template renders the conversation differently with and "
                              "without the answer, so the prompt cannot be split off.")
    turn = tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                         add_generation_prompt=False)
    header = prompt[len(turn):] if prompt.startswith(turn) else ""
    return prompt, full[len(prompt):], header


def render(record: RecordLike, style: str, tokenizer: Any = None, template: str | None = None) -> Rendered:
    """Render one record in a style; `tokenizer` gives the end-of-text token and chat template."""
    eos = getattr(tokenizer, "eos_token", None) or "<|endoftext|>"
    if style == "alpaca":
        return Rendered(alpaca_prompt(record), record.output, eos, header=ALPACA_HEADER)
    if style == "phi3":
        return Rendered(phi3_prompt(record), record.output, eos, header=PHI3_HEADER)
    if style == "custom":
        prompt, response, header = custom_parts(record, template or DEFAULT_CUSTOM)
        return Rendered(prompt, response, eos, header=header)
    if style == "chat":
        prompt, response, header = chat_parts(record, tokenizer)
        # Many templates end the assistant turn with their own marker (<end_of_turn>, <|im_end|>);
        # the end-of-text token still closes the example so generation learns to stop.
        bos = getattr(tokenizer, "bos_token", None)
        return Rendered(prompt, response, eos, has_special_tokens=bool(bos and prompt.startswith(bos)), header=header)
    raise PlaygroundError(f"Unknown prompt style {style!r}; choose one of {', '.join(STYLES)}.")


@dataclass(frozen=True)
class Turn:
    """One exchange of a conversation: the user's message (and Input section) and the answer."""
    message: str
    answer: str
    input: str = ""


def conversation(history: Sequence[Turn], message: str, style: str, tokenizer: Any,
                 template: str | None = None, raw: bool = False, input_text: str = "") -> Prompt:
    """The prompt for a new message after earlier turns, every turn written in the same style.

    `raw` sends the conversation as typed, with no template; `input_text` is the Input section.
    """
    from .data import Record

    turns = [*history, Turn(message, "", input_text)]
    if raw:
        typed = [t.message + (f"\n\n{t.input}" if t.input else "") for t in turns]
        return Prompt("".join(text + turn.answer + "\n" for text, turn in zip(typed, history)) + typed[-1])
    if style == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise PlaygroundError("This tokenizer has no chat template; use another style or raw.")
        messages = []
        for turn in turns:
            messages.append({"role": "user", "content": turn.message + (f"\n\n{turn.input}" if turn.input else "")})
            messages.append({"role": "assistant", "content": turn.answer})
        text = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        bos = getattr(tokenizer, "bos_token", None)
        return Prompt(text, bool(bos and text.startswith(bos)))
    earlier = "".join(render(Record(t.message, t.input, t.answer), style, tokenizer, template).prompt + t.answer
                      + "\n\n" for t in history)
    return Prompt(earlier + render(Record(message, input_text, "-"), style, tokenizer, template).prompt)
