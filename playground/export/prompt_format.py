"""A run's prompt style as literal pieces around the instruction and the input.

Each style gives its pieces (its `prompts.Style.turn`). The exported chat templates (a Jinja
`chat_template` for Hugging Face and GGUF, a Go `TEMPLATE` for Ollama) are generated from them, so a
conversation renders exactly the text the playground sends: `prompts.render` for one turn,
`prompts.conversation` for several. The beginning-of-text token is never part of the pieces: the
tokenizer adds it (`adds_bos`), as it does in the app.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .. import prompts
from ..errors import PlaygroundError
from ..prompts import INSTRUCTION, TEXT, Piece


@dataclass(frozen=True)
class PromptFormat:
    style: str
    pieces: tuple[Piece, ...]   # one user turn, up to where the answer starts
    between_turns: str          # written after an answer, before the next user turn
    bos: str                    # the beginning-of-text token's text ("" when the tokenizer adds none)

    def render(self, instruction: str, input_text: str = "") -> str:
        """One user turn's text, as the pieces write it (the bos token not included)."""
        return prompts.fill(self.pieces, instruction, input_text)


def adds_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer puts its beginning-of-text token in front of an encoded text."""
    bos = getattr(tokenizer, "bos_token_id", None)
    ids = tokenizer("a").input_ids
    return bos is not None and bool(ids) and ids[0] == bos


def prompt_format(style: str, tokenizer: Any, template: str | None = None) -> PromptFormat:
    """The pieces of a prompt style, as its `prompts.Style` gives them; checked against `prompts.render`
    before they are used."""
    chosen = prompts.style_of(style)
    bos = tokenizer.bos_token if adds_bos(tokenizer) or chosen.writes_bos else ""
    pieces, between_turns = chosen.turn(tokenizer, template)
    found = PromptFormat(style, pieces, between_turns, bos)
    check(found, tokenizer, template)
    return found


class _Fields:
    def __init__(self, instruction: str, input_text: str, output: str = ""):
        self.instruction, self.input, self.output = instruction, input_text, output


def check(found: PromptFormat, tokenizer: Any, template: str | None) -> None:
    """The pieces must give `prompts.render`'s text for a record with and without an input."""
    writes_bos = prompts.style_of(found.style).writes_bos
    for record in (_Fields("Name a colour.", ""), _Fields("Translate to French.", "good morning")):
        expected = prompts.render(record, found.style, tokenizer, template).prompt
        if found.bos and expected.startswith(found.bos) and writes_bos:
            expected = expected[len(found.bos):]
        if found.render(record.instruction, record.input) != expected:
            raise PlaygroundError(f"The {found.style} prompt style could not be turned into a template that "
                                  "writes the playground's prompt text exactly.")


def jinja_template(found: PromptFormat) -> str:
    """A Hugging Face / GGUF chat template: user messages (an optional `input` key is the Input section),
    assistant answers, and the generation prompt, exactly as the playground writes them."""
    user = []
    for piece in found.pieces:
        if piece.kind == TEXT:
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
