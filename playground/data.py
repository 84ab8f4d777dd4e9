"""Instruction datasets: loading (JSON, JSONL, CSV, Parquet, URL, hub id), validation and splits.

Every record is normalised to the Alpaca shape (instruction / input / output). Columns of other
common shapes are mapped automatically; a user-given mapping overrides that. A preference dataset
(a `chosen` and a `rejected` column: the book's instruction/input/output/chosen/rejected, or
prompt/chosen/rejected, whose output is then the chosen response) keeps both responses per record. Problems are reported
with the file, the row or line, and the field, and never leave a half-loaded dataset behind.

Memory: a file is read with a byte limit (special files such as devices and pipes are refused
unopened) and parsed one record at a time into compact `Record`s, with a cap on the number of
records, so a dataset costs a few times its file size, never the parser's temporaries for the
whole file at once.
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import io
import itertools
import json
import math
import os
import random
import re
import stat
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pandas as pd

from .errors import DataError

BUILTIN = "builtin"
BUILTIN_PAIRS = "builtin-pairs"  # the bundled records as preference pairs (`preference.wrong_answer_pairs`)
DEFAULT_MAX_MB = 200
# Enough for the usual instruction sets (Alpaca 52k, Dolly 15k); a million tiny records would cost
# a few hundred MB in records and much more in the tabs that tokenise them.
DEFAULT_MAX_RECORDS = 200_000
TRAIN_FRACTION, TEST_FRACTION = 0.85, 0.10  # the book's split; validation is the remainder
# How records are put in order before the split is cut: a seeded shuffle (the playground's
# default), or the file's own order (the book slices its data as it comes).
SPLIT_ORDERS = {"shuffled": "shuffled with the split seed", "book": "in file order, as the book slices it"}
FIELDS = ("instruction", "input", "output")
PAIR_FIELDS = ("chosen", "rejected")  # a preference dataset's two responses to each prompt
SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")

# Known column names for each Alpaca field, in order of preference.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "instruction": ("instruction", "prompt", "question", "query"),
    "input": ("input", "context"),
    "output": ("output", "response", "completion", "answer"),
    "chosen": ("chosen",),
    "rejected": ("rejected",),
}

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True, slots=True)  # slots: no per-record __dict__, about half the memory
class Record:
    instruction: str
    input: str
    output: str
    task: str = ""
    exact: bool = False  # the task has one correct answer, so exact match is a fair score
    chosen: str = ""     # a preference pair's preferred and dispreferred responses (DPO); empty otherwise
    rejected: str = ""

    @property
    def is_pair(self) -> bool:
        return bool(self.chosen or self.rejected)

    def as_dict(self) -> dict[str, Any]:
        values = {"instruction": self.instruction, "input": self.input, "output": self.output,
                  "task": self.task, "exact": self.exact}
        if self.is_pair:  # only then, so that an instruction dataset's fingerprint stays what it was
            values.update(chosen=self.chosen, rejected=self.rejected)
        return values


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
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (row, why) left out by skip_bad_rows
    skip_bad_rows: bool = False  # loaded with skip_bad_rows: loading it again needs the same
    derived: dict = field(default_factory=dict, repr=False, compare=False)  # see `remember`

    def __len__(self) -> int:
        return len(self.records)

    @property
    def with_input(self) -> int:
        return sum(1 for r in self.records if r.input.strip())

    def splits(self, seed: int = 123, train: float = TRAIN_FRACTION, test: float = TEST_FRACTION,
               order: str = "shuffled") -> Splits:
        """The book's 85/10/5 split (validation is the remainder), on a seeded shuffle or in file order."""
        return split_indices(len(self.records), seed=seed, train=train, test=test, order=order)

    @cached_property
    def is_preference(self) -> bool:
        """A preference dataset: its records are pairs of a chosen and a rejected response (DPO)."""
        return any(r.is_pair for r in self.records)

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the records as loaded (after column mapping): the same data, the same hash."""
        digest = hashlib.sha256()
        for record in self.records:
            digest.update(json.dumps(record.as_dict(), ensure_ascii=False, sort_keys=True).encode() + b"\n")
        return digest.hexdigest()

    def remember(self, key: Any, compute: Callable[[], Any], keep: int = 8) -> Any:
        """compute() once per key (the last `keep` kept): a dataset is never changed in place, so
        what is computed from its records (token lengths, search results) stays true."""
        if key not in self.derived:
            value = compute()
            while len(self.derived) >= keep:
                self.derived.pop(next(iter(self.derived)), None)
            self.derived[key] = value
        return self.derived[key]

    def to_frame(self) -> pd.DataFrame:
        """A table of the records, built column by column (no dict per record)."""
        names = [*FIELDS, "task", "exact"]
        return pd.DataFrame({name: [getattr(r, name) for r in self.records] for name in names}, columns=names)

    def __deepcopy__(self, memo: dict) -> "Dataset":
        # A loaded dataset is never changed in place, so a deep copy (Gradio makes one of a
        # State's initial value for every browser session) can be the dataset itself.
        return self


def split_indices(n: int, seed: int = 123, train: float = TRAIN_FRACTION, test: float = TEST_FRACTION,
                  order: str = "shuffled") -> Splits:
    """First `train` of the records, then `test`, then the rest as validation (the book's slicing),
    after a seeded shuffle (`order` "shuffled") or in file order ("book"; the seed is not used)."""
    if not (0 < train < 1 and 0 <= test < 1 and train + test <= 1):
        raise DataError("splits", [f"train {train} and test {test} fractions must lie in (0, 1) and sum to at most 1"])
    if order not in SPLIT_ORDERS:
        raise DataError("splits", [f"unknown split order {order!r}; use {' or '.join(SPLIT_ORDERS)}"])
    indices = list(range(n))
    if order == "shuffled":
        random.Random(seed).shuffle(indices)
    order_list = indices
    n_train, n_test = int(n * train), int(n * test)
    return Splits(train=order_list[:n_train], test=order_list[n_train:n_train + n_test],
                  validation=order_list[n_train + n_test:])


# ---------------------------------------------------------------- loading


_record_limit = DEFAULT_MAX_RECORDS


def set_record_limit(max_records: int) -> None:
    """The record cap of every load that names none (the app's --max-records)."""
    global _record_limit
    if max_records < 1:
        raise ValueError("the record limit must be at least 1")
    _record_limit = max_records


def load(source: str | Path, mapping: dict[str, str] | None = None,
         max_mb: float = DEFAULT_MAX_MB, max_records: int | None = None, empty_outputs: bool = False,
         skip_bad_rows: bool = False) -> Dataset:
    """Load a dataset from `builtin`, a file path, an http(s) URL or a Hugging Face dataset id.

    `empty_outputs` keeps records whose output is empty or only whitespace (refused otherwise),
    for the data check to report them. `skip_bad_rows` loads the good rows of a file with bad
    ones and lists each bad row with its reason in `Dataset.skipped` (refused otherwise)."""
    text = str(source).strip()
    limits = (max_mb, max_records or _record_limit, empty_outputs, skip_bad_rows)
    try:
        dataset = _load(text, mapping, limits)
    except DataError:
        raise
    except RecursionError:
        raise DataError(text, ["nested too deeply to read (a record inside thousands of brackets)"]) from None
    except MemoryError:
        raise DataError(text, ["too large to read into memory; lower --max-file-mb or --max-records"]) from None
    except Exception as exc:  # anything else a parser throws is still a file the user gave us
        raise DataError(text, [f"could not be read: {type(exc).__name__}: {exc}"]) from None
    finally:
        release_memory()  # the parser's temporaries, and any dataset dropped since the last load
    dataset.origin = text
    return dataset


def release_memory() -> None:
    """Give freed memory back to the operating system (Python keeps it for reuse otherwise)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc only; elsewhere freeing is enough
    except (OSError, AttributeError):
        pass


def _load(text: str, mapping: dict[str, str] | None, limits: tuple[float, int, bool, bool]) -> Dataset:
    if not text:
        raise DataError("dataset", ["no file, URL or dataset id given"])
    if text == BUILTIN:
        path = resources.files("playground").joinpath("datasets/instructions.json")
        return _parse(Path(str(path)).read_bytes(), "builtin (instructions.json)", ".json", mapping, *limits[1:])
    if text == BUILTIN_PAIRS:
        from .preference import wrong_answer_pairs  # it reads runs, which need this module first

        return wrong_answer_pairs(_load(BUILTIN, None, limits))
    if text.startswith(("http://", "https://")):
        return _parse(_download(text, limits[0]), text, _suffix(text), mapping, *limits[1:])
    path = Path(text).expanduser()
    if path.exists():
        return load_file(path, mapping, *limits)
    if HUB_ID.match(text):
        return _load_hub(text, mapping, limits)
    raise DataError(text, ["no such file (and not a URL or a Hugging Face dataset id)"])


def load_file(path: str | Path, mapping: dict[str, str] | None = None,
              max_mb: float = DEFAULT_MAX_MB, max_records: int | None = None, empty_outputs: bool = False,
              skip_bad_rows: bool = False) -> Dataset:
    path = Path(path)
    return _parse(read_limited(path, max_mb), str(path), _suffix(path.name), mapping, max_records or _record_limit,
                  empty_outputs, skip_bad_rows)


def read_limited(path: Path, max_mb: float) -> bytes:
    """A regular file's bytes, at most `max_mb` MB of them; anything else is refused unopened.

    Devices and pipes report a size of 0, so their size says nothing; opening a pipe with no
    writer would block. The file is opened without blocking and checked again, in case it was
    swapped for something else in between.
    """
    limit = int(max_mb * 1024 * 1024)
    _check_regular(path, os.stat(path))
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(descriptor, "rb") as file:
        info = os.fstat(file.fileno())
        _check_regular(path, info)
        _check_size(path, info.st_size, max_mb)
        content = file.read(limit + 1)
    _check_size(path, len(content), max_mb)  # it grew while we read it
    return content


def discard_upload(path: str | Path, upload_folder: str | Path) -> bool:
    """Delete a refused upload, only when it lies inside the server's upload folder (never a user's file)."""
    path, folder = Path(path).resolve(), Path(upload_folder).resolve()
    if folder not in path.parents or not path.is_file():
        return False
    path.unlink(missing_ok=True)
    if path.parent != folder:  # the server keeps each upload in a folder of its own
        try:
            path.parent.rmdir()
        except OSError:  # not empty: it holds something else too
            pass
    return True


def _check_regular(path: Path, info: os.stat_result) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise DataError(str(path), ["is a folder; give a .json, .jsonl, .csv or .parquet file"])
    if not stat.S_ISREG(info.st_mode):
        kind = ("a named pipe" if stat.S_ISFIFO(info.st_mode) else "a device" if
                stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else
                "a socket" if stat.S_ISSOCK(info.st_mode) else "a special file")
        raise DataError(str(path), [f"is {kind}, not a regular file; give a .json, .jsonl, .csv or "
                                    ".parquet file"])


def _check_size(path: Path, size: int, max_mb: float) -> None:
    if size > max_mb * 1024 * 1024:
        raise DataError(str(path), [f"file is {size / 2**20:.1f} MB, over the {max_mb:g} MB limit "
                                    "(raise it with --max-file-mb)"])


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


def _load_hub(repo_id: str, mapping: dict[str, str] | None, limits: tuple[float, int, bool, bool]) -> Dataset:
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
    dataset = load_file(files[0], mapping, *limits)
    dataset.source = f"{repo_id} ({files[0].name})"
    return dataset


# ---------------------------------------------------------------- parsing


class _Invalid(str):
    """A row that could not be parsed, standing in its place with the message that says why."""


def _parse(data: bytes, source: str, suffix: str, mapping: dict[str, str] | None, max_records: int,
           empty_outputs: bool = False, skip_bad_rows: bool = False) -> Dataset:
    if not data.strip():
        raise DataError(source, ["file is empty"])
    if suffix == ".parquet":
        frame = _read_parquet(data, source)
        del data
        rows, where = _frame_rows(frame, source, max_records, missing_to_none=True), "row"
    else:
        text = _decode(data, source)
        del data  # only the text is needed from here on
        if suffix == ".csv":
            rows, where = _frame_rows(_read_csv(text, source), source, max_records), "row"
        elif suffix == ".jsonl" or (suffix != ".json" and not text.lstrip().startswith("[")):
            rows, where = _read_jsonl(text), "line"
        else:
            rows, where = _read_json(text, source), "record"
    return _build(rows, source, where, mapping, max_records, empty_outputs, skip_bad_rows)


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise DataError(source, [f"line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x} "
                                 f"at offset {exc.start}); save the file as UTF-8"]) from None


def _invalid_json(source: str, exc: json.JSONDecodeError) -> DataError:
    return DataError(source, [f"line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}"])


def _read_json(text: str, source: str) -> Iterator[tuple[int, Any]]:
    """The records of a JSON array one at a time (or of the one array inside an object)."""
    start = _SPACE.match(text).end()
    if not text.startswith("[", start):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _invalid_json(source, exc) from None
        if isinstance(value, dict):  # {"data": [...]} or similar: one list inside an object
            lists = [v for v in value.values() if isinstance(v, list)]
            if len(lists) != 1:
                raise DataError(source, ["expected a JSON array of records (or one object holding one)"])
            return enumerate(lists[0], start=1)
        raise DataError(source, [f"expected a JSON array of records, got {type(value).__name__}"])
    return _json_array_items(text, start + 1, source)


_SPACE = re.compile(r"[ \t\n\r]*")


def _json_array_items(text: str, position: int, source: str) -> Iterator[tuple[int, Any]]:
    """Decode the array that opens before `position`, one element at a time, as json.loads would."""
    decoder = json.JSONDecoder()
    position = _SPACE.match(text, position).end()
    try:
        if text.startswith("]", position):
            position += 1
        else:
            for number in itertools.count(1):
                value, position = decoder.raw_decode(text, position)
                yield number, value
                position = _SPACE.match(text, position).end()
                if text.startswith("]", position):
                    position += 1
                    break
                if not text.startswith(",", position):
                    raise json.JSONDecodeError("Expecting ',' delimiter", text, position)
                position = _SPACE.match(text, position + 1).end()
        position = _SPACE.match(text, position).end()
        if position != len(text):
            raise json.JSONDecodeError("Extra data", text, position)
    except json.JSONDecodeError as exc:
        raise _invalid_json(source, exc) from None


def _read_jsonl(text: str) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(io.StringIO(text), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, _Invalid(f"line {number}, column {exc.colno}: invalid JSON: {exc.msg}")


def _read_csv(text: str, source: str) -> pd.DataFrame:
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(source, [f"invalid CSV: {exc}"]) from None


def _read_parquet(data: bytes, source: str) -> pd.DataFrame:
    try:
        return pd.read_parquet(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises several kinds for a damaged file
        raise DataError(source, [f"not a readable Parquet file: {exc}"]) from None


def _frame_rows(frame: pd.DataFrame, source: str, max_records: int,
                missing_to_none: bool = False) -> Iterator[tuple[int, Any]]:
    """A table's rows as dicts, one at a time; a table over the record cap is refused at once."""
    if len(frame) > max_records:
        raise _too_many(source, len(frame), max_records)
    columns = [str(c) for c in frame.columns]
    for number, values in enumerate(frame.itertuples(index=False, name=None), start=1):
        if missing_to_none:
            values = [None if _missing(v) else v for v in values]
        yield number, dict(zip(columns, values))


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _too_many(source: str, count: int, max_records: int) -> DataError:
    return DataError(source, [f"holds {count:,} records, over the limit of {max_records:,} "
                              "(raise it with --max-records)"])


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


def _build(rows: Iterable[tuple[int, Any]], source: str, where: str,
           override: dict[str, str] | None, max_records: int, empty_outputs: bool = False,
           skip_bad_rows: bool = False) -> Dataset:
    """Records from rows read one at a time; the first object's keys decide the column mapping."""
    rows = iter(rows)
    head = []  # the rows up to the first object, read ahead
    for row in rows:
        head.append(row)
        if isinstance(row[1], dict):
            break
    if not head:
        raise DataError(source, ["file holds no records"])
    first = head[-1][1] if isinstance(head[-1][1], dict) else None
    unreadable = [value for _, value in head if isinstance(value, _Invalid)]
    if first is None and unreadable:  # no object to take the columns from: say why
        raise DataError(source, unreadable)
    columns = list(first) if first else []
    mapping = detect_mapping(columns)
    mapping.update({k: v for k, v in (override or {}).items() if v})
    unknown = [k for k in mapping if k not in FIELDS + PAIR_FIELDS]
    if unknown:
        raise DataError(source, [f"column mapping names unknown field(s) {unknown}; use {list(FIELDS + PAIR_FIELDS)}"])
    pairs = _pair_mapping(mapping, source, columns)
    for name in ("instruction", "output"):
        if name not in mapping:
            raise DataError(source, [f"no column for '{name}' among {columns}; "
                                     f"expected one of {list(COLUMN_ALIASES[name])} or a column mapping"])

    records, problems, seen, duplicates, skipped = [], [], {}, [], []
    items = itertools.chain(head, rows)
    for count, (number, value) in enumerate(items, start=1):
        if count > max_records:  # count the rest without keeping them, to say how many there are
            raise _too_many(source, count + sum(1 for _ in items), max_records)
        at = f"{where} {number}"
        record, row_problems = ((None, [str(value)]) if isinstance(value, _Invalid)
                                else _record(value, mapping, at, empty_outputs))
        if pairs and record is not None:
            record, row_problems = _with_pair(record, value, mapping, at, empty_outputs)
        if row_problems and skip_bad_rows:
            skipped.append((number, f"{at}: " + "; ".join(p.removeprefix(f"{at}, ") for p in row_problems)))
            continue
        if row_problems:
            problems.extend(row_problems)
            continue
        key = (record.instruction, record.input)
        if key in seen:
            duplicates.append((number, seen[key]))
        else:
            seen[key] = number
        records.append(record)
    if problems:
        raise DataError(source, problems)
    if not records:
        raise DataError(source, ["every row is bad; none was loaded"] + [why for _, why in skipped[:20]])
    return Dataset(records=records, source=source, mapping=mapping, duplicates=duplicates, skipped=skipped,
                   skip_bad_rows=skip_bad_rows)


def _record(value: Any, mapping: dict[str, str], at: str, empty_outputs: bool = False) -> tuple[Record | None, list[str]]:
    """One row as a Record, or the problems that prevent it."""
    if type(value) is dict:  # the usual case first, checked quickly: fields present, text, not empty
        instruction, output = value.get(mapping["instruction"]), value.get(mapping["output"])
        given = value.get(mapping["input"]) if "input" in mapping else ""
        if (type(instruction) is str and type(output) is str and type(given) is str
                and instruction.strip() and output.strip()):
            task = value.get("task")
            return Record(instruction, given, output, task if type(task) is str else "",
                          value.get("exact") is True), []
    if not isinstance(value, dict):
        return None, [f"{at}: expected an object with instruction/output fields, got {type(value).__name__}"]
    fields, problems = {}, []
    for name in FIELDS:
        column = mapping.get(name)
        raw = value.get(column) if column else ""
        if raw is None and name == "input":
            raw = ""
        if column and column not in value and name != "input":
            problems.append(f"{at}, field '{column}': missing")
        elif not isinstance(raw, str):
            problems.append(f"{at}, field '{column}': must be text, got {type(raw).__name__}")
        elif name != "input" and not raw.strip() and not (name == "output" and empty_outputs):
            problems.append(f"{at}, field '{column}': is empty")
        else:
            fields[name] = raw
    if problems:
        return None, problems
    task = value.get("task") if isinstance(value.get("task"), str) else ""
    return Record(fields["instruction"], fields["input"], fields["output"], task, value.get("exact") is True), []


def _pair_mapping(mapping: dict[str, str], source: str, columns: list[str]) -> bool:
    """Whether the source is a preference dataset (a chosen and a rejected column); its output is the
    chosen response when it has no output column of its own (prompt/chosen/rejected files)."""
    given = [name for name in PAIR_FIELDS if name in mapping]
    if not given:
        return False
    if len(given) == 1:
        missing = next(name for name in PAIR_FIELDS if name not in mapping)
        raise DataError(source, [f"a preference dataset needs both 'chosen' and 'rejected'; no column for "
                                 f"'{missing}' among {columns}"])
    mapping.setdefault("output", mapping["chosen"])
    return True


def _with_pair(record: Record, value: dict[str, Any], mapping: dict[str, str], at: str,
               empty_sides: bool = False) -> tuple[Record | None, list[str]]:
    """The record with its chosen and rejected responses, or the problems that prevent it;
    `empty_sides` keeps empty ones, for the data check to report them."""
    sides, problems = {}, []
    for name in PAIR_FIELDS:
        column = mapping[name]
        raw = value.get(column)
        if column not in value:
            problems.append(f"{at}, field '{column}': missing")
        elif not isinstance(raw, str):
            problems.append(f"{at}, field '{column}': must be text, got {type(raw).__name__}")
        elif not raw.strip() and not empty_sides:
            problems.append(f"{at}, field '{column}': is empty")
        else:
            sides[name] = raw
    if problems:
        return None, problems
    return replace(record, **sides), []
