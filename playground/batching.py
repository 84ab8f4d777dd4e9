"""Tokenise, batch and collate instruction records the way the book does, and describe the result.

`collate()` is the one function that turns samples into (inputs, targets) tensors: the Batch tab,
the command line and training all call it, so what the user inspects is what the model learns from.

The book's rules (chapter 7):
- every sample is prompt + response + one end-of-text token;
- samples are padded to the longest one in the batch;
- targets are the inputs shifted left by one position;
- target positions past a sample's end-of-text token are -100, so padding is not learned, while
  the end-of-text token itself is trained (the model learns to stop);
- optionally, prompt targets are -100 too, so only the response is learned ("prompt": the whole
  prompt, response header included), or only the instruction and input are ("instruction": the
  book's exercise 7.2, which masks the tokens of `format_input(entry)` and trains the header);
- optionally, everything is cut to a maximum length;
- an epoch's batches come in a seeded random order; `batch_order(..., order="book")` is the order
  of the book's DataLoader (`torch.manual_seed(123)`, `shuffle=True`), batch for batch.

The MASKS and BATCH_ORDERS names live in `settings`. Only `collate` and the book's batch order
import torch, so that checking data (`collate_arrays`) needs none.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from .errors import PlaygroundError
from .prompts import render, style_of
from .settings import BATCH_ORDERS, checked_mask

if TYPE_CHECKING:  # torch is imported where tensors are made, so that checking data needs none
    import torch

IGNORE_INDEX = -100

# What happens to the target at a position (one colour each in the Batch tab).
KINDS = {
    "prompt": "prompt token, trained",
    "prompt_masked": "prompt token, masked (-100)",
    "response": "response token, trained",
    "eos": "end-of-text token, trained",
    "pad": "padding, ignored (-100)",
}


@dataclass(frozen=True)
class Sample:
    ids: list[int]    # prompt + response + end-of-text, before any truncation
    prompt_len: int   # how many of `ids` belong to the prompt
    index: int = -1   # the record it came from
    instruction_len: int = -1  # how many belong to the prompt without its response header (-1: unknown)


@dataclass
class Batch:
    inputs: torch.Tensor   # (batch, length) token ids
    targets: torch.Tensor  # (batch, length) next-token ids, IGNORE_INDEX where nothing is learned
    samples: list[Sample]

    @property
    def real_tokens(self) -> int:
        return sum(min(len(s.ids) - 1, self.inputs.shape[1]) for s in self.samples)

    @property
    def trained_tokens(self) -> int:
        return int((self.targets != IGNORE_INDEX).sum())


def special_ids(tokenizer: Any) -> tuple[int, int]:
    """(end-of-text id, padding id); padding falls back to end-of-text as in the book (GPT-2)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise PlaygroundError("The tokenizer has no end-of-text token, so examples cannot be closed.")
    pad = tokenizer.pad_token_id
    return eos, eos if pad is None else pad


def encode(record: Any, style: str, tokenizer: Any, template: str | None = None, index: int = -1) -> Sample:
    """Tokenise prompt and response separately, so the prompt boundary is exact for masking."""
    return encode_many([record], style, tokenizer, template, index=index)[0]


def encode_many(records: Sequence[Any], style: str, tokenizer: Any, template: str | None = None,
                index: int = -1) -> list[Sample]:
    """`encode` for several records, with one tokenizer call for their prompts and one for their
    responses; `index` is the first record's number (the rest follow), -1 for none."""
    if not records:
        return []
    eos, _ = special_ids(tokenizer)
    rendered = [render(record, style, tokenizer, template) for record in records]
    prompt_ids = _prompt_ids(tokenizer, [r.prompt for r in rendered], rendered, eos)
    instruction_ids = _prompt_ids(tokenizer, [r.instruction for r in rendered], rendered, eos)
    response_ids = tokenizer([r.response for r in rendered], add_special_tokens=False).input_ids
    return [Sample(ids=prompt + list(response) + [eos], prompt_len=len(prompt), index=-1 if index < 0 else index + i,
                   instruction_len=len(instruction))
            for i, (prompt, instruction, response) in enumerate(zip(prompt_ids, instruction_ids, response_ids))]


