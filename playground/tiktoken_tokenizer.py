"""The book's tokenizer, GPT-2 through `tiktoken`, behind the few methods batching and prompts use.

`TiktokenTokenizer` wraps a `tiktoken.Encoding` so that the rest of the code keeps one path: it is
called like a Hugging Face tokenizer (`tokenizer(texts, add_special_tokens=...).input_ids`), decodes,
and names its end-of-text token. It has no padding token, so padding is end-of-text (50256 in GPT-2),
as in the book. It has no chat template and no model: it is for counting and showing tokens (the
Dataset, Prompt styles and Batch tabs, `--tokenizer gpt2-tiktoken`), not for training.

tiktoken downloads its encoding files on first use and keeps them in its cache (TIKTOKEN_CACHE_DIR,
else DATA_GYM_CACHE_DIR, else a folder in the temporary directory) under names made from their URLs.
The book ships the same two files by their own names (`vocab.bpe`, `encoder.json`, in
ch02/02_bonus_bytepair-encoder/gpt2_model/): a folder holding them, given directly or as that cache
folder, is read too once their hashes match tiktoken's. `load()` asks the network once, with a short
timeout, only when neither is there.
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
# The book's names of the GPT-2 files and the SHA-256 tiktoken expects of each (tiktoken_ext.openai_public).
BOOK_FILES = {"vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
              "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"}
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


def is_book_folder(path: str | Path | None) -> bool:
    """Whether `path` is a folder holding the book's GPT-2 files by their own names."""
    return path is not None and all((Path(path) / name).is_file() for name in BOOK_FILES)


def check_book_files(folder: Path) -> None:
    """The book's two files in `folder` are GPT-2's, byte for byte, or a clear error naming the file."""
    for name, expected in BOOK_FILES.items():
        actual = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        if actual != expected:
            raise PlaygroundError(f"{folder / name} is not GPT-2's {name} (SHA-256 {actual[:12]}…, tiktoken expects "
                                  f"{expected[:12]}…): use the book's file from "
                                  "ch02/02_bonus_bytepair-encoder/gpt2_model/ unchanged.")


def from_book_files(folder: Path) -> TiktokenTokenizer:
    """GPT-2's encoding built by tiktoken from the book's `vocab.bpe` and `encoder.json`."""
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext.openai_public import r50k_pat_str

    check_book_files(folder)
    ranks = data_gym_to_mergeable_bpe_ranks(str(folder / "vocab.bpe"), str(folder / "encoder.json"),
                                            BOOK_FILES["vocab.bpe"], BOOK_FILES["encoder.json"])
    encoding = tiktoken.Encoding("gpt2", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                                 special_tokens={ENDOFTEXT: 50256}, explicit_n_vocab=50257)
    return TiktokenTokenizer(encoding, NAME)


def load_or_message(name: str = "gpt2") -> tuple[TiktokenTokenizer | None, str]:
    """(tokenizer, "") or (None, why not), for a tab to show."""
    try:
        return load(name), ""
    except PlaygroundError as exc:
        return None, str(exc)


def load(name: str = "gpt2", folder: str | Path | None = None) -> TiktokenTokenizer:
    """The book's GPT-2 tokenizer from tiktoken (one object per process and folder), or a clear error
    at once when its files are in none of: `folder`, tiktoken's cache, the network."""
    key = f"{name}:{Path(folder).resolve()}" if folder else name
    if key not in _loaded:
        _loaded[key] = _load(name, Path(folder) if folder else None)
    return _loaded[key]


def _load(name: str, folder: Path | None) -> TiktokenTokenizer:
    try:
        import tiktoken
    except ImportError:
        raise PlaygroundError("The book's tokenizer needs the tiktoken package: pip install -r requirements.txt")
    if folder is not None:
        if not is_book_folder(folder):
            raise PlaygroundError(f"{folder} does not hold the book's GPT-2 files ({' and '.join(BOOK_FILES)}).")
        return from_book_files(folder)
    missing = [url for url in GPT2_FILES if not cached(url)] if name == "gpt2" else []
    if missing and is_book_folder(cache_dir()):
        return from_book_files(cache_dir())
    if missing and not reachable(missing[0]):
        raise PlaygroundError(
            f"tiktoken's {name} encoding files are not here: {cache_dir() or 'caching is off'} holds neither "
            f"tiktoken's cached copies nor the book's {' and '.join(BOOK_FILES)}, and {urlparse(missing[0]).hostname} "
            "cannot be reached from this machine. Put the book's two files (rasbt/LLMs-from-scratch, "
            "ch02/02_bonus_bytepair-encoder/gpt2_model/) in a folder and set TIKTOKEN_CACHE_DIR to it, or give "
            "that folder as --tokenizer on the command line.")
    try:
        return TiktokenTokenizer(tiktoken.get_encoding(name), NAME if name == "gpt2" else name)
    except Exception as exc:  # a download cut off, a damaged cache file
        raise PlaygroundError(f"tiktoken could not load its {name} encoding: {type(exc).__name__}: {exc}") from None
