"""`data validate` and `data check`: a dataset's records and splits, and its problems for given settings.

Neither imports torch: checking data counts trained targets with `batching.collate_arrays`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .. import data_checks
from .options import DEFAULTS, add_mask, add_source, add_style, load_dataset, load_tokenizer


def validate(args: argparse.Namespace) -> int:
    dataset = load_dataset(args.path, args)
    sizes = dataset.splits(seed=args.seed, order=args.split_order).sizes()
    print(f"{dataset.source}: {len(dataset)} records, {dataset.with_input} with an input")
    print(f"splits ({args.split_order}): train {sizes['train']}, validation {sizes['validation']}, "
          f"test {sizes['test']}")
    for row, first in dataset.duplicates[:20]:
        print(f"warning: record {row} repeats the instruction and input of record {first}")
    return 0


def check(args: argparse.Namespace) -> int:
    """Findings for a dataset trained with the given settings; outputs may be empty here, to be reported."""
    dataset = load_dataset(args.path, args, empty_outputs=True)
    tokenizer = load_tokenizer(args.tokenizer)
    settings = data_checks.CheckSettings(style=args.style, template=args.template, max_length=args.max_length or None,
                                         mask=args.mask, split_seed=args.seed, split_order=args.split_order)
    report = data_checks.check(dataset, tokenizer, settings)
    if args.json:
        print(json.dumps({"source": dataset.source, **report.to_json()}, ensure_ascii=False))
    else:
        print(f"{dataset.source}:")
        for line in data_checks.lines(report):
            print(line)
    return 0


def add_parser(commands: Any) -> None:
    actions = commands.add_parser("data", help="dataset commands").add_subparsers(dest="action", required=True)
    validating = actions.add_parser("validate", help="check a dataset; print record count and split sizes")
    add_source(validating)
    validating.set_defaults(func=validate)
    checking = actions.add_parser("check", help="find problems in a dataset for the given training settings")
    add_source(checking)
    add_style(checking)
    checking.add_argument("--split-seed", dest="seed", type=int,
                          help=f"the split seed training will use (default {DEFAULTS.split_seed})")
    checking.add_argument("--max-length", type=int, default=DEFAULTS.max_length,
                          help="training's max length (default %(default)s; 0: no truncation)")
    add_mask(checking, data_checks.CheckSettings.mask)
    checking.add_argument("--json", action="store_true", help="print the findings as JSON")
    checking.set_defaults(func=check)