def _prompt_ids(tokenizer: Any, texts: list[str], rendered: list[Any], eos: int) -> list[list[int]]:
    """The ids of prompt texts, with the tokenizer's special tokens unless the text already holds them."""
    result: list[list[int]] = [[] for _ in texts]
    for with_specials in (False, True):  # a chat template may already have written them
        which = [i for i, r in enumerate(rendered) if r.has_special_tokens != with_specials]
        if which:
            ids = tokenizer([texts[i] for i in which], add_special_tokens=with_specials).input_ids
            for i, prompt in zip(which, ids):
                result[i] = list(prompt[:-1] if prompt and prompt[-1] == eos else prompt)  # a </s> added to every text
    return result


CHUNK = 1000  # records per tokenizer call: fast, and the tokenizer's temporaries stay small


def encode_chunks(records: Sequence[Any], style: str, tokenizer: Any, template: str | None = None,
                  indices: Sequence[int] | None = None, chunk: int = CHUNK) -> Iterator[list[Sample]]:
    """The samples of `indices` (default: every record), `chunk` records at a time."""
    indices = range(len(records)) if indices is None else indices
    for start in range(0, len(indices), chunk):
        part = indices[start:start + chunk]
        samples = encode_many([records[i] for i in part], style, tokenizer, template)
        yield [Sample(s.ids, s.prompt_len, i, s.instruction_len) for s, i in zip(samples, part)]


def encode_all(records: Sequence[Any], style: str, tokenizer: Any, template: str | None = None,
               indices: Sequence[int] | None = None) -> list[Sample]:
    return [sample for chunk in encode_chunks(records, style, tokenizer, template, indices) for sample in chunk]


def sample_lengths(records: Sequence[Any], style: str, tokenizer: Any, template: str | None = None,
                   indices: Sequence[int] | None = None, chunk: int = CHUNK) -> np.ndarray:
    """`len(encode(record).ids)` of each record, keeping only the numbers (int32), never all the ids."""
    count = len(records) if indices is None else len(indices)
    lengths = np.empty(count, dtype=np.int32)
    position = 0
    for samples in encode_chunks(records, style, tokenizer, template, indices, chunk):
        lengths[position:position + len(samples)] = [len(s.ids) for s in samples]
        position += len(samples)
    return lengths


def dataset_lengths(dataset: Any, style: str, tokenizer: Any, template: str | None = None) -> np.ndarray:
    """Every record's sample length, computed once per dataset, tokenizer, style and template."""
    key = ("sample_lengths", id(tokenizer), getattr(tokenizer, "name_or_path", ""), style,
           template if style_of(style).uses_template else None)
    return dataset.remember(key, lambda: sample_lengths(dataset.records, style, tokenizer, template))


def collate(samples: Sequence[Sample], pad_id: int, max_length: int | None = None, mask: str = "none") -> Batch:
    """The book's custom collate function, working from sample lengths rather than pad ids;
    `mask` is a MASKS name ("none", "prompt", "instruction")."""
    import torch

    inputs, targets = collate_arrays(samples, pad_id, max_length, mask)
    return Batch(inputs=torch.from_numpy(inputs), targets=torch.from_numpy(targets), samples=list(samples))


