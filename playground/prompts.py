"""Prompt styles: turn a record into the exact text a model is trained on and prompted with.

Every style is one `Style` in `STYLES` (added with `register_style`): its label, how it renders a
record, the tokens that end its answers and the literal pieces export writes its chat templates from.
`render()` returns the prompt (what the model sees at inference), the response (what it learns to
write) and the end-of-text token that closes a training example, so that every caller (the preview,
the batch view, training, chat) splits the text the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Protocol, Sequence

from .errors import PlaygroundError

PLACEHOLDERS = ("{instruction}", "{input}", "{output}")
DEFAULT_CUSTOM = "Question: {instruction}\n{input}\nAnswer: {output}"
BETWEEN_TURNS = "\n\n"  # written after an answer, before the next user turn, in every style but "chat"
TEXT, INSTRUCTION, INPUT = "text", "instruction", "input"


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


@dataclass(frozen=True)
class Piece:
    """Literal text, or a field: the instruction, or the input written after `text` when there is one."""
    kind: str  # TEXT, INSTRUCTION or INPUT
    text: str = ""


def fill(pieces: Sequence[Piece], instruction: str, input_text: str = "") -> str:
    """The text the pieces write for an instruction and an input (an empty input writes nothing)."""
    out = []
    for piece in pieces:
        if piece.kind == TEXT:
            out.append(piece.text)
        elif piece.kind == INSTRUCTION:
            out.append(instruction)
        elif input_text:
            out.append(piece.text + input_text)
    return "".join(out)


@dataclass(frozen=True)
class Turn:
    """One exchange of a conversation: the user's message (and Input section) and the answer."""
    message: str
    answer: str
    input: str = ""


Parts = tuple[str, str, str]  # (prompt, response, response header)


@dataclass(frozen=True)
class Style:
    """One prompt style: everything the tabs, the command line, generation and export need of it."""
    name: str
    label: str  # as the Prompt styles tab lists it
    # (prompt, response, header) of a record, given the tokenizer and the custom template
    parts: Callable[[RecordLike, Any, str | None], Parts]
    # one user turn as literal pieces (up to where the answer starts) and the text between turns,
    # given the tokenizer and the custom template: export writes its chat templates from them
    turn: Callable[[Any, str | None], tuple[tuple[Piece, ...], str]]
    end_of_turn: tuple[str, ...] = ()  # tokens besides end-of-text that end an answer, when the vocabulary has them
    uses_template: bool = False  # written from the user's custom template
    writes_bos: bool = False     # its prompt starts with the tokenizer's own beginning-of-text token
    # several turns at once, when they are not each turn's prompt and answer joined by BETWEEN_TURNS
    conversation: Callable[[Sequence[Turn], Any], Prompt] | None = None


STYLES: dict[str, Style] = {}


def register_style(style: Style) -> Style:
    """Add a style everywhere: the tabs, the command line's --style, training, chat and export."""
    STYLES[style.name] = style
    return style


def style_of(name: str) -> Style:
    if name not in STYLES:
        raise PlaygroundError(f"Unknown prompt style {name!r}; choose one of {', '.join(STYLES)}.")
    return STYLES[name]


def style_label(name: str) -> str:
    """A style's label, or its name when no such style is registered."""
    return STYLES[name].label if name in STYLES else name


def literal_style(name: str, label: str, pieces: tuple[Piece, ...], **facts: Any) -> Style:
    """A style written as fixed text around the instruction and the input; its response header is the
    text after the last field."""
    header = pieces[-1].text if pieces[-1].kind == TEXT else ""

    def parts(record: RecordLike, tokenizer: Any, template: str | None) -> Parts:
        return fill(pieces, record.instruction, record.input), record.output, header

    return Style(name, label, parts, lambda tokenizer, template: (pieces, BETWEEN_TURNS), **facts)


# ------------------------------------------------------------ Alpaca and Phi-3

ALPACA_HEADER = "\n\n### Response:\n"
PHI3_HEADER = "\n<|assistant|>:\n"
# The book's `format_input` plus the response header, so generation starts at the answer.
ALPACA_PIECES = (Piece(TEXT, "Below is an instruction that describes a task. Write a response that appropriately "
                             "completes the request.\n\n### Instruction:\n"),
                 Piece(INSTRUCTION), Piece(INPUT, "\n\n### Input:\n"), Piece(TEXT, ALPACA_HEADER))
# The book's exercise 7.1 solution (`format_input_phi` and its response header).
PHI3_PIECES = (Piece(TEXT, "<|user|>\n"), Piece(INSTRUCTION), Piece(INPUT, "\n"), Piece(TEXT, PHI3_HEADER))


def alpaca_instruction(record: RecordLike) -> str:
    """The book's `format_input`: the instruction and the input, without the response header."""
    return fill(ALPACA_PIECES[:-1], record.instruction, record.input)


# ------------------------------------------------------------ custom: the user's template


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


