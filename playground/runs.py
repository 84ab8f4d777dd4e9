"""The on-disk record of fine-tuning runs: `models/runs/<run-id>/`.

Each run folder holds:
  config.json     the settings, the base model, the prompt style and tokenizer facts
  status.json     state (running, finished, stopped, failed), message, step, process id, times
  metrics.jsonl   one JSON line per logged step (train loss, validation loss, tokens/s, probes)
  adapter/        the LoRA adapter (peft, safetensors), or
  weights/        the fully fine-tuned model (safetensors)
JSON files are written to a temporary name and renamed, so a crash never leaves half a file. A run
whose status says running but whose process is gone, or that this process no longer runs, is
listed as interrupted.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import PlaygroundError

ACTIVE: set[str] = set()  # run ids this process is training right now


def write_text(path: Path, text: str) -> None:
    """Write a file atomically: a temporary file beside it, renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def write_json(path: Path, value: Any) -> None:
    write_text(path, json.dumps(value, indent=1, ensure_ascii=False))


def runs_dir(models_dir: Path) -> Path:
    return Path(models_dir) / "runs"


def new_run_id(models_dir: Path, method: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_id, n = f"{stamp}-{method}", 1
    while (runs_dir(models_dir) / run_id).exists():
        n += 1
        run_id = f"{stamp}-{method}-{n}"
    return run_id


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class RunRecord:
    run_id: str
    folder: Path
    config: dict[str, Any]
    status: dict[str, Any]

    @property
    def state(self) -> str:
        state = self.status.get("state", "unknown")
        if state == "running":
            pid = self.status.get("pid")
            mine = pid == os.getpid()
            if (mine and self.run_id not in ACTIVE) or (not mine and not (pid and _alive(pid))):
                return "interrupted"
        return state

    @property
    def settings(self) -> dict[str, Any]:
        return self.config.get("settings", {})

    @property
    def has_weights(self) -> bool:
        return (self.folder / "adapter").is_dir() or (self.folder / "weights").is_dir()

    def metrics(self) -> list[dict[str, Any]]:
        path = self.folder / "metrics.jsonl"
        if not path.exists():
            return []
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a crash
                continue
        return rows


class RunWriter:
    """Writes one run's files as it goes."""

    def __init__(self, models_dir: Path, run_id: str, config: dict[str, Any]):
        self.run_id = run_id
        self.folder = runs_dir(models_dir) / run_id
        self.folder.mkdir(parents=True, exist_ok=False)
        write_json(self.folder / "config.json", config)
        self.started = time.time()
        self.status("running", "started", step=0)

    def status(self, state: str, message: str, **extra: Any) -> None:
        write_json(self.folder / "status.json", {"state": state, "message": message, "pid": os.getpid(),
                                                 "started": self.started, "updated": time.time(), **extra})

    def log(self, row: dict[str, Any]) -> None:
        with open(self.folder / "metrics.jsonl", "a", encoding="utf-8") as file:
            file.write(json.dumps(row, ensure_ascii=False) + "\n")
            file.flush()


def read(models_dir: Path, run_id: str) -> RunRecord:
    folder = runs_dir(models_dir) / run_id
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        status = json.loads((folder / "status.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlaygroundError(f"No run '{run_id}' under {runs_dir(models_dir)}.") from None
    except json.JSONDecodeError as exc:
        raise PlaygroundError(f"Run '{run_id}': a damaged file ({exc}).") from None
    return RunRecord(run_id, folder, config, status)


def list_runs(models_dir: Path) -> list[RunRecord]:
    """Every run, newest first; damaged folders are skipped."""
    folder = runs_dir(models_dir)
    records = []
    for child in sorted(folder.iterdir(), reverse=True) if folder.exists() else []:
        if child.is_dir() and not child.name.startswith("."):
            try:
                records.append(read(models_dir, child.name))
            except PlaygroundError:
                continue
    return records