def collate_arrays(samples: Sequence[Sample], pad_id: int, max_length: int | None = None,
                   mask: str = "none") -> tuple[np.ndarray, np.ndarray]:
    """`collate`'s (inputs, targets) as int64 arrays: what the data check counts without torch."""
    checked_mask(mask)
    if not samples:
        raise PlaygroundError("Cannot collate an empty batch.")
    if max_length is not None and max_length < 2:
        raise PlaygroundError(f"Max length must be at least 2, got {max_length}.")
    width = max(len(s.ids) for s in samples) - 1
    if max_length is not None:
        width = min(width, max_length)
    inputs = np.full((len(samples), width), pad_id, dtype=np.int64)
    targets = np.full((len(samples), width), IGNORE_INDEX, dtype=np.int64)
    for row, sample in enumerate(samples):
        source = sample.ids[:-1][:width]
        shifted = sample.ids[1:][:width]
        inputs[row, :len(source)] = source
        targets[row, :len(shifted)] = shifted
        masked = masked_prefix(sample, mask)
        # target t predicts token t+1, which is a masked prompt token while t+1 < masked
        targets[row, :max(masked - 1, 0)] = IGNORE_INDEX
    return inputs, targets


def masked_prefix(sample: Sample, mask: str) -> int:
    """How many of the sample's first tokens are masked as targets under `mask`."""
    if mask == "prompt":
        return sample.prompt_len
    if mask == "instruction":
        if sample.instruction_len < 0:
            raise PlaygroundError("This sample was made without its instruction length; encode it again "
                                  "to mask the instruction only.")
        return sample.instruction_len
    return 0


