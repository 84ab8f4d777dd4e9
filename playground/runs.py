"""The on-disk record of fine-tuning runs: `models/runs/<run-id>/`.

Each run folder holds:
  config.json     the settings, the base model, the prompt style and tokenizer facts
  status.json     state (running, finished, stopped, failed), message, step, process id and its
                  start time, times
  metrics.jsonl   one JSON line per logged step (train loss, validation loss, tokens/s, probes)
  adapter/        the LoRA adapter (peft, safetensors), or
  weights/        the fully fine-tuned model (safetensors)
and data.json, votes.jsonl, exports.jsonl, checkpoints/ and judge/ (see `run_files`, the one reader
of them all). JSON files are written to a temporary name and renamed, so a crash never leaves half
a file. A run whose status says running but whose process is gone (or whose process id now belongs
to a process started at another time), or that this process no longer runs, is listed as
interrupted. A run with a damaged file is listed as "damaged: <file>: <why>", and everything asked
of it (chat, grading, inspection, export, resume, comparison) is refused with that message
(`DamagedRun`); its files are left as they are, and the other runs work as before.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from . import checkpoints, run_files
from .errors import PlaygroundError
from .file_writes import append_text, write_json, write_text  # noqa: F401 (also used as runs.write_json)
from .settings import TrainConfig

ACTIVE: set[str] = set()  # run ids this process is training right now
_ISSUED: set[str] = set()  # run ids this process has given out
SAVING = ".saving"  # where a run's adapter or weights are written before they are moved into place
# Start times read through /proc can differ by a second between reads (the boot time is derived);
# a process id reused within two seconds of the original process's start is not a real concern.
START_TOLERANCE_S = 2.0

log = logging.getLogger(__name__)


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


class DamagedRun(PlaygroundError):
    """A run with a file that cannot be used; every action on the run is refused with this message."""

    def __init__(self, folder: Path, damage: str):
        super().__init__(f"Run {folder.name} is damaged: {damage}. Nothing in it was changed: repair that file in "
                         f"{folder}, or move the run's folder out of {folder.parent}.")
        self.damage = damage


def read_file(folder: Path, name: str, live: bool = False) -> Any:
    """The parsed content of a file of the run in `folder` (None when absent), through the one reader
    (`run_files`); a damaged file refuses the run."""
    try:
        return run_files.load(folder, name, live)
    except run_files.Damage as damage:
        raise DamagedRun(folder, str(damage)) from None


@dataclass
class RunRecord:
    run_id: str
    folder: Path
    config_json: dict[str, Any]  # config.json as saved: "settings" and the facts beside them (device, dtype, data)
    status: dict[str, Any]
    damage: str = ""  # "<file>: <why>" when a file of the run cannot be used; nothing else is then read

    @property
    def state(self) -> str:
        if self.damage:
            return f"damaged: {self.damage}"
        state = self.status.get("state", "unknown")
        if state == "running":
            pid, started = self.status.get("pid"), self.status.get("pid_started")
            if not alive(pid, started):
                return "interrupted"
            if pid == os.getpid() and self.run_id not in ACTIVE:  # this process, but not training it
                return "interrupted"
        return state

    @property
    def config(self) -> TrainConfig:
        """The run's training settings, typed (an older run's by today's names)."""
        return TrainConfig.from_dict(self.config_json.get("settings", {}))

    @property
    def weights(self) -> run_files.SavedWeights | None:
        """The trained adapter or weights the run saved; None while it has none (or is damaged)."""
        return None if self.damage else run_files.saved_weights(self.folder)

    @property
    def has_weights(self) -> bool:
        return self.weights is not None

    def refuse_if_damaged(self) -> "RunRecord":
        if self.damage:
            raise DamagedRun(self.folder, self.damage)
        return self

    def read_file(self, name: str) -> Any:
        """A file of the run, parsed and checked (see `run_files`); None when it is absent."""
        self.refuse_if_damaged()
        return read_file(self.folder, name, live=self.state == "running")

    def metrics(self) -> list[dict[str, Any]]:
        return self.read_file("metrics.jsonl") or []

    def data(self) -> dict[str, Any] | None:
        """What data.json records (see `run_data`); None for runs saved before it."""
        return self.read_file("data.json")


