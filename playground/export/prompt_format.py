"""A run's prompt style as literal pieces around the instruction and the input.

The exported chat templates (a Jinja `chat_template` for Hugging Face and GGUF, a Go `TEMPLATE` for
Ollama) are generated from these pieces, so a conversation renders exactly the text the playground
sends: `prompts.render` for one turn, `prompts.conversation` for several. The beginning-of-text
token is never part of the pieces: the tokenizer adds it (`adds_bos`), as it does in the app.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .. import prompts
from ..errors import PlaygroundError

INSTRUCTION, INPUT = "instruction", "input"
_MARK = "\u2063{}\u2063"  # invisible separators around a sentinel, to find where a template puts a field


@dataclass(frozen=True)
class Piece:
    """Literal text, or a field: the instruction, or the input written after `prefix` when there is one."""
    kind: str  # "text", INSTRUCTION or INPUT
    text: str = ""


@dataclass(frozen=True)
class PromptFormat:
    style: str
    pieces: tuple[Piece, ...]   # one user turn, up to where the answer starts
    between_turns: str          # written after an answer, before the next user turn
    bos: str                    # the beginning-of-text token's text ("" when the tokenizer adds none)

    def render(self, instruction: str, input_text: str = "") -> str:
        """One user turn's text, as the pieces write it (the bos token not included)."""
        out = []
        for piece in self.pieces:
            if piece.kind == "text":
                out.append(piece.text)
            elif piece.kind == INSTRUCTION:
                out.append(instruction)
            elif input_text:
                out.append(piece.text + input_text)
        return "".join(out)


def adds_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer puts its beginning-of-text token in front of an encoded text."""
    bos = getattr(tokenizer, "bos_token_id", None)
    ids = tokenizer("a").input_ids
    return bos is not None and bool(ids) and ids[0] == bos


def prompt_format(style: str, tokenizer: Any, template: str | None = None) -> PromptFormat:
    """The pieces of a prompt style; checked against `prompts.render` before they are used."""
    bos = tokenizer.bos_token if adds_bos(tokenizer) or style == "chat" else ""
    if style == "alpaca":
        head, _, tail = prompts.alpaca_prompt(_Fields("\0", "")).partition("\0")
        pieces = (Piece("text", head), Piece(INSTRUCTION), Piece(INPUT, "\n\n### Input:\n"), Piece("text", tail))
        found = PromptFormat(style, pieces, "\n\n", bos)
    elif style == "phi3":
        head, _, tail = prompts.phi3_prompt(_Fields("\0", "")).partition("\0")
        pieces = (Piece("text", head), Piece(INSTRUCTION), Piece(INPUT, "\n"), Piece("text", tail))
        found = PromptFormat(style, pieces, "\n\n", bos)
    elif style == "custom":
        found = PromptFormat(style, _custom_pieces(template or prompts.DEFAULT_CUSTOM), "\n\n", bos)
    elif style == "chat":
        found = _chat_format(tokenizer, bos)
    else:
        raise PlaygroundError(f"Unknown prompt style {style!r}; choose one of {', '.join(prompts.STYLES)}.")
    check(found, tokenizer, template)
    return found


class _Fields:
    def __init__(self, instruction: str, input_text: str, output: str = ""):
        self.instruction, self.input, self.output = instruction, input_text, output


def _custom_pieces(template: str) -> tuple[Piece, ...]:
    prompts.check_template(template)
    before = template.split("{output}")[0]
    pieces = []
    for part in re.split(r"(\{instruction\}|\{input\})", before):
        if part == "{instruction}":
            pieces.append(Piece(INSTRUCTION))
        elif part == "{input}":
            pieces.append(Piece(INPUT, ""))
        elif part:
            pieces.append(Piece("text", part))
    return tuple(pieces)


def _chat_format(tokenizer: Any, bos: str) -> PromptFormat:
    """The tokenizer's chat template cut at a sentinel message: what comes before and after it."""
    if not getattr(tokenizer, "chat_template", None):
        raise PlaygroundError("The run's style is the tokenizer's chat template, and its tokenizer has none.")
    first, second, answer = (_MARK.format(n) for n in ("A", "B", "C"))

    def chat(messages: list[dict[str, str]]) -> str:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    one = chat([{"role": "user", "content": first}])
    two = chat([{"role": "user", "content": first}, {"role": "assistant", "content": answer},
                {"role": "user", "content": second}])
    head, _, tail = one.partition(first)
    turn = head[len(bos):] if bos and head.startswith(bos) else head
    middle = two.partition(answer)[2].partition(second)[0]
    if not middle.endswith(turn) or not two.startswith(head):
        raise PlaygroundError("The tokenizer's chat template cannot be written as a prompt template: its turns "
                              "are not the same text around each message.")
    pieces = (Piece("text", turn), Piece(INSTRUCTION), Piece(INPUT, "\n\n"), Piece("text", tail))
    return PromptFormat("chat", pieces, middle[:len(middle) - len(turn)], bos)


def check(found: PromptFormat, tokenizer: Any, template: str | None) -> None:
    """The pieces must give `prompts.render`'s text for a record with and without an input."""
    for record in (_Fields("Name a colour.", ""), _Fields("Translate to French.", "good morning")):
        expected = prompts.render(record, found.style, tokenizer, template).prompt
        if found.bos and expected.startswith(found.bos) and found.style == "chat":
            expected = expected[len(found.bos):]
        if found.render(record.instruction, record.input) != expected:
            raise PlaygroundError(f"The {found.style} prompt style could not be turned into a template that "
                                  "writes the playground's prompt text exactly.")


def jinja_template(found: PromptFormat) -> str:
    """A Hugging Face / GGUF chat template: user messages (an optional `input` key is the Input section),
    assistant answers, and the generation prompt, exactly as the playground writes them."""
    user = []
    for piece in found.pieces:
        if piece.kind == "text":
            user.append(_jinja_text(piece.text))
        elif piece.kind == INSTRUCTION:
            user.append("{{ message['content'] }}")
        else:
            user.append("{% if message['input'] %}" + _jinja_text(piece.text) + "{{ message['input'] }}{% endif %}")
    return ("{{ bos_token }}" if found.bos else "") + (
        "{% for message in messages %}"
        "{% if message['role'] == 'user' %}" + "".join(user) +
        "{% elif message['role'] == 'assistant' %}{{ message['content'] }}"
        "{% if not loop.last %}" + _jinja_text(found.between_turns) + "{% endif %}"
        "{% endif %}{% endfor %}")


def _jinja_text(text: str) -> str:
    return "{{ " + json.dumps(text, ensure_ascii=False) + " }}" if text else ""