def batch_order(lengths: Sequence[int], batch_size: int, seed: int = 123, group_by_length: bool = False,
                drop_last: bool = False, order: str = "shuffled", epoch: int = 0) -> list[list[int]]:
    """Indices of each batch of epoch `epoch` (from 0), in the order `order` (a BATCH_ORDERS name).

    "shuffled": a shuffle seeded with `seed + epoch`, optionally grouped by length: grouping sorts
    each window of 50 batches' worth of samples by length before cutting batches, then shuffles
    the batch order, so batches hold similar lengths (little padding) yet the epoch still visits
    the data in a random order. "book": the order of the book's training loader (`book_permutation`).
    `drop_last` leaves out the last batch when it is smaller than `batch_size`, as the book's
    training loader does.
    """
    if batch_size < 1:
        raise PlaygroundError(f"Batch size must be at least 1, got {batch_size}.")
    if order not in BATCH_ORDERS:
        raise PlaygroundError(f"Unknown batch order {order!r}: use one of {', '.join(BATCH_ORDERS)}.")
    if order == "book" and group_by_length:
        raise PlaygroundError("The book's batch order does not group batches by length: turn group by length off.")
    rng = random.Random(seed + epoch)
    if order == "book":
        indices = book_permutation(len(lengths), seed, epoch)
    else:
        indices = list(range(len(lengths)))
        rng.shuffle(indices)
    if group_by_length:
        window = batch_size * 50
        indices = [i for start in range(0, len(indices), window)
                   for i in sorted(indices[start:start + window], key=lambda i: -lengths[i])]
    batches = [indices[start:start + batch_size] for start in range(0, len(indices), batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    if group_by_length:
        rng.shuffle(batches)
    return batches


def book_permutation(count: int, seed: int, epoch: int) -> list[int]:
    """The order in which the book's training loader visits `count` samples in epoch `epoch`.

    The book calls `torch.manual_seed(seed)`, then makes `DataLoader(..., shuffle=True)`, whose
    every pass (`iter(loader)`, one per epoch) draws a base seed from the global generator and
    then seeds its RandomSampler's own generator with a second draw. Here a generator of our own,
    seeded with `seed`, stands in for the global one, and the passes before `epoch` are replayed,
    so any epoch's order (a resumed run's included) comes out the same without any saved state.
    """
    import torch

    source = torch.Generator().manual_seed(seed)
    for _ in range(epoch + 1):
        torch.empty((), dtype=torch.int64).random_(generator=source)  # the DataLoader iterator's base seed
        sampler_seed = int(torch.empty((), dtype=torch.int64).random_(generator=source).item())
    return torch.randperm(count, generator=torch.Generator().manual_seed(sampler_seed)).tolist()


# ---------------------------------------------------------------- describing a batch


@dataclass
class RowView:
    index: int                # record index
    input_ids: list[int]
    target_ids: list[int]
    next_ids: list[int]       # the true next token at each position, masked or not (none after the end)
    kinds: list[str]          # per position: what happens to the target there (a KINDS key)
    truncated_ids: list[int]  # tokens of the sample cut away by the max length


@dataclass
class BatchView:
    rows: list[RowView]
    width: int
    real_tokens: int      # input positions that hold a real token, not padding
    trained_tokens: int   # target positions that are not -100
    computed_tokens: int  # batch x width: what the model actually processes

    @property
    def padding_fraction(self) -> float:
        return 1 - self.real_tokens / self.computed_tokens if self.computed_tokens else 0.0


def target_kind(sample: Sample, position: int, target: int) -> str:
    last = len(sample.ids) - 2  # position whose target is the end-of-text token
    if position > last:
        return "pad"
    if position == last:
        return "eos"
    if position + 1 < sample.prompt_len:
        return "prompt_masked" if target == IGNORE_INDEX else "prompt"
    return "response"


def describe(batch: Batch) -> BatchView:
    """Label every position of a collated batch, reading the targets `collate` produced."""
    width = batch.inputs.shape[1]
    rows = []
    for row, sample in enumerate(batch.samples):
        inputs = batch.inputs[row].tolist()
        targets = batch.targets[row].tolist()
        rows.append(RowView(
            index=sample.index, input_ids=inputs, target_ids=targets, next_ids=sample.ids[1:][:width],
            kinds=[target_kind(sample, t, targets[t]) for t in range(width)],
            truncated_ids=sample.ids[width + 1:] if len(sample.ids) > width + 1 else [],
        ))
    return BatchView(rows=rows, width=width, real_tokens=batch.real_tokens,
                     trained_tokens=batch.trained_tokens, computed_tokens=batch.inputs.numel())


def token_text(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """Each id decoded on its own, with whitespace made visible."""
    texts = [tokenizer.decode([i], skip_special_tokens=False) for i in ids]
    return [t.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥") or "∅" for t in texts]


def training_batch(records: Sequence[Any], indices: Sequence[int], tokenizer: Any, style: str,
                   batch_size: int, number: int = 0, max_length: int | None = None,
                   mask: str = "none", group_by_length: bool = False, seed: int = 123,
                   template: str | None = None, lengths: Sequence[int] | None = None,
                   drop_last: bool = False, order: str = "shuffled") -> Batch:
    """Batch `number` of the first epoch over `indices`, exactly as training would collate it.

    Only that batch's records are tokenised. Grouping by length needs the length of every sample
    in `indices`: `lengths` (by record number, as `dataset_lengths` gives them) saves computing them.
    The samples' `index` is their record number in the dataset, not their place in `indices`.
    """
    if not group_by_length:
        order_lengths: Sequence[int] = np.zeros(len(indices), dtype=np.int32)  # the order needs only the count
    elif lengths is None:
        order_lengths = sample_lengths(records, style, tokenizer, template, indices)
    else:
        order_lengths = [lengths[i] for i in indices]
    picked = batch_records(indices, order_lengths, batch_size, number, seed, group_by_length, drop_last, order)
    samples = encode_all(records, style, tokenizer, template, picked)
    _, pad = special_ids(tokenizer)
    return collate(samples, pad, max_length, mask)


def batch_records(indices: Sequence[int], order_lengths: Sequence[int], batch_size: int, number: int = 0,
                  seed: int = 123, group_by_length: bool = False, drop_last: bool = False,
                  order: str = "shuffled") -> list[int]:
    """The record numbers of batch `number` of the first epoch over `indices`, in `batch_order` on
    `order_lengths` (one per index: a sample's length, or a pair's); refused when out of range."""
    batches = batch_order(order_lengths, batch_size, seed, group_by_length, drop_last, order)
    if not 0 <= number < len(batches):
        raise PlaygroundError(f"Batch number {number} is out of range: this split has {len(batches)} batches.")
    return [indices[i] for i in batches[number]]
