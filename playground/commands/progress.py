"""Progress of long commands (judging, exporting) on stderr."""

from __future__ import annotations

import sys


class ProgressReport:
    """A tqdm bar on a terminal; elsewhere (a log file, a pipe) one plain line per change of message."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=100, file=sys.stderr, bar_format="{percentage:3.0f}%|{bar:30}| {desc}") \
            if sys.stderr.isatty() else None
        self.last = ""

    def __call__(self, fraction: float, text: str) -> None:
        if self.bar is not None:
            self.bar.n = round(fraction * 100)
            self.bar.set_description_str(text)
            self.bar.refresh()
        elif text != self.last:
            print(f"{fraction:4.0%} {text}", file=sys.stderr, flush=True)
            self.last = text

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
