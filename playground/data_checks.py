"""Data checks before training: find the problems in a dataset for the settings a run would use.

Each finding names the records it concerns by their number in the dataset (from 0, the Dataset
tab's `#`). Token counts come from the code training uses: `batching.encode_chunks` renders and
tokenises each record with `prompts.render`, and `batching.collate` says which targets are
trained at the given max length and masking. Splits come from `Dataset.splits`, as in training.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from . import batching, data
from .settings import TrainConfig, checked_mask

SHOWN = 20  # record numbers listed per finding
CHUNK = 256  # samples collated at a time: their padded width stays small
MARKERS = ("### Instruction:", "### Response:", "<|user|>", "<|assistant|>", "<start_of_turn>", "<end_of_turn>")


@dataclass(frozen=True)
class CheckSettings:
    style: str = "alpaca"
    template: str | None = None
    max_length: int | None = TrainConfig.max_length  # training's default; None: no truncation
    mask: str = "none"  # a settings.MASKS name
    split_seed: int = 123
    split_order: str = "shuffled"

    def __post_init__(self) -> None:
        checked_mask(self.mask)

    @classmethod
    def for_training(cls, config: TrainConfig) -> "CheckSettings":
        """The settings a training config will train with."""
        return cls(style=config.style, template=config.template, max_length=config.max_length,
                   mask=config.mask, split_seed=config.split_seed, split_order=config.split_order)


@dataclass
class Finding:
    key: str
    title: str            # what is wrong, in a few words
    advice: str           # why it matters or what to do
    records: list[int]    # every record concerned, in order
    notes: dict[int, str] = field(default_factory=dict)  # a few words about a record ("same as #3")

    @property
    def count(self) -> int:
        return len(self.records)

    def shown(self) -> list[int]:
        return self.records[:SHOWN]


@dataclass
class Lengths:
    """Training positions per record (the sample's tokens less the one lost to the shift) against the max length."""
    median: float
    p95: float
    longest: int
    over: int             # records longer than the max length
    lost_share: float     # share of all positions that truncation cuts away


@dataclass
class Report:
    settings: CheckSettings
    records: int
    findings: list[Finding]
    lengths: Lengths

    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.count]

    def to_json(self) -> dict[str, Any]:
        return {"records": self.records, "settings": asdict(self.settings), "lengths": asdict(self.lengths),
                "findings": [{"key": f.key, "title": f.title, "count": f.count, "records": f.shown(),
                              "notes": {str(i): f.notes[i] for i in f.shown() if i in f.notes},
                              "advice": f.advice} for f in self.findings]}


def normalise(text: str) -> str:
    """Lowercase, punctuation stripped, whitespace collapsed: texts that differ only in those match."""
    return " ".join(re.sub(r"[^\w\s]", "", text.lower()).split())


def digest(*parts: str) -> bytes:
    """A short fingerprint of several texts (their separations kept), so keys stay small in memory."""
    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=16).digest()


# ---------------------------------------------------------------- text checks


def duplicates(records: Sequence[data.Record]) -> tuple[Finding, Finding]:
    """Records repeating an earlier one exactly, and those repeating one up to case, spaces and punctuation."""
    exact_seen: dict[bytes, int] = {}
    near_seen: dict[bytes, int] = {}
    exact, near = [], []
    exact_notes, near_notes = {}, {}
    for number, r in enumerate(records):
        exact_key = digest(r.instruction, r.input, r.output)
        near_key = digest(normalise(r.instruction), normalise(r.input), normalise(r.output))
        if exact_key in exact_seen:
            exact.append(number)
            exact_notes[number] = f"same as #{exact_seen[exact_key]}"
        elif near_key in near_seen:
            near.append(number)
            near_notes[number] = f"nearly #{near_seen[near_key]}"
        exact_seen.setdefault(exact_key, number)
        near_seen.setdefault(near_key, number)
    return (Finding("exact_duplicates", "exact duplicates", "the same instruction, input and output as an earlier "
                    "record: trained on twice as often", exact, exact_notes),
            Finding("near_duplicates", "near-duplicates", "the same as an earlier record up to case, spaces and "
                    "punctuation", near, near_notes))


