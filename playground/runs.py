"""The on-disk record of fine-tuning runs: `models/runs/<run-id>/`.

Each run folder holds:
  config.json     the settings, the base model, the prompt style and tokenizer facts
  status.json     state (running, finished, stopped, failed), message, step, process id and its
                  start time, times
  metrics.jsonl   one JSON line per logged step (train loss, validation loss, tokens/s, probes)
  adapter/        the LoRA adapter (peft, safetensors), or
  weights/        the fully fine-tuned model (safetensors)
JSON files are written to a temporary name and renamed, so a crash never leaves half a file. A run
whose status says running but whose process is gone (or whose process id now belongs to a process
started at another time), or that this process no longer runs, is listed as interrupted.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from .errors import PlaygroundError

ACTIVE: set[str] = set()  # run ids this process is training right now
_ISSUED: set[str] = set()  # run ids this process has given out
SAVING = ".saving"  # where a run's adapter or weights are written before they are moved into place
# Start times read through /proc can differ by a second between reads (the boot time is derived);
# a process id reused within two seconds of the original process's start is not a real concern.
START_TOLERANCE_S = 2.0

log = logging.getLogger(__name__)


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


def check_run_id(models_dir: Path, run: str) -> str:
    """The run id `run` names: a folder directly under the store's runs folder, or an error.

    A bare name is the usual form; a path is accepted only when it resolves to a folder directly
    inside the runs folder. Names with separators, `..` or a leading dot are refused, so a run id
    never reaches outside the runs folder (gradings and votes are written inside it).
    """
    text = str(run or "").strip()
    folder = runs_dir(models_dir)
    name = text
    if os.sep in text or (os.altsep and os.altsep in text):
        path = Path(text).expanduser().resolve()
        name = path.name if path.parent == folder.resolve() else ""
    if not name or name.startswith(".") or os.sep in name or (os.altsep and os.altsep in name):
        raise PlaygroundError(f"{text or 'An empty run id'} is not a run: give the name of a folder "
                              f"directly under {folder}.")
    if not (folder / name).is_dir():
        raise PlaygroundError(f"No run '{name}' under {folder}.")
    return name


def new_run_id(models_dir: Path, method: str) -> str:
    """A new run id, never one given before in this process: a run whose folder could not be
    created leaves its adapter on the shared weights under that name."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_id, n = f"{stamp}-{method}", 1
    while (runs_dir(models_dir) / run_id).exists() or run_id in _ISSUED:
        n += 1
        run_id = f"{stamp}-{method}-{n}"
    _ISSUED.add(run_id)
    return run_id


def alive(pid: int | None, started: float | None) -> bool:
    """Whether the process that wrote a status still runs: the process id exists and, when the
    status recorded its start time (older ones did not), the process started at that time."""
    if not pid:
        return False
    try:
        now = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # it exists; its start time cannot be read
        return True
    return started is None or abs(now - started) < START_TOLERANCE_S


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
            pid, started = self.status.get("pid"), self.status.get("pid_started")
            if not alive(pid, started):
                return "interrupted"
            if pid == os.getpid() and self.run_id not in ACTIVE:  # this process, but not training it
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
        self.started = time.time()
        self.pid_started = psutil.Process().create_time()
        try:
            self.folder.mkdir(parents=True, exist_ok=False)
            write_json(self.folder / "config.json", config)
            self.status("running", "started", step=0)
        except OSError as exc:
            raise PlaygroundError(f"Cannot write the run folder {self.folder}: {exc.strerror or exc}. "
                                  f"Check that {runs_dir(models_dir)} is a folder you can write to "
                                  "(or choose another model store).") from None

    @classmethod
    def reopen(cls, models_dir: Path, run_id: str, rows: int, step: int) -> "RunWriter":
        """The writer of a run resumed at `step`: its metrics keep their first `rows` rows, the ones
        written up to the checkpoint, so the curve goes on from there."""
        writer = cls.__new__(cls)
        writer.run_id, writer.folder = run_id, runs_dir(models_dir) / check_run_id(models_dir, run_id)
        writer.pid_started = psutil.Process().create_time()
        metrics = writer.folder / "metrics.jsonl"
        try:
            writer.started = json.loads((writer.folder / "status.json").read_text(encoding="utf-8"))["started"]
            lines = metrics.read_text(encoding="utf-8").splitlines(keepends=True) if metrics.exists() else []
            write_text(metrics, "".join(lines[:rows]))
            writer.status("running", f"resumed at step {step}", step=step)
        except (OSError, KeyError, json.JSONDecodeError) as exc:
            raise PlaygroundError(f"Cannot resume run {run_id} in {writer.folder}: {exc}") from None
        return writer

    def status(self, state: str, message: str, **extra: Any) -> None:
        write_json(self.folder / "status.json", {"state": state, "message": message, "pid": os.getpid(),
                                                 "pid_started": self.pid_started, "started": self.started,
                                                 "updated": time.time(), **extra})

    def log(self, row: dict[str, Any]) -> None:
        with open(self.folder / "metrics.jsonl", "a", encoding="utf-8") as file:
            file.write(json.dumps(row, ensure_ascii=False) + "\n")
            file.flush()


def read(models_dir: Path, run_id: str) -> RunRecord:
    run_id = check_run_id(models_dir, run_id)
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
    for child in sorted(folder.iterdir(), reverse=True) if folder.is_dir() else []:
        if child.is_dir() and not child.name.startswith("."):
            try:
                records.append(read(models_dir, child.name))
            except PlaygroundError:
                continue
    return records


def remove_leftovers(models_dir: Path) -> list[Path]:
    """Remove the `.saving/` folders that a process killed while saving left in its run folders.

    A run still saving in another live process is left alone: its status says running and the
    process that wrote it is still alive (same process id and start time).
    """
    removed = []
    for record in list_runs(models_dir):
        leftover = record.folder / SAVING
        if leftover.is_dir() and record.state != "running":
            shutil.rmtree(leftover, ignore_errors=True)
            log.info("removed %s, left by an interrupted save", leftover)
            removed.append(leftover)
    return removed
