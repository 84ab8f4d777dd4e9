"""Options several commands share, with their defaults from the settings, and the loading they drive."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import data, prompts, store
from ..errors import PlaygroundError
from .numbers import positive_int, positive_number
from ..settings import BATCH_ORDERS, MASKS, TrainConfig

DEFAULTS = TrainConfig()
MASK_HELP = ("which prompt targets are -100: none; prompt (the whole prompt, response header included); "
             "instruction (instruction and input only: the book's exercise 7.2)")
BATCH_ORDER_HELP = ("shuffled with the seed, or book: the book's DataLoader order (torch.manual_seed(SEED), "
                    "shuffle=True), batch for batch")
SPLIT_ORDER_HELP = "shuffled with the split seed, or book: in file order, as the book slices it"


def parse_mapping(text: str | None) -> dict[str, str] | None:
    """`instruction=question,output=answer` -> {"instruction": "question", "output": "answer"}."""
    if not text:
        return None
    mapping = {}
    for part in text.split(","):
        name, sep, column = part.partition("=")
        if not sep or not name.strip() or not column.strip():
            raise PlaygroundError(f"--mapping: expected field=column pairs separated by commas, got {part!r}")
        mapping[name.strip()] = column.strip()
    return mapping


def add_file_options(parser: argparse.ArgumentParser) -> None:
    """How a dataset file is read: its column mapping and the limits on its size."""
    parser.add_argument("--mapping", help="column mapping, e.g. instruction=question,output=answer")
    parser.add_argument("--max-file-mb", type=positive_number, default=data.DEFAULT_MAX_MB)
    parser.add_argument("--max-records", type=positive_int, default=data.DEFAULT_MAX_RECORDS, help="most records accepted")


def add_skip_bad_rows(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--skip-bad-rows", action="store_true",
                        help="load the good rows of a file with bad ones and list each bad row with its reason")


def add_source(parser: argparse.ArgumentParser) -> None:
    """A dataset to read, and the split seed and order of its train, validation and test records."""
    parser.add_argument("path", help="dataset file, URL, Hugging Face dataset id, or 'builtin'")
    add_file_options(parser)
    parser.add_argument("--seed", type=int, default=DEFAULTS.split_seed, help="split and shuffle seed")
    parser.add_argument("--split-order", choices=list(data.SPLIT_ORDERS), default=DEFAULTS.split_order,
                        help=SPLIT_ORDER_HELP)
    add_skip_bad_rows(parser)


def add_style(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--style", choices=list(prompts.STYLES), default=DEFAULTS.style)
    parser.add_argument("--template", help="custom template with {instruction}, {input}, {output}")
    parser.add_argument("--tokenizer", default=store.DEFAULT,
                        help="'default', a Hugging Face id or a folder, or gpt2-tiktoken (the book's GPT-2 tokenizer; "
                             "a folder holding the book's vocab.bpe and encoder.json is the same)")


def add_mask(parser: argparse.ArgumentParser, default: str | None, note: str = "") -> None:
    parser.add_argument("--mask", choices=list(MASKS), default=default, help=MASK_HELP + note)


def add_batch_order(parser: argparse.ArgumentParser, default: str | None, note: str = "") -> None:
    parser.add_argument("--batch-order", choices=list(BATCH_ORDERS), default=default, help=BATCH_ORDER_HELP + note)


def add_against(parser: argparse.ArgumentParser, what: str) -> None:
    """`--against REF`: the model a run is compared with, in the base model's place."""
    parser.add_argument("--against", default="base", metavar="REF",
                        help=f"the model {what}, in the base model's place: 'base' (default), another run on the "
                             "same base model (RUN) or one of a run's checkpoints (RUN@STEP)")


def checked_against(models_dir: Path, text: str | None) -> str:
    """The `model_refs` text `--against` names, its run checked to be a folder of the store."""
    from .. import runs
    from ..model_refs import ModelRef

    ref = ModelRef.parse(text)
    if not ref.is_base:
        runs.check_run_id(models_dir, ref.run_id)  # a reference holds a bare run id: the same name comes back
    return str(ref)


def load_dataset(source: str, args: argparse.Namespace, empty_outputs: bool = False) -> data.Dataset:
    """The dataset at `source`, read with the file options; the rows it skipped are listed on stderr."""
    dataset = data.load(source, parse_mapping(args.mapping), args.max_file_mb, args.max_records,
                        empty_outputs=empty_outputs, skip_bad_rows=args.skip_bad_rows)
    print_skipped(dataset)
    return dataset


def print_skipped(dataset: data.Dataset) -> None:
    """Every row left out by --skip-bad-rows, with its reason (on stderr)."""
    for _, why in dataset.skipped:
        print(f"skipped: {why}", file=sys.stderr)
    if dataset.skipped:
        print(f"skipped {len(dataset.skipped)} bad row(s); loaded {len(dataset)}", file=sys.stderr)


def load_tokenizer(spec: str, models_dir: Path | None = None) -> object:
    """A tokenizer by name: the book's GPT-2 through tiktoken (by name, or a folder holding the book's
    vocab.bpe and encoder.json), else `store.load_tokenizer`."""
    from .. import tiktoken_tokenizer

    if spec == tiktoken_tokenizer.NAME:
        return tiktoken_tokenizer.load()
    if tiktoken_tokenizer.is_book_folder(spec):
        return tiktoken_tokenizer.load(folder=spec)
    return store.load_tokenizer(spec, models_dir)
