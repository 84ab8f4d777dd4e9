"""What the benchmark scripts share: running one case in a fresh process and reading its figures,
sampling its peak memory, and the files of tiny records they load."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
MIB = 2**20


def run_child(script: str, arguments: list[str], name: str) -> dict:
    """Run `script --child ...` in its own process (so peak memory is its own); return its CHILD json."""
    output = subprocess.run([sys.executable, script, *arguments], capture_output=True, text=True, cwd=ROOT)
    line = next((l for l in output.stdout.splitlines() if l.startswith("CHILD ")), None)
    if line is None:
        raise SystemExit(f"{name} failed:\n{output.stderr[-3000:]}")
    return json.loads(line[len("CHILD "):])


def parse_or_run_child(doc: str, child: Callable[[str, str], None]) -> argparse.Namespace | None:
    """The arguments of a memory benchmark (--quick: 10k and 100k records only); or, when called as
    `--child METHOD FILE` by run_child, run that one case and return None. Prints the machine line."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10k and 100k records only")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return None
    print(f"machine: {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs")
    return args


def write_file(path: Path, n: int) -> None:
    with open(path, "w", encoding="utf-8") as file:
        file.write("[")
        for i in range(n):
            record = {"instruction": f"Say {i}.", "input": "", "output": str(i)}
            file.write(("," if i else "") + json.dumps(record))
        file.write("]")


class Sampler:
    """The largest RSS seen by psutil while a block runs (a cross-check of ru_maxrss)."""

    def __init__(self) -> None:
        import psutil

        self.process, self.peak, self.done = psutil.Process(), 0, threading.Event()

    def __enter__(self) -> "Sampler":
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()
