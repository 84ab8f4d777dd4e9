"""`batch`: one training batch collated as training collates it, with what happens to each target."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .. import batching
from .options import DEFAULTS, add_batch_order, add_mask, add_source, add_style, load_dataset, load_tokenizer
from .numbers import non_negative_int, positive_int

KIND_CODES = {"prompt": "prompt", "prompt_masked": "masked", "response": "resp", "eos": "eos", "pad": "pad"}


def show_batch(args: argparse.Namespace) -> int:
    dataset = load_dataset(args.path, args)
    tokenizer = load_tokenizer(args.tokenizer)
    split = getattr(dataset.splits(seed=args.seed, order=args.split_order), args.split)
    if dataset.is_preference:
        return show_pairs(args, dataset.records, split, tokenizer)
    batch = batching.training_batch(dataset.records, split, tokenizer, args.style, args.batch_size,
                                    args.number, args.max_length, args.mask, args.group_by_length, args.seed,
                                    args.template, drop_last=args.drop_last, order=args.batch_order)
    view = batching.describe(batch)
    if args.json:
        print(json.dumps(batch_json(view, tokenizer), ensure_ascii=False))
    else:
        print(batch_text(view, tokenizer))
    return 0


def show_pairs(args: argparse.Namespace, records: Any, split: list[int], tokenizer: Any) -> int:
    """A preference dataset's batch as a DPO run collates it: per pair, its chosen row and its rejected row."""
    from .. import dpo

    batch = dpo.training_pairs(records, split, tokenizer, args.style, args.batch_size, args.number, args.max_length,
                               args.mask, args.group_by_length, args.seed, args.template, drop_last=args.drop_last,
                               order=args.batch_order)
    view = batching.describe(batch)
    if args.json:
        print(json.dumps(pairs_json(view, tokenizer, args.mask), ensure_ascii=False))
    else:
        print(pairs_text(view, tokenizer, args.mask))
    return 0


def batch_json(view: batching.BatchView, tokenizer: Any) -> dict[str, Any]:
    rows = [{"index": r.index, "input_ids": r.input_ids, "target_ids": r.target_ids,
             "tokens": batching.token_text(tokenizer, r.input_ids), "kind": r.kinds,
             "truncated_ids": r.truncated_ids} for r in view.rows]
    return {"width": view.width, "real_tokens": view.real_tokens, "trained_tokens": view.trained_tokens,
            "computed_tokens": view.computed_tokens, "padding_fraction": round(view.padding_fraction, 4), "rows": rows}


def pairs_json(view: batching.BatchView, tokenizer: Any, mask: str) -> dict[str, Any]:
    """`batch_json` of a batch of pairs (the chosen rows, then the rejected ones), each row with its pair
    number (from 1) and side, and what DPO computes on them."""
    from .. import dpo

    shown = batch_json(view, tokenizer)
    n = len(view.rows) // 2
    for number, row in enumerate(shown["rows"]):
        row.update(pair=number % n + 1, side="chosen" if number < n else "rejected")
    return {"objective": "dpo", "pairs": n, **shown, "dpo": dpo.computes(mask)}


def batch_text(view: batching.BatchView, tokenizer: Any, width: int = 100) -> str:
    """Each sample as lines of positions: the input token over its target and what happens to it."""
    out = []
    for number, row in enumerate(view.rows, start=1):
        out += row_lines(f"sample {number} · record #{row.index}", row, tokenizer, width)
    return "\n".join(out + footer(view, f"batch {len(view.rows)}"))


def pairs_text(view: batching.BatchView, tokenizer: Any, mask: str, width: int = 100) -> str:
    """`batch_text` of a batch of pairs: each pair's chosen row, then its rejected row, and what DPO computes."""
    from .. import dpo

    out = []
    for number, (chosen, rejected) in enumerate(dpo.pair_rows(view), start=1):
        for side, row in (("chosen", chosen), ("rejected", rejected)):
            out += row_lines(f"pair {number} · record #{row.index} · {side}", row, tokenizer, width)
    return "\n".join(out + footer(view, f"batch of {len(view.rows) // 2} pairs: {len(view.rows)} rows")
                     + [dpo.computes(mask)])


def row_lines(title: str, row: batching.RowView, tokenizer: Any, width: int) -> list[str]:
    """One row's title with its trained targets, then its positions in blocks of labelled lines."""
    trained = sum(1 for t in row.target_ids if t != batching.IGNORE_INDEX)
    out = [f"{title} · {trained} trained targets"
           + (f" · {len(row.truncated_ids)} tokens truncated" if row.truncated_ids else "")]
    inputs, following = batching.token_text(tokenizer, row.input_ids), batching.token_text(tokenizer, row.next_ids)
    cells = [(str(p), inputs[p], following[p] if p < len(following) else "·", KIND_CODES[kind])
             for p, kind in enumerate(row.kinds)]
    return out + cell_lines(cells, width)


def footer(view: batching.BatchView, rows: str) -> list[str]:
    """The batch's size and counts, and what the kinds mean."""
    sizes = (f"{rows} × {view.width} · {view.real_tokens} real tokens · {view.trained_tokens} trained targets · "
             f"{view.computed_tokens} computed positions · {view.padding_fraction:.1%} padding")
    return [sizes, "kind: prompt/resp/eos trained; masked and pad are -100 (ignored by the loss)"]


def cell_lines(cells: list[tuple[str, str, str, str]], width: int) -> list[str]:
    """Cells of (position, input, target, kind) wrapped into blocks of four labelled lines, each block
    followed by an empty line."""
    out: list[str] = []
    line: list[tuple[str, ...]] = []
    for cell in [*cells, None]:
        size = sum(max(map(len, c)) + 1 for c in line)
        if line and (cell is None or size + max(map(len, cell)) + 8 > width):
            for label, part in zip(("pos", "input", "target", "kind"), zip(*line)):
                padded = "".join(text.ljust(max(map(len, c)) + 1) for text, c in zip(part, line))
                out.append(f"  {label:<7}{padded}".rstrip())
            out.append("")
            line = []
        if cell is not None:
            line.append(cell)
    return out


def add_parser(commands: Any) -> None:
    batch = commands.add_parser("batch", help="collate one training batch and show its targets")
    add_source(batch)
    add_style(batch)
    batch.add_argument("--batch-size", type=positive_int, default=8, help="samples per batch (default 8, the book's)")
    batch.add_argument("--max-length", type=positive_int)
    add_mask(batch, DEFAULTS.mask)
    add_batch_order(batch, DEFAULTS.batch_order)
    batch.add_argument("--drop-last", action="store_true", help="leave out the last, smaller batch of the epoch")
    batch.add_argument("--group-by-length", action=argparse.BooleanOptionalAction, default=False)
    batch.add_argument("--split", choices=["train", "validation", "test"], default="train")
    batch.add_argument("--number", type=non_negative_int, default=0, help="which batch of the epoch")
    batch.add_argument("--json", action="store_true", help="print the batch as JSON")
    batch.set_defaults(func=show_batch)
