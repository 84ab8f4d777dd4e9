"""Judge replies kept on disk, keyed by everything that decides them, so nothing is asked twice."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from .. import file_writes
from .settings import PROMPT_VERSION, JudgeSettings


class JudgeCache:
    """Judgments on disk, one JSON line each, appended and flushed as they arrive, so that a run cut
    off at any point keeps what it got. A line cut by a crash is skipped when read back.
    `path=None` keeps the cache in memory only.

    A key is written once: `put` first reads what another cache on the same file (another grading,
    another process) appended since, and a reply already there is kept, not written again."""

    def __init__(self, path: str | Path | None, inside: Path | None = None):
        self.path = Path(path) if path else None
        self.inside = inside  # the folder the cache must stay within (a run's: the store's runs folder)
        self._entries: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._newline_first = False
        self._read_to = 0  # how much of the file has been read: whole lines, in bytes
        if self.path:  # a link in the cache's place is refused before anything is asked
            file_writes.check_target(self.path, inside)
        if self.path and self.path.exists():
            data = self.path.read_bytes()
            self._newline_first = bool(data) and not data.endswith(b"\n")
            self._read_lines(data, whole_only=False)

    def _read_lines(self, data: bytes, whole_only: bool = True) -> None:
        """Take the entries of `data`, the file's bytes from `_read_to` on; a line not ended yet is
        read again next time (`whole_only`), or parsed if it can be (a file read when opened)."""
        end = data.rfind(b"\n") + 1
        for line in (data[:end] if whole_only else data).decode("utf-8", "replace").splitlines():
            try:
                entry = json.loads(line)
                self._entries[entry["key"]] = entry
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
        self._read_to += end

    def _catch_up(self) -> None:
        """Read what was appended to the file since it was last read (by another cache on it)."""
        assert self.path is not None
        try:
            with open(self.path, "rb") as file:
                file.seek(self._read_to)
                data = file.read()
        except FileNotFoundError:
            return
        self._read_lines(data)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str) -> dict[str, Any] | None:
        return self._entries.get(key)

    def put(self, entry: dict[str, Any]) -> None:
        """Keep a reply, unless its key is kept already (by this cache, or by another on the same file)."""
        with self._lock:
            if self.path is not None:
                self._catch_up()
            if entry["key"] in self._entries:
                return
            self._entries[entry["key"]] = entry
            if self.path is None:
                return
            first = "\n" if self._newline_first else ""  # end a line left half-written by a crash
            file_writes.append_text(self.path, first + json.dumps(entry, ensure_ascii=False) + "\n", self.inside)
            self._newline_first = False


def cache_key(settings: JudgeSettings, mode: str, template: str, **fields: str) -> str:
    """sha256 of everything that decides the judge's reply; the host is not part of it."""
    parts = {"version": PROMPT_VERSION, "mode": mode, "api": settings.api, "model": settings.model_name(),
             "prompt": settings.prompt, "template": template, "structured": settings.structured and mode == "score",
             "options": settings.options(), **fields}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
