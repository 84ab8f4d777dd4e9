"""Judge replies kept on disk, keyed by everything that decides them, so nothing is asked twice."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from .settings import PROMPT_VERSION, JudgeSettings


class JudgeCache:
    """Judgments on disk, one JSON line each, appended and flushed as they arrive, so that a run cut
    off at any point keeps what it got. A line cut by a crash is skipped when read back.
    `path=None` keeps the cache in memory only."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self._entries: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._newline_first = False
        if self.path and self.path.exists():
            text = self.path.read_text(encoding="utf-8")
            self._newline_first = bool(text) and not text.endswith("\n")
            for line in text.splitlines():
                try:
                    entry = json.loads(line)
                    self._entries[entry["key"]] = entry
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str) -> dict[str, Any] | None:
        return self._entries.get(key)

    def put(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._entries[entry["key"]] = entry
            if self.path is None:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as file:
                if self._newline_first:  # end a line left half-written by a crash
                    file.write("\n")
                    self._newline_first = False
                file.write(json.dumps(entry, ensure_ascii=False) + "\n")
                file.flush()


def cache_key(settings: JudgeSettings, mode: str, template: str, **fields: str) -> str:
    """sha256 of everything that decides the judge's reply; the host is not part of it."""
    parts = {"version": PROMPT_VERSION, "mode": mode, "api": settings.api, "model": settings.model_name(),
             "prompt": settings.prompt, "template": template, "structured": settings.structured and mode == "score",
             "options": settings.options(), **fields}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
