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
    """The side's adapter on (or all off) for one forward pass, in eval mode; restored afterwards."""
    model = side.model
    was_training = model.training
    model.eval()
    try:
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
    finally:
        model.train(was_training)


class _Decoder:
    def __init__(self, side: Side, ids: torch.Tensor, settings: GenerationSettings, stops: list[int]):
        self.side, self.ids, self.settings, self.stops = side, ids, settings, set(stops)
        self.cache = None
        self.new: list[int] = []
        self.done = False
        self.generator = torch.Generator(device="cpu").manual_seed(settings.seed)
        self.processors = settings.processors()

    @torch.no_grad()
    def step(self) -> None:
        feed = self.ids if self.cache is None else torch.tensor([[self.new[-1]]], device=self.ids.device)
        with switched(self.side):
            output = self.side.model(input_ids=feed, past_key_values=self.cache, use_cache=True)
        self.cache = output.past_key_values
        logits = output.logits[:, -1, :].float()
        so_far = torch.cat([self.ids, torch.tensor([self.new], dtype=torch.long, device=self.ids.device)], dim=1) \
            if self.new else self.ids
        logits = self.processors(so_far, logits)
        if len(self.new) < self.settings.min_new_tokens:
            logits[:, list(self.stops)] = float("-inf")
        if self.settings.temperature > 0:
            probabilities = torch.softmax(logits, dim=-1).cpu()
            token = int(torch.multinomial(probabilities, 1, generator=self.generator))
        else:
            token = int(logits.argmax(dim=-1))
        if token in self.stops:
            self.done = True
            return
        self.new.append(token)
        if len(self.new) >= self.settings.max_new_tokens:
            self.done = True


def stream_sides(sides: Sequence[Side], prompts_by_side: Sequence[tuple[str, bool]], tokenizer: Any, style: str,
                 settings: GenerationSettings, lock: threading.RLock,
                 stop: threading.Event | None = None) -> Iterator[list[str]]:
    """Yield every side's answer so far after each token, until all are done or `stop` is set."""
    settings.check()
    stops = stop_ids(tokenizer, style)
    decoders = []
    for side, (text, has_special) in zip(sides, prompts_by_side):
        device = next(side.model.parameters()).device
        ids = tokenizer(text, add_special_tokens=not has_special, return_tensors="pt").input_ids.to(device)
        decoders.append(_Decoder(side, ids, settings, stops))
    while not all(d.done for d in decoders):
        if stop is not None and stop.is_set():
            break
        for decoder in decoders:
            if not decoder.done:
                with lock:
                    decoder.step()
        yield [tokenizer.decode(d.new, skip_special_tokens=True) for d in decoders]


def generate_sides(*args: Any, **kwargs: Any) -> list[str]:
    """The final answers of `stream_sides`."""
    answers: list[str] = []
    for answers in stream_sides(*args, **kwargs):
        pass
    return [a.strip() for a in answers]

