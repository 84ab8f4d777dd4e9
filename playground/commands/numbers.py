"""Number options, checked where they are parsed (standard library only: app.py reads them before
its splash page is up). `--max-file-mb -5` or `--limit nan` is refused with the option's name."""

from __future__ import annotations

import argparse
import math
from typing import Any

from ..model_refs import BEST  # plain Python too


def _number(kind: type, least: float, what: str) -> Any:
    """An argparse type: a finite number of `kind` of at least `least`, or an error saying so."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value) or value < least:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value
    parse.__name__ = what  # argparse names the type in its message
    return parse


# Number options are checked where they are parsed: `--max-file-mb -5` is refused, not accepted.
positive_int = _number(int, 1, "a whole number of at least 1")
non_negative_int = _number(int, 0, "a whole number of 0 or more")
positive_number = _number(float, 1e-9, "a positive number")
non_negative_number = _number(float, 0, "a number of 0 or more")


def checkpoint_choice(text: str) -> int | str:
    """`--checkpoint`: a step (a whole number of 0 or more) or 'best'."""
    if text.strip().lower() == BEST:
        return BEST
    try:
        return non_negative_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a step (a whole number) nor '{BEST}'") from None
