"""The data a run trained on: saved with the run, and found again, unchanged, to evaluate it.

`data.json` in the run folder records the dataset's origin, column mapping and content hash, the
split seed, order and fractions, the record indices of the train, validation and test splits, and
the rows left out when the data was loaded with "skip bad rows" (loading it again skips them too). A copy
of the records is kept once per content hash under `models/datasets/`, so a run can be evaluated
after an uploaded file is gone. Loading checks the hash: chat examples and gradings use the run's
own test split of the very data it trained on, or fail with a message that says what differs.
Another dataset is never used in its place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import data, runs
from .errors import DataError, PlaygroundError

FILE = "data.json"


@dataclass
class RunData:
    dataset: data.Dataset
    splits: data.Splits
    note: str = ""  # where the data was found, when that is worth saying

    def indices(self, split: str) -> list[int]:
        if split not in ("train", "validation", "test"):
            raise PlaygroundError(f"Unknown split {split!r}: use train, validation or test.")
        return getattr(self.splits, split)


def snapshots_dir(models_dir: Path) -> Path:
    return Path(models_dir) / "datasets"


def snapshot(dataset: data.Dataset, models_dir: Path) -> Path:
    """A copy of the records under the store, named by their hash; written once, atomically."""
    path = snapshots_dir(models_dir) / f"{dataset.fingerprint[:16]}.jsonl"
    if not path.exists():
        lines = "".join(json.dumps(r.as_dict(), ensure_ascii=False) + "\n" for r in dataset.records)
        runs.write_text(path, lines, inside=models_dir)
    return path


def describe(dataset: data.Dataset, splits: data.Splits, split_seed: int, models_dir: Path,
             split_order: str = "shuffled") -> dict[str, Any]:
    """What `data.json` holds for a run on `dataset`; writes the snapshot of its records."""
    return {"origin": dataset.origin, "source": dataset.source, "mapping": dataset.mapping,
            "sha256": dataset.fingerprint, "records": len(dataset),
            "snapshot": snapshot(dataset, models_dir).name,
            "skip_bad_rows": dataset.skip_bad_rows,
            "skipped": [{"row": row, "reason": why} for row, why in dataset.skipped],
            "split": {"seed": split_seed, "order": split_order, "train": data.TRAIN_FRACTION,
                      "test": data.TEST_FRACTION},
            "indices": {"train": splits.train, "validation": splits.validation, "test": splits.test}}


def split_order(saved: dict[str, Any]) -> str:
    """The split order a run's `data.json` records; runs saved before it was recorded were shuffled."""
    return saved.get("split", {}).get("order", "shuffled")


def load(models_dir: Path, record: runs.RunRecord, offered: data.Dataset | None = None) -> RunData:
    """The run's own data and splits: from its origin, else the copy in the store; else an error.
    `offered` (a dataset the user pointed at) is used instead when its content is the same, and
    refused when it is not."""
    saved = record.data()
    if saved is None:
        return _load_legacy(record, offered)
    indices = saved["indices"]
    splits = data.Splits(indices["train"], indices["validation"], indices["test"])
    if offered is not None:
        if offered.fingerprint == saved["sha256"]:
            return RunData(offered, splits)
        raise PlaygroundError(
            f"{offered.source} is not the data run {record.run_id} trained on ({len(offered):,} records, "
            f"content hash {offered.fingerprint[:12]}; the run's has {saved['records']:,} records, hash "
            f"{saved['sha256'][:12]}, from {saved['source']}).")
    tried = []
    skip = bool(saved.get("skip_bad_rows", False))
    for where, load_it in (("its origin", lambda: data.load(saved["origin"], saved["mapping"] or None,
                                                             skip_bad_rows=skip)),
                           ("the copy kept in the store",
                            lambda: data.load(str(snapshots_dir(models_dir) / saved["snapshot"])))):
        try:
            dataset = load_it()
        except DataError as exc:
            tried.append(f"{where}: {exc}")
            continue
        if dataset.fingerprint == saved["sha256"]:
            note = "" if where == "its origin" else (f"Using the copy of the run's data kept in the store: "
                                                     f"{'; '.join(tried)}.")
            dataset.source, dataset.origin = saved["source"], saved["origin"]
            return RunData(dataset, splits, note)
        tried.append(f"{where}: the content changed since the run (hash {dataset.fingerprint[:12]}, "
                     f"expected {saved['sha256'][:12]})")
    raise PlaygroundError(f"The data run {record.run_id} trained on ({saved['source']}) cannot be found "
                          "unchanged: " + "; ".join(tried) + ". Load that file again and point at it "
                          "(the Dataset tab, or --data on the command line).")


def _load_legacy(record: runs.RunRecord, offered: data.Dataset | None) -> RunData:
    """Runs saved before `data.json`: their split came from the training seed; nothing to check."""
    origin = record.config_json.get("dataset_origin") or data.BUILTIN
    dataset = offered
    if dataset is None:
        try:
            dataset = data.load(origin)
        except DataError as exc:
            raise PlaygroundError(f"Run {record.run_id} was saved without a record of its data, and its "
                                  f"dataset cannot be loaded again ({exc}). Point at it with --data or "
                                  "the Dataset tab.") from None
    splits = dataset.splits(seed=record.config.seed)
    return RunData(dataset, splits, f"Run {record.run_id} was saved before runs recorded their data: its "
                                    "split is recomputed from its seed, and the data cannot be checked.")