def custom_parts(record: RecordLike, tokenizer: Any, template: str | None) -> Parts:
    """(prompt, response, header): the header is the template's text between its last
    {instruction} or {input} and {output}."""
    template = template or DEFAULT_CUSTOM
    check_template(template)
    before, after = template.split("{output}")

    def fill_in(text: str) -> str:
        return text.replace("{instruction}", record.instruction).replace("{input}", record.input)

    header = re.split(r"\{instruction\}|\{input\}", before)[-1]
    return fill_in(before), record.output + fill_in(after), header


def custom_turn(tokenizer: Any, template: str | None) -> tuple[tuple[Piece, ...], str]:
    template = template or DEFAULT_CUSTOM
    check_template(template)
    pieces = []
    for part in re.split(r"(\{instruction\}|\{input\})", template.split("{output}")[0]):
        if part == "{instruction}":
            pieces.append(Piece(INSTRUCTION))
        elif part == "{input}":
            pieces.append(Piece(INPUT))
        elif part:
            pieces.append(Piece(TEXT, part))
    return tuple(pieces), BETWEEN_TURNS


# ------------------------------------------------------------ chat: the tokenizer's own template

_MARK = "\u2063{}\u2063"  # invisible separators around a sentinel, to find where a template puts a message


def chat_parts(record: RecordLike, tokenizer: Any, template: str | None = None) -> Parts:
    """Split the tokenizer's own chat template into prompt (with generation header), response and
    that header (empty when the template's prompt does not extend the bare user turn)."""
    if not getattr(tokenizer, "chat_template", None):
        raise PlaygroundError("This tokenizer has no chat template; pick the Alpaca, Phi-3 or "
                              "custom style instead.")
    user = record.instruction + (f"\n\n{record.input}" if record.input else "")
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": user}],
                                           tokenize=False, add_generation_prompt=True)
    # Many templates end the assistant turn with their own marker (<end_of_turn>, <|im_end|>); the
    # end-of-text token still closes the example so generation learns to stop.
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


def chat_turn(tokenizer: Any, template: str | None = None) -> tuple[tuple[Piece, ...], str]:
    """The tokenizer's chat template cut at a sentinel message: what comes before and after it (its
    <bos> left out), and what it writes between an answer and the next user message."""
    if not getattr(tokenizer, "chat_template", None):
        raise PlaygroundError("The run's style is the tokenizer's chat template, and its tokenizer has none.")
    bos = getattr(tokenizer, "bos_token", None)
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
    pieces = (Piece(TEXT, turn), Piece(INSTRUCTION), Piece(INPUT, "\n\n"), Piece(TEXT, tail))
    return pieces, middle[:len(middle) - len(turn)]


def chat_conversation(turns: Sequence[Turn], tokenizer: Any) -> Prompt:
    """Every turn through the tokenizer's chat template, ending with the generation prompt."""
    if not getattr(tokenizer, "chat_template", None):
        raise PlaygroundError("This tokenizer has no chat template; use another style or raw.")
    messages = []
    for turn in turns:
        messages.append({"role": "user", "content": turn.message + (f"\n\n{turn.input}" if turn.input else "")})
        messages.append({"role": "assistant", "content": turn.answer})
    text = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    return Prompt(text, _starts_with_bos(text, tokenizer))


def _starts_with_bos(text: str, tokenizer: Any) -> bool:
    bos = getattr(tokenizer, "bos_token", None)
    return bool(bos and text.startswith(bos))


# ------------------------------------------------------------ the registry, in the order the tabs list them

register_style(literal_style("alpaca", "Alpaca (the book's template)", ALPACA_PIECES))
register_style(literal_style("phi3", "Phi-3 (<|user|> / <|assistant|>)", PHI3_PIECES))
register_style(Style("chat", "The tokenizer's chat template", chat_parts, chat_turn,
                     end_of_turn=("<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|end|>"), writes_bos=True,
                     conversation=chat_conversation))
register_style(Style("custom", "Custom template", custom_parts, custom_turn, uses_template=True))


# ------------------------------------------------------------ rendering


def render(record: RecordLike, style: str, tokenizer: Any = None, template: str | None = None) -> Rendered:
    """Render one record in a style; `tokenizer` gives the end-of-text token and chat template."""
    chosen = style_of(style)
    eos = getattr(tokenizer, "eos_token", None) or "<|endoftext|>"
    prompt, response, header = chosen.parts(record, tokenizer, template)
    special = chosen.writes_bos and _starts_with_bos(prompt, tokenizer)
    return Rendered(prompt, response, eos, has_special_tokens=special, header=header)


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
    chosen = style_of(style)
    if chosen.conversation is not None:
        return chosen.conversation(turns, tokenizer)
    earlier = "".join(render(Record(t.message, t.input, t.answer), style, tokenizer, template).prompt + t.answer
                      + BETWEEN_TURNS for t in history)
    return Prompt(earlier + render(Record(message, input_text, "-"), style, tokenizer, template).prompt)
