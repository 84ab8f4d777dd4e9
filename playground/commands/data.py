"""`data validate` and `data check`: a dataset's records and splits, and its problems for given settings;
`data pairs`: a new preference dataset from runs' votes and pairwise verdicts, or a served model's rewrites.

Neither imports torch: checking data counts trained targets with `batching.collate_arrays`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .. import data_checks, pair_diff, store
from ..errors import PlaygroundError
from .options import (DEFAULTS, add_file_options, add_mask, add_skip_bad_rows, add_source, add_style, load_dataset,
                      load_tokenizer)
from .numbers import positive_int


def validate(args: argparse.Namespace) -> int:
    dataset = load_dataset(args.path, args)
    splits = dataset.splits(seed=args.seed, order=args.split_order)
    sizes = splits.sizes()
    kind = "preference pairs (chosen and rejected)" if dataset.is_preference else "records"
    print(f"{dataset.source}: {len(dataset)} {kind}, {dataset.with_input} with an input")
    print(f"splits ({args.split_order}): train {sizes['train']}, validation {sizes['validation']}, "
          f"test {sizes['test']}")
    if dataset.is_preference:
        print(pair_words(dataset.records))
        for finding in data_checks.pair_findings(dataset.records, splits):
            if finding.count:
                print(f"warning: {finding.count:,} {finding.title} (records "
                      f"{', '.join(map(str, finding.shown()))}{' …' if finding.count > data_checks.SHOWN else ''}): "
                      f"{finding.advice}")
    elif dataset.duplicates:  # several pairs per prompt are usual in a preference dataset
        for row, first in dataset.duplicates[:20]:
            print(f"warning: record {row} repeats the instruction and input of record {first}")
    return 0


DIFFED = 1000  # pairs compared word by word for `data validate`'s summary


def pair_words(records: list[Any]) -> str:
    """How the chosen and rejected responses differ, word by word, over the first DIFFED pairs."""
    diffs = [pair_diff.word_diff(r.chosen, r.rejected) for r in records[:DIFFED]]
    over = f" (the first {DIFFED:,} pairs)" if len(records) > DIFFED else ""
    return f"chosen against rejected, word by word{over}: {pair_diff.typical(diffs)}"


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


def pairs(args: argparse.Namespace) -> int:
    """`data pairs`: a new preference file from runs' votes and pairwise verdicts, each pair with its provenance."""
    from .. import preference

    if not (args.from_votes or args.from_grading or args.rewrite):
        raise PlaygroundError("Name a source: --from-votes RUN, --from-grading RUN and/or --rewrite PATH.")
    found = preference.Collected()
    if args.rewrite:
        found.extend(rewritten(args))
    for run in args.from_votes or []:
        found.extend(preference.pairs_from_votes(args.models_dir, run))
    for run in args.from_grading or []:
        found.extend(preference.pairs_from_grading(args.models_dir, run, args.scores))
    found = preference.combined(found)
    for reason, count in found.left_out.items():
        print(f"left out: {count} {reason}", file=sys.stderr)
    path = preference.write_pairs(args.out, found.pairs)
    print(f"{len(found.pairs)} preference pairs written to {path}")
    return 0


def rewritten(args: argparse.Namespace) -> Any:
    """`--rewrite PATH`: pairs of the dataset's outputs and a served model's politer or ruder rewrites."""
    from ..judge.settings import JudgeSettings, default_host
    from ..rewrites import rewrite_pairs

    dataset = load_dataset(args.rewrite, args)
    records = dataset.records[:args.limit] if args.limit else dataset.records
    settings = JudgeSettings(host=args.host or default_host(args.api), model=args.judge_model, api=args.api)
    return rewrite_pairs(records, settings, args.models_dir, args.seed, print_rewritten)


def print_rewritten(done: int, total: int) -> None:
    """`--rewrite`'s progress on stderr: every tenth record, and the last."""
    if done == total or done % 10 == 0:
        print(f"rewritten {done} of {total}", file=sys.stderr)


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
    checking.add_argument("--max-length", type=positive_int, default=DEFAULTS.max_length,
                          help="training's max length (default %(default)s; 0: no truncation)")
    add_mask(checking, data_checks.CheckSettings.mask)
    checking.add_argument("--json", action="store_true", help="print the findings as JSON")
    checking.set_defaults(func=check)
    pairing = actions.add_parser("pairs", help="write a new preference dataset (for DPO) from runs' blind votes "
                                               "and pairwise verdicts, each pair with its provenance")
    pairing.add_argument("--from-votes", action="append", metavar="RUN",
                         help="the run's blind votes: the winner's answer is chosen (ties and 'both bad' left out)")
    pairing.add_argument("--from-grading", action="append", metavar="RUN",
                         help="the run's pairwise verdicts where the judge chose the same answer in both orders")
    pairing.add_argument("--scores", metavar="PATH", help="one grading's scores file, as a path inside the run's "
                                                          "folder (judge/GRADING/scores-....json); default: all")
    pairing.add_argument("--rewrite", metavar="PATH",
                         help="a dataset whose outputs a served model rewrites slightly politer or ruder (drawn per "
                              "record, seeded), as the book's create-preference-data-ollama notebook: the polite "
                              "rewrite chosen over the output, the output over the impolite one")
    pairing.add_argument("--api", default="ollama", help="--rewrite: the server's protocol, ollama or openai (the judge's "
                                                         "backends; imported only when asked, like the judge)")
    pairing.add_argument("--host", help="--rewrite: the server (default: the protocol's usual address)")
    pairing.add_argument("--judge-model", default="llama3", help="--rewrite: the model that rewrites")
    pairing.add_argument("--limit", type=positive_int, help="--rewrite: only the first N records")
    pairing.add_argument("--seed", type=int, default=123, help="--rewrite: which records turn polite or impolite")
    add_file_options(pairing)
    add_skip_bad_rows(pairing)
    pairing.add_argument("--out", type=Path, required=True, help="the new file (an existing one is never replaced)")
    pairing.add_argument("--models-dir", type=Path, default=store.MODELS_DIR)
    pairing.set_defaults(func=pairs)
