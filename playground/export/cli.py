"""`python -m playground export`: one run exported to a folder, with progress and the files it wrote."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .. import store
from ..commands.progress import ProgressReport
from .formats import FORMATS
from .gguf_file import QUANT_NOTE, QUANTS
from ..errors import PlaygroundError
from ..commands.numbers import checkpoint_choice, non_negative_int, positive_int


def cmd_export(args: argparse.Namespace) -> int:
    from ..manager import ModelManager

    if args.compare_quants:
        return compare_quants(args)
    from .runner import ExportRequest, export_run

    if not args.format:
        raise PlaygroundError("Give --format (or --compare-quants alone, to measure every GGUF type).")
    request = ExportRequest(run_id=args.run, format=args.format, out=args.out, quant=args.quant, force=args.force,
                            parity_count=args.parity, max_new_tokens=args.max_new_tokens,
                            ollama_host=args.host, ollama_name=args.name, create_on_server=not args.no_create,
                            checkpoint=args.checkpoint)
    manager = ModelManager(args.models_dir, dtype=args.dtype)
    progress = ProgressReport()
    try:
        result = export_run(manager, request, on_progress=progress)
    finally:
        progress.close()
    for line in result.lines():
        print(line)
    return 0


def compare_quants(args: argparse.Namespace) -> int:
    """Every GGUF type of the run measured against the app; then the export asked for, if a format was given."""
    from ..manager import ModelManager

    from .parity import COST_COLUMNS
    from .runner import compare_quants as measure

    manager = ModelManager(args.models_dir, dtype=args.dtype)
    progress = ProgressReport()
    try:
        rows = [cost.row() for cost in measure(manager, args.run, args.parity, args.max_new_tokens,
                                               on_progress=progress, checkpoint=args.checkpoint)]
    finally:
        progress.close()
    print(f"What each GGUF type costs against the app, on {args.parity} records of run {args.run}'s test split:")
    print(table([list(COST_COLUMNS), *rows]))
    if args.format:
        args.compare_quants = False
        return cmd_export(args)
    return 0


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[n]) for row in rows) for n in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows)


def formats_with(fact: str) -> str:
    """The formats an option applies to, for its help: "(gguf, ollama)"."""
    return "(" + ", ".join(name for name, fmt in FORMATS.items() if getattr(fmt, fact)) + ")"


def add_parser(commands: Any) -> None:
    export = commands.add_parser("export", help="export a run: " + ", ".join(fmt.label for fmt in FORMATS.values()),
                                 description=f"Export a run's tuned model. The exports {formats_with('parity')} end "
                                             "with a parity check: the run's test prompts answered by llama.cpp and "
                                             "by the app. " + QUANT_NOTE)
    export.add_argument("--run", required=True, help="a run id: the name of a folder under MODELS_DIR/runs/")
    export.add_argument("--checkpoint", type=checkpoint_choice, metavar="STEP",
                        help="export the run's checkpoint at STEP, or 'best': the one whose answers scored best while "
                             "it trained (default: the run's final weights)")
    export.add_argument("--format", choices=list(FORMATS),
                        help="; ".join(f"{name}: {fmt.label}" for name, fmt in FORMATS.items()))
    export.add_argument("--quant", default="f16", type=str.lower, choices=list(QUANTS),
                        help=f"GGUF type {formats_with('quantised')}: " + ", ".join(QUANTS))
    export.add_argument("--out", type=Path, help="the folder to create (default: the run's exports/FORMAT[-QUANT][-stepN])")
    export.add_argument("--force", action="store_true", help="replace an earlier export in --out")
    export.add_argument("--parity", type=non_negative_int, default=10,
                        help=f"test prompts for the parity check {formats_with('parity')}")
    export.add_argument("--max-new-tokens", type=positive_int, default=64, help="answer length in the parity check")
    export.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                        help="the app's dtype for its side of the parity check (auto: bfloat16 on a CPU for Gemma)")
    export.add_argument("--host", help="Ollama server (default: $OLLAMA_HOST or http://127.0.0.1:11434)")
    export.add_argument("--name", help="the Ollama model's name (default: playground-RUN)")
    export.add_argument("--no-create", action="store_true", help="write the Modelfile only; print the create command")
    export.add_argument("--compare-quants", action="store_true",
                        help="first export every GGUF type to a temporary folder and print what each costs against "
                             "the app on --parity test records (size, speed, top-1 agreement, KL, exact match); "
                             "then the export --format asks for, if given")
    export.add_argument("--models-dir", type=Path, default=store.MODELS_DIR)
    export.set_defaults(func=cmd_export)
