"""`inspect`: what a fine-tune changed, per response token (base and tuned probability, loss, KL),
or the mean response loss per task family; `--against` puts another model in the base model's place."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .. import data, runs, store
from ..errors import PlaygroundError
from .numbers import non_negative_int, positive_int
from .options import add_against, checked_against


def inspect_run(args: argparse.Namespace) -> int:
    from ..manager import ModelManager

    args.run = runs.check_run_id(args.models_dir, args.run)
    args.against = checked_against(args.models_dir, args.against)
    manager = ModelManager(args.models_dir)
    if args.families:
        return print_families(manager, args)
    if (args.instruction or args.input) and args.reference is None:
        raise PlaygroundError("--instruction needs --reference: the answer both models read, token by token.")
    from .. import inspection

    if args.reference is not None:
        typed = data.Record(args.instruction or "", args.input or "", args.reference)
        result = inspection.inspect_record(manager, args.run, typed, against=args.against)
    else:
        result = inspection.inspect_example(manager, args.run, args.split, args.index, args.against)
    if args.json:
        for row in result.tokens:
            print(json.dumps(row.as_row(), ensure_ascii=False))
        return 0
    print_tokens(result)
    return 0


def print_families(manager: Any, args: argparse.Namespace) -> int:
    from .. import inspection

    families = inspection.family_losses(manager, args.run, args.split, args.limit, against=args.against)
    if args.json:
        print(json.dumps([vars(f) for f in families], ensure_ascii=False))
        return 0
    print_against(args.against)
    print(f"{'task family':<28} {'records':>7} {'tokens':>7} {'base loss':>10} {'tuned loss':>10}")
    for f in families:
        print(f"{f.family[:28]:<28} {f.records:>7} {f.tokens:>7} {f.base_loss:>10.3f} {f.tuned_loss:>10.3f}")
    return 0


def print_against(against: str) -> None:
    """Which model the "base" columns are, when it is not the base model."""
    from ..model_refs import side_name

    if against != "base":
        print(f"compared with {side_name(against)}: the base columns are its figures, the KL is "
              f"KL(tuned || {side_name(against)})")


def print_tokens(result: Any) -> None:
    print(f"{result.source}: {len(result.tokens)} response tokens" + (" (cut at the run's max length)"
                                                                        if result.truncated else ""))
    print_against(result.against)
    print(f"{'token':<16} {'base p':>8} {'tuned p':>8} {'base loss':>10} {'tuned loss':>10} {'KL':>8}")
    for row in result.tokens:
        print(f"{row.token[:16]:<16} {row.base_prob:>8.4f} {row.tuned_prob:>8.4f} {row.base_loss:>10.3f} "
              f"{row.tuned_loss:>10.3f} {row.kl:>8.3f}")
    for side, totals in result.totals.items():
        shown = {k: "-" if v is None else f"{v:.3f}" for k, v in totals.items()}
        side = result.against_label if side == "base" else side
        print(f"{side}: mean loss on prompt tokens {shown['prompt_loss']}, on response tokens {shown['response_loss']}")


def add_parser(commands: Any) -> None:
    look = commands.add_parser("inspect", help="what the fine-tune changed: per response token, base and tuned "
                                               "probability, loss and KL; or loss by task family")
    look.add_argument("--run", required=True, help="a run id: the name of a folder under MODELS_DIR/runs/")
    look.add_argument("--split", choices=["train", "validation", "test"], default="test", help="the run's own split")
    look.add_argument("--index", type=non_negative_int, default=0, help="which example of the split (0: the first)")
    look.add_argument("--instruction", help="inspect this typed text instead (with --reference)")
    look.add_argument("--input", help="the typed text's input section")
    look.add_argument("--reference", help="the reference answer the models read (needed for typed text)")
    look.add_argument("--families", action="store_true", help="mean response loss per task family on --split")
    look.add_argument("--limit", type=positive_int, help="with --families: only the first N examples of the split")
    look.add_argument("--json", action="store_true", help="JSON lines, one per response token (token, base_prob, "
                                                          "tuned_prob, base_loss, tuned_loss, kl)")
    add_against(look, "whose figures stand beside the run's (the base_ figures; KL(tuned || it))")
    look.add_argument("--models-dir", type=Path, default=store.MODELS_DIR)
    look.set_defaults(func=inspect_run)
