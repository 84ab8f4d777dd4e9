"""`prompt`: one record's training text in a prompt style."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import prompts
from ..errors import PlaygroundError
from .options import add_source, add_style, load_dataset, load_tokenizer
from .numbers import non_negative_int


def show_prompt(args: argparse.Namespace) -> int:
    dataset = load_dataset(args.path, args)
    if not 0 <= args.index < len(dataset):
        raise PlaygroundError(f"--index {args.index} is out of range: the dataset has {len(dataset)} records")
    tokenizer = load_tokenizer(args.tokenizer)
    rendered = prompts.render(dataset.records[args.index], args.style, tokenizer, args.template)
    sys.stdout.write(rendered.training_text + "\n")
    return 0


def add_parser(commands: Any) -> None:
    prompt = commands.add_parser("prompt", help="print one record's training text in a style")
    add_source(prompt)
    add_style(prompt)
    prompt.add_argument("--index", type=non_negative_int, default=0)
    prompt.set_defaults(func=show_prompt)
