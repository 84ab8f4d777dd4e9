"""Text generation for the side-by-side chat: settings, multi-turn prompts, a token-by-token decoder.

The decoder takes the weights lock for one forward pass at a time, so a training run goes on
between tokens and a chat always uses the latest weights. Each side (base or tuned) decodes with its
own cache and its own random generator seeded alike, so with the adapter off both sides give the
same text for the same settings.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from transformers.generation.logits_process import (LogitsProcessorList, RepetitionPenaltyLogitsProcessor,
                                                    TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

from . import prompts
from .errors import PlaygroundError
from .modeling import stop_ids


@dataclass
class GenerationSettings:
    max_new_tokens: int = 64
    temperature: float = 0.0      # 0: greedy, the fair default for comparing two models
    top_p: float = 1.0
    top_k: int = 0                # 0: off
    repetition_penalty: float = 1.0
    seed: int = 123
    min_new_tokens: int = 0       # end-of-text is not allowed before this many tokens (benchmarks)

    def check(self) -> None:
        problems = []
        if not 1 <= self.max_new_tokens <= 4096:
            problems.append("max new tokens must lie between 1 and 4096")
        if self.temperature < 0:
            problems.append("temperature must not be negative")
        if not 0 < self.top_p <= 1:
            problems.append("top-p must lie in (0, 1]")
        if self.top_k < 0:
            problems.append("top-k must not be negative")
        if self.repetition_penalty <= 0:
            problems.append("repetition penalty must be positive")
        if problems:
            raise PlaygroundError("Generation settings: " + "; ".join(problems) + ".")

    def processors(self) -> LogitsProcessorList:
        chain = LogitsProcessorList()
        if self.repetition_penalty != 1.0:
            chain.append(RepetitionPenaltyLogitsProcessor(self.repetition_penalty))
        if self.temperature > 0:
            chain.append(TemperatureLogitsWarper(self.temperature))
            if self.top_k:
                chain.append(TopKLogitsWarper(self.top_k))
            if self.top_p < 1:
                chain.append(TopPLogitsWarper(self.top_p))
        return chain


@dataclass
class Turn:
    user: str
    answer: str


def chat_prompt(history: Sequence[Turn], message: str, style: str, tokenizer: Any,
                template: str | None = None, raw: bool = False, input_text: str = "") -> tuple[str, bool]:
    """(text to continue, whether it already holds the special tokens) for a conversation.

    Earlier turns are written in the same style as the new one, one after the other; `raw` sends
    the conversation as typed, with no template. `input_text` is the new turn's Input section.
    """
    if raw:
        earlier = "".join(f"{t.user}{t.answer}\n" for t in history)
        return earlier + message + (f"\n\n{input_text}" if input_text else ""), False
    if style == "chat":
        messages = []
        for turn in history:
            messages += [{"role": "user", "content": turn.user}, {"role": "assistant", "content": turn.answer}]
        messages.append({"role": "user", "content": message + (f"\n\n{input_text}" if input_text else "")})
        if not getattr(tokenizer, "chat_template", None):
            raise PlaygroundError("This tokenizer has no chat template; use another style or raw.")
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        bos = getattr(tokenizer, "bos_token", None)
        return text, bool(bos and text.startswith(bos))
    from .data import Record

    earlier = "".join(prompts.render(Record(t.user, "", t.answer), style, tokenizer, template).prompt + t.answer + "\n\n"
                      for t in history)
    return earlier + prompts.render(Record(message, input_text, "-"), style, tokenizer, template).prompt, False


@dataclass
class Side:
    """One model answering: the model object, and what to switch on it (adapter or none)."""
    name: str
    model: Any
    adapter: str | None  # a LoRA adapter name, or None for the plain weights (adapters off)


@contextlib.contextmanager
def switched(side: Side) -> Iterator[None]:
    """The side's adapter on (or all off) for whole-model calls such as `generate`; restored afterwards."""
    model = side.model
    with eval_mode(model):
        if hasattr(model, "disable_adapter") and side.adapter is None:
            with model.disable_adapter():
                yield
        elif side.adapter is not None:
            previous = model.active_adapter
            model.set_adapter(side.adapter)
            try:
                yield
            finally:
                model.set_adapter(previous)  # also restores which adapter a running training updates
        else:
            yield