def split_leaks(records: Sequence[data.Record], splits: data.Splits) -> Finding:
    """Records whose normalised instruction and input lie in both the train and the test split."""
    key = {n: digest(normalise(records[n].instruction), normalise(records[n].input))
           for n in (*splits.train, *splits.test)}
    train_first: dict[bytes, int] = {}
    for n in splits.train:
        train_first.setdefault(key[n], n)
    test_first: dict[bytes, int] = {}
    for n in splits.test:
        if key[n] in train_first:
            test_first.setdefault(key[n], n)
    notes = {n: f"test; train has #{train_first[key[n]]}" for n in splits.test if key[n] in test_first}
    notes |= {n: f"train; test has #{test_first[key[n]]}" for n in splits.train if key[n] in test_first}
    return Finding("split_leaks", "in both train and test",
                   "the same instruction and input (normalised) in the training and the test split: the test "
                   "score measures memory, not generalisation", sorted(notes), notes)


def empty_outputs(records: Sequence[data.Record]) -> Finding:
    found = [n for n, r in enumerate(records) if not r.output.strip()]
    return Finding("empty_outputs", "empty outputs", "the output is empty or only whitespace: the model learns "
                   "to answer nothing", found)


def outputs_equal_inputs(records: Sequence[data.Record]) -> Finding:
    found = [n for n, r in enumerate(records) if r.input.strip() and r.output.strip() == r.input.strip()]
    return Finding("output_is_input", "output equals the input", "the output repeats the input: the model "
                   "learns to copy", found)


def templated(records: Sequence[data.Record]) -> Finding:
    """Fields that already hold a prompt template's markers, as in files exported from another tool."""
    found, notes = [], {}
    for number, r in enumerate(records):
        hits = [f"{name} has {marker}" for name in data.FIELDS for marker in MARKERS if marker in getattr(r, name)]
        if hits:
            found.append(number)
            notes[number] = hits[0]
    return Finding("double_templating", "already templated", "a field holds a prompt template's markers "
                   f"({', '.join(MARKERS)}): the style's template is added around them again", found, notes)


# ---------------------------------------------------------------- preference pairs (DPO)


def pair_findings(records: Sequence[data.Record], splits: data.Splits) -> list[Finding]:
    """A preference dataset's own problems: identical or empty sides, and prompts in several splits."""
    return [same_sides(records), empty_side(records, "chosen"), empty_side(records, "rejected"),
            shared_prompts(records, splits)]


def same_sides(records: Sequence[data.Record]) -> Finding:
    found = [n for n, r in enumerate(records) if r.is_pair and normalise(r.chosen) == normalise(r.rejected)]
    return Finding("same_sides", "chosen equals rejected", "the two responses are the same (up to case, spaces and "
                   "punctuation): the pair teaches nothing, its DPO loss stays at log 2", found)


def empty_side(records: Sequence[data.Record], side: str) -> Finding:
    found = [n for n, r in enumerate(records) if r.is_pair and not getattr(r, side).strip()]
    return Finding(f"empty_{side}", f"empty {side} response", f"the {side} response is empty or only whitespace",
                   found)


def shared_prompts(records: Sequence[data.Record], splits: data.Splits) -> Finding:
    """Records whose normalised prompt (instruction and input) lies in more than one split."""
    named = {"train": splits.train, "validation": splits.validation, "test": splits.test}
    key = {n: digest(normalise(records[n].instruction), normalise(records[n].input))
           for indices in named.values() for n in indices}
    first: dict[bytes, dict[str, int]] = {}
    for split, indices in named.items():
        for n in indices:
            first.setdefault(key[n], {}).setdefault(split, n)
    notes = {}
    for split, indices in named.items():
        for n in indices:
            others = [f"{other} has #{number}" for other, number in first[key[n]].items() if other != split]
            if others:
                notes[n] = f"{split}; " + ", ".join(others)
    return Finding("shared_prompts", "prompt in several splits", "the same instruction and input (normalised) in "
                   "more than one split: the validation and test reward margins measure memory, not "
                   "generalisation", sorted(notes), notes)


# ---------------------------------------------------------------- token checks


@dataclass
class TokenCounts:
    lengths: np.ndarray         # len(sample.ids) per record
    response_kept: np.ndarray   # targets trained with the prompt masked: 0 when the response is cut away
    trained: np.ndarray         # targets trained with the chosen masking


def trained_per_row(samples: list[batching.Sample], pad: int, max_length: int | None, mask: str) -> list[int]:
    """Trained targets of each sample, read from `collate`'s own targets."""
    _, targets = batching.collate_arrays(samples, pad, max_length, mask)
    return (targets != batching.IGNORE_INDEX).sum(axis=1).tolist()


