"""Command line beside the UI, on the same functions: `python -m playground --help`.

Each command is a module with `add_parser(commands)` (playground/commands/, and export/cli.py).
Only the module of the command asked for is imported, so that a command on data starts without
loading torch; `--help` and a mistyped command build the whole parser.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import PlaygroundError

# Each command's module, relative to this package, in the order `--help` lists them.
COMMANDS = {
    "data": ".commands.data",
    "prompt": ".commands.prompt",
    "batch": ".commands.batch",
    "train": ".commands.train",
    "chat": ".commands.chat",
    "inspect": ".commands.inspect",
    "compare": ".commands.compare",
    "judge": ".commands.judge",
    "export": ".export.cli",
}


def build_parser(names: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser of the commands in `names` (default: every command)."""
    parser = argparse.ArgumentParser(prog="python -m playground", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in names or COMMANDS:
        importlib.import_module(COMMANDS[name], __package__).add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    asked = argv[:1] if argv and argv[0] in COMMANDS else None
    args = build_parser(asked).parse_args(argv)
    quiet_libraries()
    try:
        return args.func(args)
    except PlaygroundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def quiet_libraries() -> None:
    """No "Loading weights" bars or deprecation notices from transformers, whenever it is imported.

    The environment variables reach a transformers imported later (commands import it only when
    they need it); one imported already is told directly."""
    import os
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
