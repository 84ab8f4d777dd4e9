"""`chat`: the tuned answer to one prompt beside that of the base model, or of another run or checkpoint
on the same base (`--against`), from one copy of the base weights."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .. import prompts, runs, store
from ..generation import GenerationSettings  # chat needs torch: so may its options
from ..model_refs import ModelRef
from .numbers import checkpoint_choice, positive_int


def names(other: ModelRef, tuned: ModelRef) -> tuple[str, str]:
    """How the output heads the two answers: Base and Tuned, or both models' labels when the run is
    compared with another run or checkpoint."""
    if other.is_base:
        return "Base", "Tuned"
    return other.label, tuned.label


def chat(args: argparse.Namespace) -> int:
    import psutil

    from ..generation import generate
    from ..manager import ModelManager

    args.run = runs.check_run_id(args.models_dir, args.run)
    against = ModelRef.parse(args.against)
    if not against.is_base:
        runs.check_run_id(args.models_dir, against.run_id)
    manager = ModelManager(args.models_dir)
    record = runs.read(args.models_dir, args.run)
    spec = record.config.model
    manager.model(spec)
    process = psutil.Process()
    rss_base = process.memory_info().rss
    before = manager.memory_report()
    tuned, _ = manager.tuned_side(args.run, args.checkpoint)
    other = manager.side(against, spec)
    after = manager.memory_report()
    rss_both = process.memory_info().rss
    tokenizer = manager.tokenizer(spec)
    style = record.config.style
    prompt = prompts.conversation([], args.prompt, style, tokenizer, record.config.template, args.raw,
                                  input_text=args.input or "")
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, seed=args.seed)
    other_answer, tuned_answer = generate([(other, prompt), (tuned, prompt)], tokenizer, style, settings)
    tuned_ref = ModelRef.parse(args.run if args.checkpoint is None else f"{args.run}@{args.checkpoint}")
    other_name, tuned_name = names(against, tuned_ref)
    print(f"{other_name}:\n{other_answer}\n\n{tuned_name}:\n{tuned_answer}")
    alone = before["base"]
    both = after["base"] + after["adapters"] + after["full_copies"]
    what = "tuned" if against.is_base else "both sides"
    print(f"memory (parameters): base alone {alone / 2**20:,.1f} MiB, base + {what} {both / 2**20:,.1f} MiB "
          f"({both / alone:.3f}x); process RSS {rss_base / 2**20:,.0f} MiB -> {rss_both / 2**20:,.0f} MiB "
          f"({rss_both / rss_base:.3f}x)", file=sys.stderr)
    return 0


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("chat", help="the tuned answer to one prompt beside the base model's (or --against's)")
    parser.add_argument("--run", required=True, help="a run id: the name of a folder under MODELS_DIR/runs/")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--input", help="the record's Input section (the book's records have one)")
    parser.add_argument("--checkpoint", type=checkpoint_choice, metavar="STEP",
                        help="answer with the run's checkpoint at STEP, or 'best': the one whose answers scored best "
                             "while it trained (train --score-answers-every)")
    parser.add_argument("--max-new-tokens", type=positive_int, default=GenerationSettings.max_new_tokens)
    parser.add_argument("--seed", type=int, default=GenerationSettings.seed)
    parser.add_argument("--raw", action="store_true", help="send the prompt as typed, with no template")
    parser.add_argument("--against", default="base", metavar="REF",
                        help="the model that answers beside the run: 'base' (the default), another run on the same "
                             "base model, or RUN@STEP for one of its checkpoints")
    parser.add_argument("--models-dir", type=Path, default=store.MODELS_DIR)
    parser.set_defaults(func=chat)