def token_counts(dataset: data.Dataset, tokenizer: Any, settings: CheckSettings,
                 on_progress: Callable[[float], None] | None = None) -> TokenCounts:
    """Per record: its sample length and trained targets, as training would tokenise and collate it."""
    n = len(dataset)
    counts = TokenCounts(*(np.zeros(n, dtype=np.int32) for _ in range(3)))
    _, pad = batching.special_ids(tokenizer)
    done = 0
    for samples in batching.encode_chunks(dataset.records, settings.style, tokenizer, settings.template):
        for start in range(0, len(samples), CHUNK):
            part = samples[start:start + CHUNK]
            where = [s.index for s in part]
            counts.lengths[where] = [len(s.ids) for s in part]
            counts.response_kept[where] = trained_per_row(part, pad, settings.max_length, "prompt")
            counts.trained[where] = (counts.response_kept[where] if settings.mask == "prompt" else
                                     trained_per_row(part, pad, settings.max_length, settings.mask))
        done += len(samples)
        if on_progress:
            on_progress(done / n)
    return counts


def numbers(flags: np.ndarray) -> list[int]:
    return np.flatnonzero(flags).tolist()


def token_findings(counts: TokenCounts, settings: CheckSettings) -> tuple[list[Finding], Lengths]:
    limit = settings.max_length
    positions = counts.lengths.astype(np.int64) - 1
    over = positions > limit if limit else np.zeros(len(positions), dtype=bool)
    lost = np.clip(positions - limit, 0, None).sum() if limit else 0
    at = f"a max length of {limit}" if limit else "no max length"
    findings = [
        Finding("response_cut", "response cut away", f"at {at}, the prompt fills the whole sample: none of the "
                "response is ever a target", numbers(counts.response_kept == 0)),
        Finding("no_target", "nothing trained", f"at {at} with masking {settings.mask!r}, no target is trained: the "
                "record adds nothing to the loss", numbers(counts.trained == 0)),
        Finding("too_long", "longer than the max length", f"cut to {limit} positions; the rest is never seen"
                if limit else "no max length given", numbers(over)),
    ]
    lengths = Lengths(median=float(np.median(positions)) if len(positions) else 0.0,
                      p95=float(np.percentile(positions, 95)) if len(positions) else 0.0,
                      longest=int(positions.max()) if len(positions) else 0, over=int(over.sum()),
                      lost_share=float(lost / positions.sum()) if positions.sum() else 0.0)
    return findings, lengths


# ---------------------------------------------------------------- the check


def check(dataset: data.Dataset, tokenizer: Any, settings: CheckSettings = CheckSettings(),
          on_progress: Callable[[float], None] | None = None) -> Report:
    """Every finding for `dataset` trained with `settings` (style, max length, masking, split seed)."""
    records = dataset.records
    counts = token_counts(dataset, tokenizer, settings, on_progress)
    from_tokens, lengths = token_findings(counts, settings)
    splits = dataset.splits(seed=settings.split_seed, order=settings.split_order)
    findings = [*duplicates(records), split_leaks(records, splits),
                *from_tokens, empty_outputs(records), outputs_equal_inputs(records), templated(records)]
    if dataset.is_preference:
        findings += pair_findings(records, splits)
    return Report(settings, len(dataset), findings, lengths)


def lines(report: Report) -> Iterable[str]:
    """The report as text: the settings, the lengths, then one block per finding."""
    s = report.settings
    yield (f"{report.records:,} records · style {s.style} · max length {s.max_length or 'none'} · masking "
           f"{s.mask} · split seed {s.split_seed}, {s.split_order}")
    n = report.lengths
    yield (f"training positions per record: median {n.median:.0f}, 95th percentile {n.p95:.0f}, longest "
           f"{n.longest}; {n.over:,} over the max length, {n.lost_share:.1%} of all positions cut away")
    for finding in report.findings:
        yield f"{finding.title}: {finding.count:,}" + (f" · {finding.advice}" if finding.count else "")
        if finding.count:
            listed = ", ".join(f"{i} ({finding.notes[i]})" if i in finding.notes else str(i) for i in finding.shown())
            more = f" … and {finding.count - SHOWN:,} more" if finding.count > SHOWN else ""
            yield f"  records: {listed}{more}"
    yield "record numbers count from 0, as the Dataset tab's # column"
