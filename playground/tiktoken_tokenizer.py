"""The book's tokenizer, GPT-2 through `tiktoken`, behind the few methods batching and prompts use.

`TiktokenTokenizer` wraps a `tiktoken.Encoding` so that the rest of the code keeps one path: it is
called like a Hugging Face tokenizer (`tokenizer(texts, add_special_tokens=...).input_ids`), decodes,
and names its end-of-text token. It has no padding token, so padding is end-of-text (50256 in GPT-2),
as in the book. It has no chat template and no model: it is for counting and showing tokens (the
Dataset, Prompt styles and Batch tabs, `--tokenizer gpt2-tiktoken`), not for training.

tiktoken downloads its encoding files on first use and keeps them in its cache (TIKTOKEN_CACHE_DIR,
else DATA_GYM_CACHE_DIR, else a folder in the temporary directory). `load()` looks in that cache
first and asks the network once, with a short timeout, only when a file is missing.
"""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlparse

from .errors import PlaygroundError

NAME = "gpt2-tiktoken"
LABEL = "GPT-2 through tiktoken (the book's tokenizer)"
ENDOFTEXT = "<|endoftext|>"
GPT2_FILES = ("https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
              "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json")
NETWORK_TIMEOUT = 3.0
# The tokenizer choice of the Dataset, Prompt styles and Batch tabs: the session's, or this one.
SESSION = "session"
TAB_CHOICES = [("The session's tokenizer (top of the page)", SESSION), (LABEL, NAME)]
TAB_NOTE = "GPT-2 through tiktoken counts and shows the book's tokens; it trains nothing (a model brings its own)."
_loaded: dict[str, "TiktokenTokenizer"] = {}


@dataclass
class Encoded:
    input_ids: list[list[int]]


class TiktokenTokenizer:
    """A tiktoken encoding with the tokenizer methods the playground calls."""

    chat_template = None
    bos_token = None
    pad_token = None
    pad_token_id = None

    def __init__(self, encoding: Any, name: str = NAME):
        if ENDOFTEXT not in encoding.special_tokens_set:
            raise PlaygroundError(f"The tiktoken encoding {encoding.name!r} has no {ENDOFTEXT} token.")
        self.encoding = encoding
        self.name_or_path = name
        self.eos_token = ENDOFTEXT
        self.eos_token_id = encoding.encode_single_token(ENDOFTEXT)

    def __call__(self, texts: str | Sequence[str], add_special_tokens: bool = False) -> Encoded:
        """Token ids of each text; special-token text is read as plain text, and nothing is added."""
        single = isinstance(texts, str)
        ids = self.encoding.encode_ordinary_batch([texts] if single else list(texts))
        return Encoded(ids[0] if single else ids)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.encoding.encode_ordinary(text)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        ids = [int(i) for i in ids]
        if skip_special_tokens:
            ids = [i for i in ids if i != self.eos_token_id]
        return self.encoding.decode(ids, errors="replace")

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        """Each id's bytes as text (a byte that is part of a longer character shows as its escape)."""
        return [self.encoding.decode_single_token_bytes(int(i)).decode("utf-8", errors="backslashreplace")
                for i in ids]

    def __len__(self) -> int:
        return self.encoding.n_vocab


def cache_dir() -> Path | None:
    """Where tiktoken keeps downloaded encoding files (None: caching turned off)."""
    for variable in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if variable in os.environ:
            return Path(os.environ[variable]) if os.environ[variable] else None
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def cached(url: str) -> bool:
    folder = cache_dir()
    return folder is not None and (folder / hashlib.sha1(url.encode()).hexdigest()).is_file()


def reachable(url: str, timeout: float = NETWORK_TIMEOUT) -> bool:
    host = urlparse(url).hostname or ""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def load_or_message(name: str = "gpt2") -> tuple[TiktokenTokenizer | None, str]:
    """(tokenizer, "") or (None, why not), for a tab to show."""
    try:
        return load(name), ""
    except PlaygroundError as exc:
        return None, str(exc)


def load(name: str = "gpt2") -> TiktokenTokenizer:
    """The book's GPT-2 tokenizer from tiktoken (one object per process), or a clear error at once
    when its files are neither in tiktoken's cache nor downloadable."""
    if name not in _loaded:
        _loaded[name] = _load(name)
    return _loaded[name]


def _load(name: str) -> TiktokenTokenizer:
    try:
        import tiktoken
    except ImportError:
        raise PlaygroundError("The book's tokenizer needs the tiktoken package: pip install -r requirements.txt")
    missing = [url for url in GPT2_FILES if not cached(url)] if name == "gpt2" else []
    if missing and not reachable(missing[0]):
        raise PlaygroundError(
            f"tiktoken's {name} encoding is not in its cache ({cache_dir() or 'caching is off'}: missing "
            f"{', '.join(url.rsplit('/', 1)[-1] for url in missing)}) and {urlparse(missing[0]).hostname} cannot "
            "be reached from this machine. Run once where it can be reached and copy the cache folder here, "
            "or set TIKTOKEN_CACHE_DIR to a folder that holds the files.")
    try:
        return TiktokenTokenizer(tiktoken.get_encoding(name), NAME if name == "gpt2" else name)
    except Exception as exc:  # a download cut off, a damaged cache file
        raise PlaygroundError(f"tiktoken could not load its {name} encoding: {type(exc).__name__}: {exc}") from None
