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
    batch = batching.training_batch(dataset.records, split, tokenizer, args.style, args.batch_size,
                                    args.number, args.max_length, args.mask, args.group_by_length, args.seed,
                                    args.template, drop_last=args.drop_last, order=args.batch_order)
    view = batching.describe(batch)
    if args.json:
        print(json.dumps(batch_json(view, tokenizer), ensure_ascii=False))
    else:
        print(batch_text(view, tokenizer))
    return 0


def batch_json(view: batching.BatchView, tokenizer: Any) -> dict[str, Any]:
    rows = [{"index": r.index, "input_ids": r.input_ids, "target_ids": r.target_ids,
             "tokens": batching.token_text(tokenizer, r.input_ids), "kind": r.kinds,
             "truncated_ids": r.truncated_ids} for r in view.rows]
    return {"width": view.width, "real_tokens": view.real_tokens, "trained_tokens": view.trained_tokens,
            "computed_tokens": view.computed_tokens, "padding_fraction": round(view.padding_fraction, 4), "rows": rows}


def batch_text(view: batching.BatchView, tokenizer: Any, width: int = 100) -> str:
    """Each sample as lines of positions: the input token over its target and what happens to it."""
    out = []
    for number, row in enumerate(view.rows, start=1):
        trained = sum(1 for t in row.target_ids if t != batching.IGNORE_INDEX)
        out.append(f"sample {number} · record #{row.index} · {trained} trained targets"
                   + (f" · {len(row.truncated_ids)} tokens truncated" if row.truncated_ids else ""))
        inputs, following = batching.token_text(tokenizer, row.input_ids), batching.token_text(tokenizer, row.next_ids)
        cells = [(str(p), inputs[p], following[p] if p < len(following) else "·", KIND_CODES[kind])
                 for p, kind in enumerate(row.kinds)]
        out += cell_lines(cells, width)
    out.append(f"batch {len(view.rows)} × {view.width} · {view.real_tokens} real tokens · {view.trained_tokens} "
               f"trained targets · {view.computed_tokens} computed positions · {view.padding_fraction:.1%} padding")
    out.append("kind: prompt/resp/eos trained; masked and pad are -100 (ignored by the loss)")
    return "\n".join(out)


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
