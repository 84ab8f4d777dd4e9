"""The one generation engine: probes during training, the side-by-side chat and the judge's answers.

Rows (a side and a prompt each) that use the same weights decode together, one forward pass per
token with a KV cache. Prompts of different lengths are padded on the left, with an attention mask
and per-row position ids, so every row is computed as if it were alone: a greedy answer does not
depend on the batch it was generated in. Each row names its adapter (`Side.adapter`, None for the
base model), so base and tuned answers come from one batch on one copy of the weights. A row ends at
an end-of-text or end-of-turn token (never part of the answer) or at the token limit, and leaves the
batch. The lock is held for one forward pass at a time, so a training run goes on between tokens.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
from transformers.generation.logits_process import (LogitsProcessorList, RepetitionPenaltyLogitsProcessor,
                                                    TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

from .errors import PlaygroundError
from .prompts import Prompt, style_of
from .weights import Weights


# The most prompt tokens a row reads (fewer when the model's context is smaller). A prompt's start
# beyond them is cut, with a note: a megabyte pasted into the chat costs seconds, not gigabytes.
MAX_PROMPT_TOKENS = 2048
CHARS_PER_TOKEN_AT_MOST = 64  # text kept before tokenizing: far more than any tokenizer's longest token


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


@dataclass(frozen=True)
class Side:
    """Who answers: a set of weights, and the LoRA adapter on them (None: every adapter off)."""
    name: str
    weights: Weights
    adapter: str | None = None


def stop_ids(tokenizer: Any, style: str) -> list[int]:
    """Tokens that end an answer: end-of-text, and the style's end-of-turn markers the vocabulary has."""
    ids = [tokenizer.eos_token_id]
    for marker in style_of(style).end_of_turn:
        token = tokenizer.convert_tokens_to_ids(marker)
        if isinstance(token, int) and token != tokenizer.unk_token_id:
            ids.append(token)
    return [i for i in ids if i is not None]


def prompt_room(weights: Weights, settings: GenerationSettings) -> int:
    """How many prompt tokens a row may hold: the model's context (at most MAX_PROMPT_TOKENS) less
    the answer's room, so a huge message costs bounded memory and time."""
    context = getattr(weights.model.config, "max_position_embeddings", None) or MAX_PROMPT_TOKENS
    return max(8, min(context, MAX_PROMPT_TOKENS) - settings.max_new_tokens)


def encode(tokenizer: Any, prompt: Prompt, room: int | None = None) -> list[int]:
    """The prompt's tokens; beyond `room` its start is cut (a leading begin-of-text token kept), so
    the model still sees the end of the message and the response header."""
    text = prompt.text
    if room is not None and len(text) > room * CHARS_PER_TOKEN_AT_MOST:  # no tokenizing a megabyte to keep 2k tokens
        text = text[-room * CHARS_PER_TOKEN_AT_MOST:]
    ids = list(tokenizer(text, add_special_tokens=not prompt.has_special_tokens).input_ids)
    if not ids:
        raise PlaygroundError("The prompt is empty: type a message first.")
    if room is not None and len(ids) > room:
        first = [ids[0]] if ids[0] == tokenizer.bos_token_id and tokenizer.bos_token_id is not None else []
        ids = first + ids[len(ids) - room + len(first):]
    return ids


def cut_note(tokenizer: Any, prompt: Prompt, weights: Weights, settings: GenerationSettings) -> str:
    """What the engine cuts from this prompt, said for the user; empty when it fits."""
    room = prompt_room(weights, settings)
    if len(prompt.text) <= room:  # a token is at least one character
        return ""
    count = len(encode(tokenizer, Prompt(prompt.text[-(room + 1) * CHARS_PER_TOKEN_AT_MOST:],
                                         prompt.has_special_tokens)))
    if count <= room:
        return ""
    return (f"The prompt is longer than the model reads here: only its last {room:,} tokens were read "
            f"({room + settings.max_new_tokens:,} tokens less {settings.max_new_tokens} for the answer).")


def answer_text(tokenizer: Any, ids: Sequence[int]) -> str:
    """The text of an answer's tokens (its stop token is never among them)."""
    return tokenizer.decode(list(ids), skip_special_tokens=True).strip()


