"""Instruction datasets: loading (JSON, JSONL, CSV, Parquet, URL, hub id), validation and splits.

Every record is normalised to the Alpaca shape (instruction / input / output). Columns of other
common shapes are mapped automatically; a user-given mapping overrides that. Problems are reported
with the file, the row or line, and the field, and never leave a half-loaded dataset behind.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import DataError

BUILTIN = "builtin"
DEFAULT_MAX_MB = 200
TRAIN_FRACTION, TEST_FRACTION = 0.85, 0.10  # the book's split; validation is the remainder
FIELDS = ("instruction", "input", "output")
SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")

# Known column names for each Alpaca field, in order of preference.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "instruction": ("instruction", "prompt", "question", "query"),
    "input": ("input", "context"),
    "output": ("output", "response", "completion", "answer"),
}

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class Record:
    instruction: str
    input: str
    output: str
    task: str = ""
    exact: bool = False  # the task has one correct answer, so exact match is a fair score

    def as_dict(self) -> dict[str, Any]:
        return {"instruction": self.instruction, "input": self.input, "output": self.output,
                "task": self.task, "exact": self.exact}


@dataclass(frozen=True)
class Splits:
    train: list[int]
    validation: list[int]
    test: list[int]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}


@dataclass
class Dataset:
    records: list[Record]
    source: str
    mapping: dict[str, str]  # Alpaca field -> column name in the source
    duplicates: list[tuple[int, int]] = field(default_factory=list)  # (row, row it repeats), 1-based
    origin: str = ""  # what it was loaded from (`builtin`, a path, a URL), to load it again

    def __len__(self) -> int:
        return len(self.records)

    @property
    def with_input(self) -> int:
        return sum(1 for r in self.records if r.input.strip())

    def splits(self, seed: int = 123, train: float = TRAIN_FRACTION, test: float = TEST_FRACTION) -> Splits:
        """The book's 85/10/5 split (validation is the remainder), on a seeded shuffle."""
        return split_indices(len(self.records), seed=seed, train=train, test=test)

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the records as loaded (after column mapping): the same data, the same hash."""
        digest = hashlib.sha256()
        for record in self.records:
            digest.update(json.dumps(record.as_dict(), ensure_ascii=False, sort_keys=True).encode() + b"\n")
        return digest.hexdigest()

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([r.as_dict() for r in self.records], columns=[*FIELDS, "task", "exact"])


def split_indices(n: int, seed: int = 123, train: float = TRAIN_FRACTION, test: float = TEST_FRACTION) -> Splits:
    if not (0 < train < 1 and 0 <= test < 1 and train + test <= 1):
        raise DataError("splits", [f"train {train} and test {test} fractions must lie in (0, 1) and sum to at most 1"])
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_train, n_test = int(n * train), int(n * test)
    return Splits(train=order[:n_train], test=order[n_train:n_train + n_test],
                  validation=order[n_train + n_test:])


# ---------------------------------------------------------------- loading


def load(source: str | Path, mapping: dict[str, str] | None = None,
         max_mb: float = DEFAULT_MAX_MB) -> Dataset:
    """Load a dataset from `builtin`, a file path, an http(s) URL or a Hugging Face dataset id."""
    text = str(source).strip()
    try:
        dataset = _load(text, mapping, max_mb)
    except DataError:
        raise
    except RecursionError:
        raise DataError(text, ["nested too deeply to read (a record inside thousands of brackets)"]) from None
    except Exception as exc:  # anything else a parser throws is still a file the user gave us
        raise DataError(text, [f"could not be read: {type(exc).__name__}: {exc}"]) from None
    dataset.origin = text
    return dataset


def _load(text: str, mapping: dict[str, str] | None, max_mb: float) -> Dataset:
    if not text:
        raise DataError("dataset", ["no file, URL or dataset id given"])
    if text == BUILTIN:
        path = resources.files("playground").joinpath("datasets/instructions.json")
        return _parse(Path(str(path)).read_bytes(), "builtin (instructions.json)", ".json", mapping)
    if text.startswith(("http://", "https://")):
        return _parse(_download(text, max_mb), text, _suffix(text), mapping)
    path = Path(text).expanduser()
    if path.exists():
        return load_file(path, mapping, max_mb)
    if HUB_ID.match(text):
        return _load_hub(text, mapping, max_mb)
    raise DataError(text, ["no such file (and not a URL or a Hugging Face dataset id)"])


def load_file(path: str | Path, mapping: dict[str, str] | None = None,
              max_mb: float = DEFAULT_MAX_MB) -> Dataset:
    path = Path(path)
    if path.is_dir():
        raise DataError(str(path), ["is a folder; give a .json, .jsonl, .csv or .parquet file"])
    size = path.stat().st_size
    if size > max_mb * 1024 * 1024:
        raise DataError(str(path), [f"file is {size / 2**20:.1f} MB, over the {max_mb:g} MB limit "
                                    "(raise it with --max-file-mb)"])
    return _parse(path.read_bytes(), str(path), _suffix(path.name), mapping)


def _suffix(name: str) -> str:
    name = name.split("?")[0].lower()
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return ""


def _download(url: str, max_mb: float) -> bytes:
    limit = int(max_mb * 1024 * 1024)
    try:
        with urllib.request.urlopen(url, timeout=15) as reply:
            data = reply.read(limit + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(url, [f"could not download: {reason}. This machine may be offline; "
                              "load a local file instead"]) from None
    if len(data) > limit:
        raise DataError(url, [f"download is over the {max_mb:g} MB limit"])
    return data


def _load_hub(repo_id: str, mapping: dict[str, str] | None, max_mb: float) -> Dataset:
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(repo_id, repo_type="dataset",
                                   allow_patterns=[f"*{s}" for s in SUFFIXES])
    except Exception as exc:  # the hub client raises many kinds; all mean "not available"
        raise DataError(repo_id, [f"could not fetch this Hugging Face dataset ({type(exc).__name__}). "
                                  "The hub may be unreachable from this machine; load a local file "
                                  "instead"]) from None
    files = sorted(p for p in Path(folder).rglob("*") if _suffix(p.name) and "test" not in p.name)
    files = files or sorted(p for p in Path(folder).rglob("*") if _suffix(p.name))
    if not files:
        raise DataError(repo_id, ["the dataset has no JSON, JSONL, CSV or Parquet file"])
    dataset = load_file(files[0], mapping, max_mb)
    dataset.source = f"{repo_id} ({files[0].name})"
    return dataset


# ---------------------------------------------------------------- parsing


def _parse(data: bytes, source: str, suffix: str, mapping: dict[str, str] | None) -> Dataset:
    if not data.strip():
        raise DataError(source, ["file is empty"])
    if suffix == ".parquet":
        rows, where = _read_parquet(data, source), "row"
    else:
        text = _decode(data, source)
        if suffix == ".csv":
            rows, where = _read_csv(text, source), "row"
        elif suffix == ".jsonl" or (suffix != ".json" and not text.lstrip().startswith("[")):
            rows, where = _read_jsonl(text, source), "line"
        else:
            rows, where = _read_json_array(text, source), "record"
    if not rows:
        raise DataError(source, ["file holds no records"])
    return _build(rows, source, where, mapping)


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise DataError(source, [f"line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x} "
                                 f"at offset {exc.start}); save the file as UTF-8"]) from None


def _read_json_array(text: str, source: str) -> list[tuple[int, Any]]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(source, [f"line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}"]) from None
    if isinstance(value, dict):  # {"data": [...]} or similar: one list inside an object
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(source, ["expected a JSON array of records (or one object holding one)"])
        value = lists[0]
    if not isinstance(value, list):
        raise DataError(source, [f"expected a JSON array of records, got {type(value).__name__}"])
    return list(enumerate(value, start=1))


def _read_jsonl(text: str, source: str) -> list[tuple[int, Any]]:
    rows, problems = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}, column {exc.colno}: invalid JSON: {exc.msg}")
    if problems:
        raise DataError(source, problems)
    return rows


def _read_csv(text: str, source: str) -> list[tuple[int, Any]]:
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(source, [f"invalid CSV: {exc}"]) from None
    return list(enumerate(frame.to_dict("records"), start=1))


def _read_parquet(data: bytes, source: str) -> list[tuple[int, Any]]:
    try:
        frame = pd.read_parquet(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises several kinds for a damaged file
        raise DataError(source, [f"not a readable Parquet file: {exc}"]) from None
    frame = frame.astype(object).where(frame.notna(), None)
    return list(enumerate(frame.to_dict("records"), start=1))


def detect_mapping(columns: list[str]) -> dict[str, str]:
    """Map Alpaca fields to the columns of a source, by the usual names (case-insensitive)."""
    lower = {c.lower(): c for c in columns}
    mapping = {}
    for name, aliases in COLUMN_ALIASES.items():
        for alias in aliases:
            if alias in lower:
                mapping[name] = lower[alias]
                break
    return mapping


def _build(rows: list[tuple[int, Any]], source: str, where: str,
           override: dict[str, str] | None) -> Dataset:
    first = next((value for _, value in rows if isinstance(value, dict)), None)
    columns = list(first) if first else []
    mapping = detect_mapping(columns)
    mapping.update({k: v for k, v in (override or {}).items() if v})
    unknown = [k for k in mapping if k not in FIELDS]
    if unknown:
        raise DataError(source, [f"column mapping names unknown field(s) {unknown}; use {list(FIELDS)}"])
    for name in ("instruction", "output"):
        if name not in mapping:
            raise DataError(source, [f"no column for '{name}' among {columns}; "
                                     f"expected one of {list(COLUMN_ALIASES[name])} or a column mapping"])

    records, problems, seen, duplicates = [], [], {}, []
    for number, value in rows:
        at = f"{where} {number}"
        if not isinstance(value, dict):
            problems.append(f"{at}: expected an object with instruction/output fields, "
                            f"got {type(value).__name__}")
            continue
        fields, row_problems = {}, []
        for name in FIELDS:
            column = mapping.get(name)
            raw = value.get(column) if column else ""
            if raw is None and name == "input":
                raw = ""
            if column and column not in value and name != "input":
                row_problems.append(f"{at}, field '{column}': missing")
            elif not isinstance(raw, str):
                row_problems.append(f"{at}, field '{column}': must be text, got {type(raw).__name__}")
            elif name != "input" and not raw.strip():
                row_problems.append(f"{at}, field '{column}': is empty")
            else:
                fields[name] = raw
        if row_problems:
            problems.extend(row_problems)
            continue
        task = value.get("task") if isinstance(value.get("task"), str) else ""
        exact = value.get("exact") is True
        record = Record(fields["instruction"], fields["input"], fields["output"], task, exact)
        key = (record.instruction, record.input)
        if key in seen:
            duplicates.append((number, seen[key]))
        else:
            seen[key] = number
        records.append(record)
    if problems:
        raise DataError(source, problems)
    return Dataset(records=records, source=source, mapping=mapping, duplicates=duplicates)
