"""`chat`: the base and the tuned answer to one prompt, from one copy of the base weights."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .. import prompts, runs, store
from ..generation import GenerationSettings  # chat needs torch: so may its options
from .numbers import positive_int


def chat(args: argparse.Namespace) -> int:
    import psutil

    from ..generation import generate
    from ..manager import ModelManager

    args.run = runs.check_run_id(args.models_dir, args.run)
    manager = ModelManager(args.models_dir)
    record = runs.read(args.models_dir, args.run)
    spec = record.config.model
    manager.model(spec)
    process = psutil.Process()
    rss_base = process.memory_info().rss
    before = manager.memory_report()
    tuned, _ = manager.tuned_side(args.run, args.checkpoint)
    after = manager.memory_report()
    rss_both = process.memory_info().rss
    base = manager.base_side(spec)
    tokenizer = manager.tokenizer(spec)
    style = record.config.style
    prompt = prompts.conversation([], args.prompt, style, tokenizer, record.config.template, args.raw,
                                  input_text=args.input or "")
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, seed=args.seed)
    base_answer, tuned_answer = generate([(base, prompt), (tuned, prompt)], tokenizer, style, settings)
    print(f"Base:\n{base_answer}\n\nTuned:\n{tuned_answer}")
    alone = before["base"]
    both = after["base"] + after["adapters"] + after["full_copies"]
    print(f"memory (parameters): base alone {alone / 2**20:,.1f} MiB, base + tuned {both / 2**20:,.1f} MiB "
          f"({both / alone:.3f}x); process RSS {rss_base / 2**20:,.0f} MiB -> {rss_both / 2**20:,.0f} MiB "
          f"({rss_both / rss_base:.3f}x)", file=sys.stderr)
    return 0


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("chat", help="the base and the tuned answer to one prompt")
    parser.add_argument("--run", required=True, help="a run id: the name of a folder under MODELS_DIR/runs/")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--input", help="the record's Input section (the book's records have one)")
    parser.add_argument("--checkpoint", type=int, metavar="STEP", help="answer with the run's checkpoint at STEP")
    parser.add_argument("--max-new-tokens", type=positive_int, default=GenerationSettings.max_new_tokens)
    parser.add_argument("--seed", type=int, default=GenerationSettings.seed)
    parser.add_argument("--raw", action="store_true", help="send the prompt as typed, with no template")
    parser.add_argument("--models-dir", type=Path, default=store.MODELS_DIR)
    parser.set_defaults(func=chat)
