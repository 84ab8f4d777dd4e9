"""Padding efficiency of training batches: real tokens / computed tokens over one epoch.

What it measures: one epoch over the bundled dataset's training split, tokenised with the default
tokenizer (Gemma 3 270M) in the Alpaca style, cut at max length 256, batched three ways:

  (a) playground  `batching.batch_order(..., group_by_length=True)` then `collate`: batches of
                  similar lengths, width = longest sample in the batch (capped at max length);
  (b) HF Trainer  the default random sampler with `DataCollatorForSeq2Seq` (no `pad_to_multiple_of`
                  by default): random batches padded to the longest sample of the batch. Computed
                  from a seeded permutation (Trainer's default seed 42); Trainer itself is not run;
  (c) the book    ch. 7's `custom_collate_fn` with `DataLoader(shuffle=True, drop_last=True)`:
                  random batches padded to the longest sample + 1, then the last position dropped,
                  so the width is the longest sample, as in (b). Only the shuffle (and drop_last) differ.

A sample of n ids (prompt + response + end-of-text) gives n - 1 input positions. Per batch:
computed tokens = batch size x width, real tokens = sum of min(n - 1, width). The same definition
is used for all three schemes, so the comparison isolates how batches are formed. (HF feeds the
full n ids and shifts inside the model, one more column per batch; the footnote shows that figure.)
Random schemes vary with the seed, so the mean over several seeds is shown too.

Compares against: (b) and (c). Target: efficiency >= 0.95 for the playground at batch size 8.

    python bench/padding.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from playground import batching, data, store  # noqa: E402

MAX_LENGTH = 256
BATCH_SIZES = (4, 8, 16)
TARGET = 0.95


def machine() -> str:
    return f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs, torch {torch.__version__}"


def efficiency(lengths: list[int], batches: list[list[int]], extra_column: int = 0) -> float:
    """Real / computed tokens; `lengths` are input lengths (ids - 1)."""
    real = computed = 0
    for batch in batches:
        width = min(max(lengths[i] for i in batch) + extra_column, MAX_LENGTH)
        computed += len(batch) * width
        real += sum(min(lengths[i] + extra_column, width) for i in batch)
    return real / computed


def hf_batches(n: int, batch_size: int, seed: int) -> list[list[int]]:
    """Trainer's default: a RandomSampler permutation cut into batches, the last one kept."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def book_batches(n: int, batch_size: int, seed: int) -> list[list[int]]:
    """The book's train loader: torch.manual_seed(123), DataLoader(shuffle=True, drop_last=True)."""
    torch.manual_seed(seed)
    loader = torch.utils.data.DataLoader(range(n), batch_size=batch_size, shuffle=True, drop_last=True)
    return [batch.tolist() for batch in loader]


def playground_efficiency_checked(samples, lengths, batch_size, pad_id) -> float:
    """(a) through the real `collate`, cross-checked against the formula."""
    batches = batching.batch_order([len(s.ids) for s in samples], batch_size, seed=123, group_by_length=True)
    real = computed = 0
    for batch in batches:
        collated = batching.collate([samples[i] for i in batch], pad_id, MAX_LENGTH)
        real += collated.real_tokens
        computed += collated.inputs.numel()
    if abs(real / computed - efficiency(lengths, batches)) > 1e-12:
        raise RuntimeError("collate and the padding formula disagree")
    return real / computed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer seeds for the random schemes' mean")
    args = parser.parse_args()
    seeds = range(5) if args.quick else range(50)

    print(f"machine: {machine()}")
    dataset = data.load("builtin")
    train = dataset.splits().train
    tokenizer = store.load_tokenizer("default")
    samples = batching.encode_all(dataset.records, "alpaca", tokenizer, indices=train)
    _, pad_id = batching.special_ids(tokenizer)
    lengths = [len(s.ids) - 1 for s in samples]
    n = len(samples)
    print(f"data: bundled training split, {n} samples, Alpaca style, default tokenizer; "
          f"input lengths {min(lengths)}-{max(lengths)} (mean {statistics.mean(lengths):.1f}), "
          f"max length {MAX_LENGTH} ({sum(l > MAX_LENGTH for l in lengths)} cut)")
    print(f"random schemes: one seeded epoch (HF seed 42, book seed 123) and the mean over {len(seeds)} seeds\n")

    header = (f"{'batch':>5}  {'(a) playground':>14}  {'(b) HF Trainer':>14}  {'(b) mean':>8}  "
              f"{'(c) book ch.7':>13}  {'(c) mean':>8}  {'a/b':>5}  {'a/c':>5}")
    print(header)
    print("-" * len(header))
    rows = {}
    for batch_size in BATCH_SIZES:
        ours = playground_efficiency_checked(samples, lengths, batch_size, pad_id)
        hf = efficiency(lengths, hf_batches(n, batch_size, 42))
        hf_mean = statistics.mean(efficiency(lengths, hf_batches(n, batch_size, s)) for s in seeds)
        book = efficiency(lengths, book_batches(n, batch_size, 123))
        book_mean = statistics.mean(efficiency(lengths, book_batches(n, batch_size, s)) for s in seeds)
        hf_full_ids = efficiency(lengths, hf_batches(n, batch_size, 42), extra_column=1)
        rows[batch_size] = {"playground": ours, "hf_trainer": hf, "hf_trainer_mean": hf_mean,
                            "book": book, "book_mean": book_mean, "hf_trainer_full_ids": hf_full_ids,
                            "ratio_vs_hf": ours / hf, "ratio_vs_book": ours / book}
        print(f"{batch_size:>5}  {ours:>14.3f}  {hf:>14.3f}  {hf_mean:>8.3f}  {book:>13.3f}  {book_mean:>8.3f}  "
              f"{ours / hf:>5.2f}  {ours / book:>5.2f}")

    at8 = rows[8]
    met = at8["playground"] >= TARGET
    print("\n(b) and (c) pad the same way (to the longest sample); they differ only in the shuffle and "
          "the book's drop_last.")
    print(f"footnote: counting HF's inputs as the full ids (one more column per batch), (b) at batch 8 is "
          f"{at8['hf_trainer_full_ids']:.3f}.")
    print(f"target: playground >= {TARGET} at batch size 8: {at8['playground']:.3f} -> {'MET' if met else 'NOT MET'}")
    result = {"benchmark": "padding", "samples": n, "max_length": MAX_LENGTH, "seeds_for_mean": len(seeds),
              "target": TARGET, "target_met": met,
              "batch_sizes": {str(b): {k: round(v, 4) for k, v in r.items()} for b, r in rows.items()}}
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
