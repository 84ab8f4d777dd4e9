"""What the benchmark scripts share: running one case in a fresh process and reading its figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_child(script: str, arguments: list[str], name: str) -> dict:
    """Run `script --child ...` in its own process (so peak memory is its own); return its CHILD json."""
    output = subprocess.run([sys.executable, script, *arguments], capture_output=True, text=True, cwd=ROOT)
    line = next((l for l in output.stdout.splitlines() if l.startswith("CHILD ")), None)
    if line is None:
        raise SystemExit(f"{name} failed:\n{output.stderr[-3000:]}")
    return json.loads(line[len("CHILD "):])
