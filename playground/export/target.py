"""Where an export goes: built in a hidden temporary folder beside the target, renamed at the end.

Nothing half-written is left when an export fails or is stopped; the folder of an export whose process
was killed is removed by the next export to the same place. An existing folder is replaced
only with `force` and only when it holds an earlier export (its `export.json`); a file, or a folder
of anything else, is never written over.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psutil

from ..errors import PlaygroundError

MANIFEST = "export.json"


@dataclass(frozen=True)
class FileEntry:
    name: str
    size: int

    @property
    def size_text(self) -> str:
        return human_size(self.size)


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} GiB"


def check_target(out: Path, force: bool) -> None:
    """Refuse a target that is a file, or a non-empty folder that is not an earlier export (or no --force)."""
    if out.is_file() or (out.exists() and not out.is_dir()):
        raise PlaygroundError(f"{out} is a file: give a folder for the export (a file is never written over).")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MANIFEST).is_file():
            raise PlaygroundError(f"{out} is a folder with other files in it: give a new or empty folder "
                                  "(only an earlier export's folder can be replaced, with --force).")
        if not force:
            raise PlaygroundError(f"{out} holds an earlier export: give another folder, or --force to replace it.")


@contextlib.contextmanager
def building(out: Path, force: bool) -> Iterator[Path]:
    """A temporary folder beside `out` to build in; moved to `out` when the block ends without error."""
    out = Path(out).expanduser().resolve()
    check_target(out, force)
    remove_leftovers(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}-export-{os.getpid()}-", dir=out.parent))
    except OSError as exc:
        raise PlaygroundError(f"Cannot write beside {out}: {exc.strerror or exc}.") from None
    try:
        work.chmod(0o755)
        yield work
        check_target(out, force)  # it may have changed while the export ran
        _move_into_place(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def remove_leftovers(out: Path) -> list[Path]:
    """Temporary folders beside `out` left by exports whose process was killed (their process id is gone)."""
    removed = []
    for folder in out.parent.glob(f".{glob.escape(out.name)}-export-*") if out.parent.is_dir() else []:
        pid = folder.name[len(out.name) + len(".-export-"):].split("-")[0]
        if folder.is_dir() and not (pid.isdigit() and psutil.pid_exists(int(pid))):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _move_into_place(work: Path, out: Path) -> None:
    old = None
    if out.is_dir():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}-old-", dir=out.parent))
        os.replace(out, old / "previous")
    try:
        os.replace(work, out)
    except OSError:
        if old is not None:
            os.replace(old / "previous", out)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def list_files(folder: Path) -> list[FileEntry]:
    """Every file under `folder` with its size, by name."""
    return [FileEntry(str(path.relative_to(folder)), path.stat().st_size)
            for path in sorted(folder.rglob("*")) if path.is_file()]
