"""The exports of a run, kept with it: one JSON line per export in `exports.jsonl` in the run folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import runs

FILE = "exports.jsonl"


def append(run_folder: Path, entry: dict[str, Any]) -> None:
    """Add one export's record; the file is rewritten atomically, so a crash never cuts a line."""
    path = run_folder / FILE
    before = path.read_text(encoding="utf-8") if path.exists() else ""
    if before and not before.endswith("\n"):
        before += "\n"
    runs.write_text(path, before + json.dumps(entry, ensure_ascii=False) + "\n")


def read(run_folder: Path) -> list[dict[str, Any]]:
    """The run's exports, oldest first (damaged lines skipped)."""
    path = run_folder / FILE
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
