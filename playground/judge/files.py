"""Responses files: the book's `instruction-data-with-response.json`, and ours with both answers.

A JSON array of records {"instruction", "input", "output" (the reference), "model_response"}.
To compare two models, a record holds "base_response" and "tuned_response" (one of them is
enough). "model_response" is the book's key for the fine-tuned model and counts as "tuned_response".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import DataError, PlaygroundError
from ..runs import write_json
from .prompts import JudgeItem, PairItem

RESPONSE_KEYS = ("model_response", "base_response", "tuned_response")


def read_responses(path: str | Path) -> list[dict[str, str]]:
    """Records of a responses file (see the module docstring), checked field by field."""
    path = Path(path)
    source = str(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise DataError(source, ["no such file"]) from None
    except UnicodeDecodeError:
        raise DataError(source, ["not UTF-8 text"]) from None
    except json.JSONDecodeError as exc:
        raise DataError(source, [f"line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}"]) from None
    except RecursionError:
        raise DataError(source, ["nested too deeply to read"]) from None
    except OSError as exc:
        raise DataError(source, [f"cannot be read: {exc.strerror or exc}"]) from None
    if not isinstance(value, list):
        raise DataError(source, [f"expected a JSON array of records, got {type(value).__name__}"])
    if not value:
        raise DataError(source, ["file holds no records"])
    problems, records = [], []
    for n, record in enumerate(value, start=1):
        if not isinstance(record, dict):
            problems.append(f"record {n}: expected an object, got {type(record).__name__}")
            continue
        record = dict(record)
        record.setdefault("input", "")
        for name in ("instruction", "input", "output", *RESPONSE_KEYS):
            if name in record and not isinstance(record[name], str):
                problems.append(f"record {n}, field '{name}': expected text, got {type(record[name]).__name__}")
        for name in ("instruction", "output"):
            if name not in record:
                problems.append(f"record {n}: missing field '{name}'")
        present = [k for k in RESPONSE_KEYS if k in record]
        if not present:
            problems.append(f"record {n}: no response field (one of {', '.join(RESPONSE_KEYS)})")
        if "model_response" in record and "tuned_response" in record:
            problems.append(f"record {n}: both 'model_response' and 'tuned_response'; keep one")
        records.append(record)
    if problems:
        raise DataError(source, problems)
    return records


def write_responses(path: str | Path, records: list[dict[str, Any]]) -> None:
    """Write a responses file atomically (a temporary file renamed into place)."""
    write_json(Path(path), list(records))


def items_from_responses(records: list[dict[str, str]]) -> list[JudgeItem]:
    """One item per response in each record; the key is the record number (1-based)."""
    items = []
    for n, record in enumerate(records, start=1):
        for name, side in (("base_response", "base"), ("tuned_response", "tuned"), ("model_response", "tuned")):
            if name in record:
                items.append(JudgeItem(str(n), record["instruction"], record.get("input", ""),
                                       record["output"], record[name], side))
    return items


def pairs_from_responses(records: list[dict[str, str]]) -> list[PairItem]:
    pairs = []
    for n, record in enumerate(records, start=1):
        tuned = record.get("tuned_response", record.get("model_response"))
        if "base_response" not in record or tuned is None:
            raise PlaygroundError(f"Record {n} needs both 'base_response' and 'tuned_response' "
                                  "for a pairwise comparison.")
        pairs.append(PairItem(str(n), record["instruction"], record.get("input", ""), record["output"],
                              record["base_response"], tuned))
    return pairs
