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
- optionally, samples are packed (`pack`): several in one row of at most the maximum length, one
  after another, each with position ids from 0 and attending only to itself (the model reads the
  position ids: a row whose positions restart holds several sequences), so a row holds no padding
  but at its end, and no target crosses from one sample into the next;
- an epoch's batches come in a seeded random order; `batch_order(..., order="book")` is the order
  of the book's DataLoader (`torch.manual_seed(123)`, `shuffle=True`), batch for batch.

The MASKS and BATCH_ORDERS names live in `settings`. Only `collate` and the book's batch order
import torch, so that checking data (`collate_arrays`) needs none.
"""

from __future__ import annotations

import bisect
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

    @property
    def input_len(self) -> int:
        """Input positions it fills (its last token is only a target)."""
        return len(self.ids) - 1


@dataclass(frozen=True)
class PackedRow:
    """Several samples in one row (`pack`): each one's inputs and targets after the previous one's."""
    parts: tuple[Sample, ...]

    @property
    def input_len(self) -> int:
        return sum(part.input_len for part in self.parts)


@dataclass
class Batch:
    inputs: torch.Tensor   # (batch, length) token ids
    targets: torch.Tensor  # (batch, length) next-token ids, IGNORE_INDEX where nothing is learned
    samples: list[Any]     # a Sample per row, or a PackedRow
    positions: torch.Tensor | None = None  # (batch, length) position ids where rows are packed; None: 0, 1, 2...

    @property
    def real_tokens(self) -> int:
        return sum(min(s.input_len, self.inputs.shape[1]) for s in self.samples)

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


def collate(samples: Sequence[Sample | PackedRow], pad_id: int, max_length: int | None = None,
            mask: str = "none") -> Batch:
    """The book's custom collate function, working from sample lengths rather than pad ids;
    `mask` is a MASKS name ("none", "prompt", "instruction"). Packed rows get their position ids."""
    import torch

    inputs, targets = collate_arrays(samples, pad_id, max_length, mask)
    positions = None
    if any(isinstance(s, PackedRow) for s in samples):
        positions = torch.from_numpy(np.stack([position_ids(s, inputs.shape[1]) for s in samples]))
    return Batch(inputs=torch.from_numpy(inputs), targets=torch.from_numpy(targets), samples=list(samples),
                 positions=positions)


def collate_arrays(samples: Sequence[Sample | PackedRow], pad_id: int, max_length: int | None = None,
                   mask: str = "none") -> tuple[np.ndarray, np.ndarray]:
    """`collate`'s (inputs, targets) as int64 arrays: what the data check counts without torch."""
    checked_mask(mask)
    if not samples:
        raise PlaygroundError("Cannot collate an empty batch.")
    if max_length is not None and max_length < 2:
        raise PlaygroundError(f"Max length must be at least 2, got {max_length}.")
    width = max(s.input_len for s in samples)
    if max_length is not None:
        width = min(width, max_length)
    inputs = np.full((len(samples), width), pad_id, dtype=np.int64)
    targets = np.full((len(samples), width), IGNORE_INDEX, dtype=np.int64)
    for row, sample in enumerate(samples):
        parts = sample.parts if isinstance(sample, PackedRow) else (sample,)
        source, shifted = (np.concatenate(arrays)[:width] for arrays in zip(*(row_arrays(p, mask) for p in parts)))
        inputs[row, :len(source)] = source
        targets[row, :len(shifted)] = shifted
    return inputs, targets


def row_arrays(sample: Sample, mask: str) -> tuple[np.ndarray, np.ndarray]:
    """One sample's inputs and targets (the inputs shifted left by one), its masked targets -100."""
    ids = np.asarray(sample.ids, dtype=np.int64)
    targets = ids[1:].copy()
    # target t predicts token t+1, which is a masked prompt token while t+1 < masked
    targets[:max(masked_prefix(sample, mask) - 1, 0)] = IGNORE_INDEX
    return ids[:-1], targets


def position_ids(sample: Sample | PackedRow, width: int) -> np.ndarray:
    """A row's position ids: from 0 for each packed sample; the padding after goes on counting."""
    parts = sample.parts if isinstance(sample, PackedRow) else (sample,)
    positions = np.concatenate([np.arange(p.input_len) for p in parts])[:width]
    tail = np.arange(len(positions), width) - len(positions) + (positions[-1] + 1 if len(positions) else 0)
    return np.concatenate([positions, tail]).astype(np.int64)


def pack(samples: Sequence[Sample], max_length: int) -> list[PackedRow]:
    """The samples packed into rows of at most `max_length` input positions (`pack_layout`); a sample
    longer than a row is cut to it, as collate would cut it, and fills one alone."""
    def cut(sample: Sample) -> Sample:
        if sample.input_len <= max_length:
            return sample
        return Sample(sample.ids[:max_length + 1], sample.prompt_len, sample.index, sample.instruction_len)

    layout = pack_layout([s.input_len for s in samples], max_length)
    return [PackedRow(tuple(cut(samples[i]) for i in row)) for row in layout]


def pack_layout(input_lengths: Sequence[int], max_length: int) -> list[list[int]]:
    """Which samples (by position) share each row: best fit by decreasing length, each going into the
    row it fills most closely. It needs only the lengths, so a row count costs no tokenising beyond
    `dataset_lengths`; the same lengths always give the same rows."""
    rows: list[list[int]] = []
    open_rows: list[tuple[int, int]] = []  # (room left, row number) of the rows with room, sorted
    for position in sorted(range(len(input_lengths)), key=lambda i: (-input_lengths[i], i)):
        need = min(int(input_lengths[position]), max_length)
        place = bisect.bisect_left(open_rows, (need, -1))
        if place < len(open_rows):
            left, number = open_rows.pop(place)
        else:
            left, number = max_length, len(rows)
            rows.append([])
        rows[number].append(position)
        if left > need:
            bisect.insort(open_rows, (left - need, number))
    return rows


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