class RunWriter:
    """Writes one run's files as it goes."""

    def __init__(self, models_dir: Path, run_id: str, config: dict[str, Any]):
        self.run_id = run_id
        self.folder = runs_dir(models_dir) / run_id
        self.inside = runs_dir(models_dir)  # every file written stays in the store's runs folder
        self.started = time.time()
        self.pid_started = psutil.Process().create_time()
        try:
            self.folder.mkdir(parents=True, exist_ok=False)
            write_json(self.folder / "config.json", config, inside=self.inside)
            self.status("running", "started", step=0)
        except OSError as exc:
            raise PlaygroundError(f"Cannot write the run folder {self.folder}: {exc.strerror or exc}. "
                                  f"Check that {runs_dir(models_dir)} is a folder you can write to "
                                  "(or choose another model store).") from None

    @classmethod
    def reopen(cls, models_dir: Path, run_id: str, rows: int, step: int) -> "RunWriter":
        """The writer of a run resumed at `step`: its metrics keep their first `rows` rows, the ones
        written up to the checkpoint, so the curve goes on from there."""
        record = read(models_dir, run_id)
        writer = cls.__new__(cls)
        writer.run_id, writer.folder, writer.inside = record.run_id, record.folder, runs_dir(models_dir)
        writer.pid_started = psutil.Process().create_time()
        writer.started = record.status.get("started", time.time())
        kept = record.metrics()[:rows]
        metrics = writer.folder / "metrics.jsonl"
        try:
            if kept:
                write_text(metrics, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in kept), writer.inside)
            else:
                metrics.unlink(missing_ok=True)
            writer.status("running", f"resumed at step {step}", step=step)
        except OSError as exc:
            raise PlaygroundError(f"Cannot resume run {run_id} in {writer.folder}: {exc}") from None
        return writer

    def status(self, state: str, message: str, **extra: Any) -> None:
        write_json(self.folder / "status.json", {"state": state, "message": message, "pid": os.getpid(),
                                                 "pid_started": self.pid_started, "started": self.started,
                                                 "updated": time.time(), **extra}, inside=self.inside)

    def log(self, row: dict[str, Any]) -> None:
        append_text(self.folder / "metrics.jsonl", json.dumps(row, ensure_ascii=False) + "\n", inside=self.inside)


def examine(models_dir: Path, run_id: str) -> RunRecord:
    """The run's record, every file of it checked: a damaged run comes back with `damage` set (and
    nothing read from it), so that it can be listed."""
    run_id = check_run_id(models_dir, run_id)
    folder = runs_dir(models_dir) / run_id
    try:
        record = RunRecord(run_id, folder, run_files.load(folder, "config.json"), run_files.load(folder, "status.json"))
        run_files.check(folder, live=record.state == "running")
    except run_files.Damage as damage:
        return RunRecord(run_id, folder, {}, {}, damage=str(damage))
    return record


def read(models_dir: Path, run_id: str) -> RunRecord:
    """The run's record; a damaged run is refused (`DamagedRun`)."""
    return examine(models_dir, run_id).refuse_if_damaged()


def list_runs(models_dir: Path) -> list[RunRecord]:
    """Every run, newest first; a damaged one is listed with its damage (`RunRecord.state`)."""
    folder = runs_dir(models_dir)
    try:
        children = sorted(folder.iterdir(), reverse=True) if folder.is_dir() else []
    except OSError as exc:
        log.warning("cannot list the runs in %s: %s", folder, exc.strerror or exc)
        return []
    return [examine(models_dir, child.name) for child in children
            if child.is_dir() and not child.name.startswith(".")]


def remove_leftovers(models_dir: Path) -> list[Path]:
    """Remove what a process killed while saving left in its run folders: `.saving/` (the final
    weights) and the checkpoints' `.saving-NNNNNN/` and `.removing-*` folders.

    A run still saving in another live process is left alone: its status says running and the
    process that wrote it is still alive (same process id and start time).
    """
    removed = []
    for record in list_runs(models_dir):
        if record.state == "running" or record.damage:
            continue
        leftover = record.folder / SAVING
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
            removed.append(leftover)
        removed += checkpoints.remove_leftovers(record.folder)
    for path in removed:
        log.info("removed %s, left by an interrupted save", path)
    return removed
