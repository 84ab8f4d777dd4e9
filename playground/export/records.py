"""The exports of a run, kept with it: one JSON line per export in `exports.jsonl` in the run folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import runs

FILE = "exports.jsonl"


def append(run_folder: Path, entry: dict[str, Any]) -> None:
    """Add one export's record; the file is rewritten atomically, so a crash never cuts a line."""
    rows = [*read(run_folder), entry]
    runs.write_text(run_folder / FILE, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows),
                    inside=run_folder.parent)


def read(run_folder: Path) -> list[dict[str, Any]]:
    """The run's exports, oldest first; a damaged file refuses the run (`runs.DamagedRun`)."""
    return runs.read_file(run_folder, FILE) or []