@contextlib.contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Eval mode (no dropout) for a forward pass between training steps; free when already in it."""
    was_training = model.training
    if was_training:
        model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


class _Decoder:
    """Decodes one row per side, all on one model, in one forward pass per token.

    With a peft model each row names its adapter (`__base__` for none), so the base and the tuned
    answers come from one batched call on the shared weights, with nothing switched on the model.
    """

    def __init__(self, sides: Sequence[Side], ids: torch.Tensor, settings: GenerationSettings, stops: list[int]):
        self.model = sides[0].model
        rows = len(sides)
        self.ids = ids.expand(rows, -1).contiguous()
        self.settings, self.stops = settings, set(stops)
        self.adapter_names = ([s.adapter or "__base__" for s in sides]
                              if hasattr(self.model, "disable_adapter") else None)
        self.cache = None
        self.new: list[list[int]] = [[] for _ in range(rows)]
        self.done = [False] * rows
        self.generators = [torch.Generator(device="cpu").manual_seed(settings.seed) for _ in range(rows)]
        self.processors = settings.processors()

    @property
    def finished(self) -> bool:
        return all(self.done)

    @torch.no_grad()
    def step(self) -> None:
        device = self.ids.device
        if self.cache is None:
            feed = self.ids
        else:  # every row feeds its last token; a finished row repeats its own, and is ignored
            feed = torch.tensor([[row[-1] if row else int(self.ids[i, -1])] for i, row in enumerate(self.new)],
                                device=device)
        extra = {"adapter_names": self.adapter_names} if self.adapter_names else {}
        with eval_mode(self.model):
            output = self.model(input_ids=feed, past_key_values=self.cache, use_cache=True, logits_to_keep=1, **extra)
        self.cache = output.past_key_values
        logits = output.logits[:, -1, :].float()
        if self.processors:
            width = max(len(row) for row in self.new)
            history = torch.tensor([row + [0] * (width - len(row)) for row in self.new], dtype=torch.long, device=device)
            logits = self.processors(torch.cat([self.ids, history], dim=1) if width else self.ids, logits)
        for row, tokens in enumerate(self.new):
            if self.done[row]:
                continue
            scores = logits[row]
            if len(tokens) < self.settings.min_new_tokens:
                scores[list(self.stops)] = float("-inf")
            if self.settings.temperature > 0:
                probabilities = torch.softmax(scores, dim=-1).cpu()
                token = int(torch.multinomial(probabilities, 1, generator=self.generators[row]))
            else:
                token = int(scores.argmax())
            if token in self.stops:
                self.done[row] = True
                continue
            tokens.append(token)
            if len(tokens) >= self.settings.max_new_tokens:
                self.done[row] = True


def stream_sides(sides: Sequence[Side], prompts_by_side: Sequence[tuple[str, bool]], tokenizer: Any, style: str,
                 settings: GenerationSettings, lock: threading.RLock,
                 stop: threading.Event | None = None) -> Iterator[list[str]]:
    """Yield every side's answer so far after each token, until all are done or `stop` is set.

    Sides on the same model with the same prompt decode together, one row each, in one forward
    pass per token; other sides (a full fine-tune's own copy, different histories) decode apart.
    """
    settings.check()
    stops = stop_ids(tokenizer, style)
    groups: dict[tuple[int, tuple[int, ...]], list[int]] = {}
    encoded = []
    for index, (side, (text, has_special)) in enumerate(zip(sides, prompts_by_side)):
        ids = tokenizer(text, add_special_tokens=not has_special).input_ids
        encoded.append(ids)
        groups.setdefault((id(side.model), tuple(ids)), []).append(index)
    decoders = []
    for members in groups.values():
        model = sides[members[0]].model
        ids = torch.tensor([encoded[members[0]]], device=next(model.parameters()).device)
        decoders.append((members, _Decoder([sides[i] for i in members], ids, settings, stops)))
    answers = [[] for _ in sides]
    while not all(decoder.finished for _, decoder in decoders):
        if stop is not None and stop.is_set():
            break
        for members, decoder in decoders:
            if not decoder.finished:
                with lock:
                    decoder.step()
            for row, index in enumerate(members):
                answers[index] = decoder.new[row]
        yield [tokenizer.decode(tokens, skip_special_tokens=True) for tokens in answers]


def generate_sides(*args: Any, **kwargs: Any) -> list[str]:
    """The final answers of `stream_sides`."""
    answers: list[str] = []
    for answers in stream_sides(*args, **kwargs):
        pass
    return [a.strip() for a in answers]

