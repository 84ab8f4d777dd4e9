"""The one process-wide model manager shared by every tab.

It loads tokenizers (and, later, models) on a background thread so the UI appears at once and can
say what is loading; every tab asks it for what it needs instead of loading its own copy.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import store
from .errors import PlaygroundError


@dataclass(frozen=True)
class Status:
    state: str  # "loading", "ready" or "error"
    message: str


class ModelManager:
    def __init__(self, models_dir: Path | None = None, tokenizer_spec: str = store.DEFAULT):
        self.models_dir = Path(models_dir or store.MODELS_DIR)
        self.default_tokenizer = tokenizer_spec
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-loader")
        self._lock = threading.Lock()
        self._tokenizers: dict[str, Future] = {}
        self._started: dict[str, float] = {}

    def _key(self, spec: str | None) -> str:
        return (spec or self.default_tokenizer).strip() or store.DEFAULT

    def request_tokenizer(self, spec: str | None = None) -> Future:
        """Start loading a tokenizer in the background (once per spec) and return its future."""
        key = self._key(spec)
        with self._lock:
            future = self._tokenizers.get(key)
            if future is None or (future.done() and future.exception() is not None):
                self._started[key] = time.monotonic()
                future = self._executor.submit(store.load_tokenizer, key, self.models_dir)
                self._tokenizers[key] = future
            return future

    def tokenizer_status(self, spec: str | None = None) -> Status:
        key = self._key(spec)
        with self._lock:
            future = self._tokenizers.get(key)
        if future is None:
            return Status("error", f"Tokenizer '{key}' has not been requested.")
        if not future.done():
            waited = time.monotonic() - self._started.get(key, time.monotonic())
            first = " (the first start converts it from GGUF; later starts take seconds)" if key == store.DEFAULT else ""
            return Status("loading", f"Loading tokenizer '{key}'… {waited:.0f} s{first}")
        error = future.exception()
        if error is not None:
            return Status("error", str(error))
        return Status("ready", f"Tokenizer '{key}' ready ({len(future.result()):,} tokens in its vocabulary).")

    def tokenizer(self, spec: str | None = None, timeout: float | None = None) -> Any:
        """The loaded tokenizer, waiting for it up to `timeout` seconds (None waits as long as it takes)."""
        future = self.request_tokenizer(spec)
        try:
            return future.result(timeout=timeout)
        except TimeoutError:
            raise PlaygroundError(self.tokenizer_status(spec).message) from None
