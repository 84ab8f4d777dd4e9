"""The one way the app writes its files: never through a symbolic link, never outside its folder.

A link planted where the app writes (a run's `metrics.jsonl`, `votes.jsonl`, `judge/cache.jsonl`,
or a run folder itself) would otherwise send the app's lines into whatever file it points to, and an
app run as root can write anywhere. So a file is appended to with `O_NOFOLLOW`, a whole file is
written beside its target and renamed over it (which replaces a name, never writes through it) after
refusing a link there, and every write checks that its folder, links resolved, lies within the folder
it belongs to (`inside`: the store's runs folder for a run's files).
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import PlaygroundError


def _file_mode() -> int:
    """The mode `open()` gives a new file under this process's umask (mkstemp's 0600 is private)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


def check_target(path: Path, inside: Path | None = None) -> None:
    """Refuse `path` when it is a symbolic link, or when its folder, links resolved, is not within
    `inside` (by default its own folder: only the file itself is checked)."""
    path = Path(path)
    if path.is_symlink():
        raise PlaygroundError(f"Not writing {path}: it is a symbolic link (to {os.readlink(path)}). "
                              "The app never writes through a link; remove it and try again.")
    if inside is None:
        return
    folder, root = path.parent.resolve(), Path(inside).resolve()
    if folder != root and root not in folder.parents:
        raise PlaygroundError(f"Not writing {path}: its folder leads to {folder}, outside {root} "
                              "(a symbolic link on the way?). Remove the link and try again.")


def write_text(path: Path, text: str, inside: Path | None = None) -> None:
    """Write a file atomically: a temporary file beside it, renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    check_target(path, inside)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        os.fchmod(handle, FILE_MODE)
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def write_json(path: Path, value: Any, inside: Path | None = None) -> None:
    write_text(path, json.dumps(value, indent=1, ensure_ascii=False), inside)


def append_text(path: Path, text: str, inside: Path | None = None) -> None:
    """Append `text` to a file (made when missing), flushed; a link in its place is refused, not
    followed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    check_target(path, inside)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        handle = os.open(path, flags, FILE_MODE)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a link made between the check and the open
            check_target(path)
        raise
    with os.fdopen(handle, "a", encoding="utf-8") as file:
        file.write(text)
        file.flush()