class _Batch:
    """Rows decoding together on one set of weights."""

    def __init__(self, weights: Weights, adapters: list[str | None], prompts: list[list[int]],
                 settings: GenerationSettings, stops: list[int]):
        self.weights, self.adapters, self.prompts = weights, adapters, prompts
        self.settings, self.stops = settings, stops
        self.processors = settings.processors()
        self.new: list[list[int]] = [[] for _ in prompts]
        self.live = list(range(len(prompts)))  # rows still decoding, in the order of the cache
        self.generators = [torch.Generator(device="cpu").manual_seed(settings.seed) for _ in prompts]
        self.cache: Any = None
        self.mask: torch.Tensor | None = None

    @property
    def finished(self) -> bool:
        return not self.live

    def _first_inputs(self, device: torch.device) -> dict[str, torch.Tensor]:
        width = max(len(ids) for ids in self.prompts)
        ids = torch.zeros((len(self.prompts), width), dtype=torch.long)  # the padding id never counts
        mask = torch.zeros((len(self.prompts), width), dtype=torch.long)
        for row, prompt in enumerate(self.prompts):
            ids[row, width - len(prompt):] = torch.tensor(prompt)
            mask[row, width - len(prompt):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "position_ids": positions.to(device)}

    def _next_inputs(self, device: torch.device) -> dict[str, torch.Tensor]:
        last = [[self.new[row][-1]] for row in self.live]
        positions = [[len(self.prompts[row]) + len(self.new[row]) - 1] for row in self.live]
        mask = torch.cat([self.mask, self.mask.new_ones((len(self.live), 1))], dim=1)
        return {"input_ids": torch.tensor(last, device=device), "attention_mask": mask,
                "position_ids": torch.tensor(positions, device=device)}

    @torch.no_grad()
    def step(self) -> None:
        with self.weights.use() as model:
            device = self.weights.device
            inputs = self._first_inputs(device) if self.cache is None else self._next_inputs(device)
            output = model(**inputs, past_key_values=self.cache, use_cache=True, logits_to_keep=1,
                           **self.weights.adapter_names([self.adapters[row] for row in self.live]))
        self.cache, self.mask = output.past_key_values, inputs["attention_mask"]
        logits = output.logits[:, -1, :].float()
        plain = not self.processors and self.settings.temperature == 0
        greedy = logits.argmax(-1).tolist() if plain else None  # one device sync for every row
        keep = []
        for slot, row in enumerate(self.live):
            if greedy is not None and len(self.new[row]) >= self.settings.min_new_tokens:
                token = greedy[slot]
            else:
                token = self._choose(row, logits[slot])
            if token not in self.stops:
                self.new[row].append(token)
            if token not in self.stops and len(self.new[row]) < self.settings.max_new_tokens:
                keep.append(slot)
        if len(keep) < len(self.live):  # finished rows leave the batch and its cache
            if keep:
                self.cache.batch_select_indices(torch.tensor(keep, device=self.mask.device))
                self.mask = self.mask[keep]
            self.live = [self.live[slot] for slot in keep]

    def _choose(self, row: int, scores: torch.Tensor) -> int:
        """The next token of one row, from that row's own logits, history and random generator."""
        if self.processors:
            history = torch.tensor([self.prompts[row] + self.new[row]], device=scores.device)
            scores = self.processors(history, scores[None])[0]
        if len(self.new[row]) < self.settings.min_new_tokens:
            scores = scores.clone()
            scores[self.stops] = float("-inf")
        if self.settings.temperature > 0:
            probabilities = torch.softmax(scores, dim=-1).cpu()
            return int(torch.multinomial(probabilities, 1, generator=self.generators[row]))
        return int(scores.argmax())


Row = tuple[Side, Prompt]


def _batches(rows: Sequence[Row], tokenizer: Any, style: str, settings: GenerationSettings,
             batch_size: int | None) -> Iterator[tuple[list[int], _Batch]]:
    """(row numbers, batch) for the rows: one set of weights per batch, similar lengths together."""
    settings.check()
    stops = stop_ids(tokenizer, style)
    encoded = [encode(tokenizer, prompt, prompt_room(side.weights, settings)) for side, prompt in rows]
    groups: dict[int, list[int]] = {}
    for number, (side, _) in enumerate(rows):
        groups.setdefault(id(side.weights), []).append(number)
    for members in groups.values():
        members = sorted(members, key=lambda n: len(encoded[n]))  # less padding; results do not change
        size = batch_size or len(members)
        for start in range(0, len(members), size):
            chunk = members[start:start + size]
            yield chunk, _Batch(rows[chunk[0]][0].weights, [rows[n][0].adapter for n in chunk],
                                [encoded[n] for n in chunk], settings, stops)


def stream(rows: Sequence[Row], tokenizer: Any, style: str, settings: GenerationSettings,
           stop: threading.Event | None = None) -> Iterator[list[str]]:
    """Every row's answer so far, after each token, until all are done or `stop` is set."""
    batches = list(_batches(rows, tokenizer, style, settings, None))
    answers = [""] * len(rows)
    while not all(batch.finished for _, batch in batches):
        if stop is not None and stop.is_set():
            return
        for members, batch in batches:
            if not batch.finished:
                batch.step()
                for row, number in enumerate(members):
                    answers[number] = answer_text(tokenizer, batch.new[row])
        yield list(answers)


def generate(rows: Sequence[Row], tokenizer: Any, style: str, settings: GenerationSettings,
             batch_size: int | None = 16, stop: threading.Event | None = None,
             on_progress: Callable[[int, int], None] | None = None) -> list[str]:
    """Every row's final answer, `batch_size` rows at a time; `on_progress(done, total)` after each batch.

    Raises PlaygroundError when `stop` is set before the end.
    """
    answers = [""] * len(rows)
    done = 0
    for members, batch in _batches(rows, tokenizer, style, settings, batch_size):
        while not batch.finished:
            if stop is not None and stop.is_set():
                raise PlaygroundError(f"Stopped while generating answers ({done} of {len(rows)} done).")
            batch.step()
        for row, number in enumerate(members):
            answers[number] = answer_text(tokenizer, batch.new[row])
        done += len(members)
        if on_progress:
            on_progress(done, len(rows))
    return answers
