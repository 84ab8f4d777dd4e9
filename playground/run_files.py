"""The one reader of the files in a run folder: every file is checked before anything uses it.

A run folder holds (see `runs`) config.json and status.json (both required), metrics.jsonl, data.json,
votes.jsonl, exports.jsonl, the adapter/ or weights/ folder, checkpoints/step-NNNNNN/ (trainer.pt
and an adapter/ or weights/ folder each) and judge/ (cache.jsonl and one folder per grading). A file
is damaged when it is missing where it is required, a folder, a special file, a link that leads out
of the run's folder, empty, cut short, not UTF-8, not JSON, or JSON of the wrong shape; a
safetensors or PyTorch file whose structure does not hold is damaged too. `check` names the first
damaged file of a run folder and why (`Damage`); `load` gives a file's parsed content, or raises
`Damage`. Nothing here writes, so a damaged file is left exactly as it was found.

Two appended logs may end in a line still being written, which is not damage: the metrics of a run
training now, and the judge's cache (its writer ends such a line before it appends again). Checks
are remembered per file until it changes (its inode, size, or change or modification time), so
listing runs again costs a few `stat` calls.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import stat
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

VOTE_WINNERS = ("tuned", "base", "tie", "both_bad")
VOTE_AGAINST = re.compile(r"^(base|[A-Za-z0-9][A-Za-z0-9._-]*(@(\d+|best))?)$")  # a `model_refs` text
SAFETENSORS_HEADER_MAX = 100 * 2**20  # the safetensors library refuses larger headers


class Damage(Exception):
    """A file of a run that cannot be used: `name` (relative to the run folder) and why."""

    def __init__(self, name: str, why: str):
        super().__init__(f"{name}: {why}")
        self.name = name
        self.why = why


# ---------------------------------------------------------------- shapes of JSON values

Shape = Callable[[Any], str]  # "" when the value has the shape, else what is wrong with it

KINDS: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "list": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integers": lambda v: isinstance(v, list) and all(KINDS["integer"](x) for x in v),
    "objects": lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
}
NAMES = {"object": "a JSON object", "list": "a list", "string": "a string", "integer": "an integer",
         "number": "a number", "boolean": "true or false", "null": "null", "integers": "a list of integers",
         "objects": "a list of objects"}


def kind_name(value: Any) -> str:
    for kind in ("null", "boolean", "integer", "number", "string", "object", "list"):
        if KINDS[kind](value):
            return NAMES[kind]
    return type(value).__name__


def expected(kinds: str) -> str:
    return " or ".join(NAMES[k] for k in kinds.split("|"))


def fields(required: dict[str, str], optional: dict[str, str] | None = None,
           more: Shape | None = None) -> Shape:
    """A shape: a JSON object whose keys hold values of the kinds named ("string|null"); `more`
    checks what kinds cannot say."""
    def check(value: Any) -> str:
        if not isinstance(value, dict):
            return f"expected a JSON object, found {kind_name(value)}"
        for key in required:
            if key not in value:
                return f"'{key}' is missing"
        for key, kinds in {**required, **(optional or {})}.items():
            if key in value and not any(KINDS[k](value[key]) for k in kinds.split("|")):
                return f"'{key}' is {kind_name(value[key])}, expected {expected(kinds)}"
        return more(value) if more else ""
    return check


def list_of(item: Shape) -> Shape:
    def check(value: Any) -> str:
        if not isinstance(value, list):
            return f"expected a JSON list, found {kind_name(value)}"
        for number, element in enumerate(value, start=1):
            wrong = item(element)
            if wrong:
                return f"item {number}: {wrong}"
        return ""
    return check


def _settings(config: dict[str, Any]) -> str:
    wrong = fields({}, {"model": "string", "method": "string", "style": "string", "template": "string|null",
                        "label": "string|null", "seed": "integer", "split_seed": "integer"})(config["settings"])
    return f"'settings': {wrong}" if wrong else ""


def _indices(saved: dict[str, Any]) -> str:
    for split in ("train", "validation", "test"):
        found = saved["indices"].get(split)
        if not KINDS["integers"](found):
            return f"'indices' → '{split}' is {kind_name(found)}, expected a list of integers"
        outside = [i for i in found if not 0 <= i < saved["records"]]
        if outside:
            return f"'indices' → '{split}' holds {outside[0]}, outside the {saved['records']} records"
    return ""


def _winner(vote: dict[str, Any]) -> str:
    """A known winner, and the model compared with (`against`, absent: the base) named as a model."""
    if vote["winner"] not in VOTE_WINNERS:
        return f"'winner' is {vote['winner']!r}, not one of {VOTE_WINNERS}"
    if "against" in vote and not VOTE_AGAINST.match(vote["against"]):
        return f"'against' is {vote['against']!r}, not 'base', a run id, RUN@STEP or RUN@best"
    return ""


def _export_files(entry: dict[str, Any]) -> str:
    wrong = list_of(fields({"name": "string", "bytes": "integer"}))(entry["files"])
    return f"'files': {wrong}" if wrong else ""


def _best_checkpoint(status: dict[str, Any]) -> str:
    """What is wrong with the best scored checkpoint a status names (`RUN@best` reads it), or ""."""
    best = status.get("best_checkpoint")
    wrong = fields({"step": "integer", "exact_match": "number|null", "rouge_l": "number"})(best) if best else ""
    return f"'best_checkpoint': {wrong}" if wrong else ""


CONFIG = fields({"settings": "object"}, {"device": "string", "dtype": "string", "tokenizer": "object"}, _settings)
STATUS = fields({"state": "string"}, {
    "message": "string", "pid": "integer|null", "pid_started": "number|null", "started": "number",
    "updated": "number", "step": "integer", "steps": "integer", "total_steps": "integer",
    "train_loss": "number|null", "val_loss": "number|null", "best_checkpoint": "object|null",
    "answer_seconds": "number"}, _best_checkpoint)
METRIC = fields({"kind": "string"}, {"step": "integer", "epoch": "number", "elapsed": "number",
                                     "train_loss": "number|null", "val_loss": "number|null",
                                     "input_tokens_per_s": "number|null"})
DATA = fields({"indices": "object", "sha256": "string", "records": "integer", "source": "string",
               "origin": "string", "mapping": "object|null", "snapshot": "string"},
              {"skip_bad_rows": "boolean", "skipped": "objects", "split": "object"}, _indices)
VOTE = fields({"winner": "string"}, {"checkpoint": "integer|null", "prompt": "string", "input": "string",
                                     "base_answer": "string", "tuned_answer": "string", "turn": "integer",
                                     "against": "string"}, _winner)
EXPORT = fields({"time": "string", "format": "string", "folder": "string", "files": "list"},
                {"quant": "string|null", "checkpoint": "integer|null", "parity": "object|null",
                 "ollama": "string|null"}, _export_files)
CACHE_ENTRY = fields({"key": "string"})
RECORDS = list_of(fields({}))
SCORES = fields({"summary": "object", "rows": "objects"}, {"judge": "object"})
ADAPTER_CONFIG = fields({"peft_type": "string"})
MODEL_CONFIG = fields({"model_type": "string"})
SHARD_INDEX = fields({"weight_map": "object"})


# ---------------------------------------------------------------- the files of a run

@dataclass(frozen=True)
class Spec:
    """One kind of file: its name (a pattern: `*` never matches a name that starts with a dot), its
    format (json, jsonl, safetensors or torch) and, for JSON, its shape (of each line, for JSONL)."""
    pattern: str
    format: str
    shape: Shape | None = None
    required: bool = False
    cut_tail: bool = False  # an appended log whose writer ends a cut last line itself


TOP = [Spec("config.json", "json", CONFIG, required=True), Spec("status.json", "json", STATUS, required=True),
       Spec("metrics.jsonl", "jsonl", METRIC), Spec("data.json", "json", DATA), Spec("votes.jsonl", "jsonl", VOTE),
       Spec("exports.jsonl", "jsonl", EXPORT)]
ADAPTER = [Spec("adapter_config.json", "json", ADAPTER_CONFIG, required=True),
           Spec("adapter_model.safetensors", "safetensors", required=True)]
WEIGHTS = [Spec("config.json", "json", MODEL_CONFIG, required=True),
           Spec("model.safetensors.index.json", "json", SHARD_INDEX), Spec("*.safetensors", "safetensors")]
JUDGE = [Spec("cache.jsonl", "jsonl", CACHE_ENTRY, cut_tail=True)]
GRADING = [Spec("grading.json", "json", fields({})), Spec("responses.json", "json", RECORDS),
           Spec("instruction-data-with-response.json", "json", RECORDS), Spec("scores-*.json", "json", SCORES)]
TRAINER = Spec("trainer.pt", "torch", required=True)
CHECKPOINT_PREFIX = "step-"


WEIGHT_FOLDERS = {"adapter": True, "weights": False}  # a run's trained weights: folder name -> is a LoRA adapter


@dataclass(frozen=True)
class SavedWeights:
    """Where a run or a checkpoint keeps its trained weights, and what they are."""
    folder: Path

    @property
    def is_adapter(self) -> bool:
        """A peft LoRA adapter for the base model (else a full fine-tune's own model folder)."""
        return WEIGHT_FOLDERS[self.folder.name]


def saved_weights(parent: Path) -> SavedWeights | None:
    """The `adapter/` or `weights/` folder in `parent` (a run or a checkpoint), None when it has neither."""
    for name in WEIGHT_FOLDERS:
        if (parent / name).is_dir():
            return SavedWeights(parent / name)
    return None


def weights_folder(parent: Path, method: str) -> Path:
    """Where a run of `method` ("lora" or "full") saves its trained weights in `parent`."""
    return parent / ("adapter" if method == "lora" else "weights")


def spec_for(name: str) -> Spec:
    """The spec of a file named by its path in the run folder (`metrics.jsonl`, `judge/x/responses.json`)."""
    parts = name.split("/")
    groups = {1: TOP, 2: {"adapter": ADAPTER, "weights": WEIGHTS, "judge": JUDGE}.get(parts[0], []),
              3: GRADING if parts[0] == "judge" else []}
    for spec in groups.get(len(parts), []):
        if fnmatch.fnmatchcase(parts[-1], spec.pattern) and not parts[-1].startswith("."):
            return spec
    raise ValueError(f"{name} is not a file of a run")


# ---------------------------------------------------------------- reading one file

def _inside(path: Path, root: Path, name: str) -> None:
    """A link must lead to a place inside the run's folder (`root`, resolved)."""
    if path.is_symlink():
        target = path.resolve()
        if target != root and root not in target.parents:
            raise Damage(name, f"a link to {target}, outside the run's folder")


def file_stat(path: Path, root: Path, name: str, required: bool) -> os.stat_result | None:
    """The file's stat, None when it is absent and not required; Damage when it is not a plain file."""
    _inside(path, root, name)
    try:
        found = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise Damage(name, f"a link to {os.readlink(path)}, which does not exist") from None
        if required:
            raise Damage(name, "missing") from None
        return None
    except OSError as exc:
        raise Damage(name, f"cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(found.st_mode):
        raise Damage(name, "a folder, not a file")
    if not stat.S_ISREG(found.st_mode):
        raise Damage(name, "not a regular file (a pipe, socket or device)")
    if found.st_size == 0:
        raise Damage(name, "empty")
    return found


def _read_bytes(path: Path, name: str, limit: int | None = None) -> bytes:
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(descriptor, "rb") as file:
            return file.read() if limit is None else file.read(limit)
    except OSError as exc:
        raise Damage(name, f"cannot be read ({exc.strerror or exc})") from None


def _text(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Damage(name, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at position {exc.start})") from None


class _Cut(Damage):
    """JSON that ends before it is complete: a file or line cut short."""


def _unfinished(text: str) -> bool:
    """Whether JSON text ends inside a string or with a bracket still open: it was cut short."""
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
    return in_string or depth > 0


def _json(text: str, name: str, line: int | None = None) -> Any:
    """The JSON value of a whole file, or of its line number `line`."""
    where = f"line {line}: " if line else ""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        place = f"column {exc.colno}" if line else f"line {exc.lineno}, column {exc.colno}"
        if _unfinished(text):
            raise _Cut(name, f"{where}cut short (its JSON ends at {place} before it is complete)") from None
        raise Damage(name, f"{where}not JSON ({place}: {exc.msg})") from None
    except RecursionError:
        raise Damage(name, f"{where}nested too deeply to read") from None


def _shaped(value: Any, shape: Shape | None, name: str, where: str = "") -> Any:
    wrong = shape(value) if shape else ""
    if wrong:
        raise Damage(name, f"{where}{wrong}")
    return value


def _json_lines(text: str, spec: Spec, name: str, live: bool) -> list[Any]:
    """The rows of a JSON lines file. A line cut short is damage, except the last line of a log
    being written (`live`) and any line of a log whose writer ends cut lines (`spec.cut_tail`)."""
    lines = text.split("\n")
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(_json(line, name, number))
        except _Cut:
            if spec.cut_tail or (live and number == len(lines)):
                continue
            raise
        _shaped(rows[-1], spec.shape, name, f"line {number}: ")
    return rows


def _safetensors(path: Path, size: int, name: str) -> None:
    """The header's length, its JSON and the tensors' byte ranges must fit the file's size exactly."""
    if size < 8:
        raise Damage(name, f"cut short ({size} bytes; a safetensors file begins with 8 bytes of header length)")
    head = _read_bytes(path, name, 8)
    length = int.from_bytes(head, "little")
    if length > min(size - 8, SAFETENSORS_HEADER_MAX):
        raise Damage(name, f"cut short or not safetensors (its header would be {length:,} bytes; the file "
                           f"holds {size:,})")
    header = _read_bytes(path, name, 8 + length)[8:]
    try:
        value = json.loads(header.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise Damage(name, "not safetensors (its header is not JSON)") from None
    if not isinstance(value, dict):
        raise Damage(name, "not safetensors (its header is not a JSON object)")
    ends = [entry.get("data_offsets", [0, 0])[-1] for key, entry in value.items()
            if key != "__metadata__" and isinstance(entry, dict)]
    if len(ends) != len(value) - ("__metadata__" in value) or not all(KINDS["integer"](e) for e in ends):
        raise Damage(name, "not safetensors (a tensor in its header has no byte range)")
    needed = 8 + length + max(ends, default=0)
    if needed != size:
        why = "cut short" if needed > size else "longer than its tensors"
        raise Damage(name, f"{why} (its tensors end at byte {needed:,}; the file holds {size:,})")


def _torch_file(path: Path, name: str) -> None:
    """A file of torch.save: a zip archive whose directory (at its end) must be readable."""
    try:
        with zipfile.ZipFile(path) as archive:
            if not any(entry.endswith("data.pkl") for entry in archive.namelist()):
                raise Damage(name, "not a PyTorch file (a zip archive without data.pkl)")
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise Damage(name, f"cut short or not a PyTorch file ({exc})") from None


def _parse(path: Path, spec: Spec, size: int, name: str, live: bool) -> Any:
    if spec.format == "safetensors":
        return _safetensors(path, size, name)
    if spec.format == "torch":
        return _torch_file(path, name)
    text = _text(_read_bytes(path, name), name)
    if spec.format == "jsonl":
        return _json_lines(text, spec, name, live)
    return _shaped(_json(text, name), spec.shape, name)


def load(folder: Path, name: str, live: bool = False) -> Any:
    """The parsed content of the run's file `name` (a list of rows for JSON lines); None when the
    file is absent and not required. `live`: the run is training now (its metrics may end in a
    line still being written). Raises Damage."""
    spec = spec_for(name)
    found = file_stat(folder / name, folder.resolve(), name, spec.required)
    return None if found is None else _parse(folder / name, spec, found.st_size, name, live)


# ---------------------------------------------------------------- checking a whole run folder

_verdicts: dict[str, tuple[tuple[Any, ...], str]] = {}  # path -> (what it was when checked, damage or "")
_verdicts_lock = threading.Lock()


def _check_file(folder: Path, name: str, spec: Spec, live: bool) -> None:
    path = folder / name
    found = file_stat(path, folder.resolve(), name, spec.required)
    if found is None:
        return
    key = (found.st_ino, found.st_dev, found.st_size, found.st_mtime_ns, found.st_ctime_ns, path.is_symlink(), live)
    with _verdicts_lock:
        before = _verdicts.get(str(path))
    if before is not None and before[0] == key:
        if before[1]:
            raise Damage(name, before[1])
        return
    try:
        _parse(path, spec, found.st_size, name, live)
        verdict = ""
    except Damage as damage:
        verdict = damage.why
    with _verdicts_lock:
        _verdicts[str(path)] = (key, verdict)
    if verdict:
        raise Damage(name, verdict)


def _folder(folder: Path, name: str) -> bool:
    """Whether the run has the sub-folder `name`; Damage when it is a file or a link out of the run."""
    path = folder / name
    _inside(path, folder.resolve(), name)
    if not os.path.lexists(path):
        return False
    if not path.is_dir():
        raise Damage(name, "a file, not a folder" if path.exists() else f"a link to {os.readlink(path)}, "
                                                                        "which does not exist")
    return True


def _children(folder: Path, name: str) -> list[str]:
    """Names in the run's sub-folder `name` that do not start with a dot (work in progress), sorted."""
    try:
        return sorted(child.name for child in (folder / name).iterdir() if not child.name.startswith("."))
    except OSError as exc:
        raise Damage(name, f"cannot be listed ({exc.strerror or exc})") from None


def _check_group(folder: Path, base: str, specs: list[Spec], live: bool) -> None:
    """The files of `specs` in the sub-folder `base` ("" for the run folder itself)."""
    prefix = f"{base}/" if base else ""
    present = _children(folder, base) if base else None
    for spec in specs:
        names = [spec.pattern] if "*" not in spec.pattern else \
            [n for n in present or _children(folder, base) if fnmatch.fnmatchcase(n, spec.pattern)]
        for name in names:
            _check_file(folder, prefix + name, spec, live)


def _check_model(folder: Path, base: str, live: bool) -> bool:
    """The adapter/ or weights/ folder under `base`: False when it has neither."""
    prefix = f"{base}/" if base else ""
    found = False
    for kind, specs in (("adapter", ADAPTER), ("weights", WEIGHTS)):
        if _folder(folder, prefix + kind):
            found = True
            _check_group(folder, prefix + kind, specs, live)
            if kind == "weights" and not any(n.endswith(".safetensors") for n in _children(folder, prefix + kind)):
                raise Damage(f"{prefix}weights", "holds no .safetensors file")
    return found


def _check_checkpoints(folder: Path, live: bool) -> None:
    if not _folder(folder, "checkpoints"):
        return
    for child in _children(folder, "checkpoints"):
        name = f"checkpoints/{child}"
        if not child.startswith(CHECKPOINT_PREFIX) or not child[len(CHECKPOINT_PREFIX):].isdigit():
            continue
        if not _folder(folder, name):
            raise Damage(name, "a file, not a checkpoint folder")
        _check_file(folder, f"{name}/{TRAINER.pattern}", TRAINER, live)
        if not _check_model(folder, name, live):
            raise Damage(name, "holds neither an adapter/ nor a weights/ folder")


def _check_gradings(folder: Path, live: bool) -> None:
    if not _folder(folder, "judge"):
        return
    _check_group(folder, "judge", JUDGE, live)
    for child in _children(folder, "judge"):
        if (folder / "judge" / child).is_dir() or (folder / "judge" / child).is_symlink():
            if _folder(folder, f"judge/{child}"):
                _check_group(folder, f"judge/{child}", GRADING, live)


def check(folder: Path, live: bool = False) -> None:
    """Every file of the run folder, in a fixed order; raises Damage for the first damaged one.
    A run training now (`live`) is writing its checkpoints: they are checked once it has ended."""
    _check_group(folder, "", TOP, live)
    _check_model(folder, "", live)
    if not live:
        _check_checkpoints(folder, live)
    _check_gradings(folder, live)
