"""Grade a run: its answers and those of the model it is compared with (the base model unless another
is asked) on the run's own split, judge scores, reference metrics.

Each grading keeps its own folder under the run, named by split, size and a hash of everything
that decides the answers, so gradings of other splits, sizes or settings never replace it:
  models/runs/<run>/judge/<split>-<n>-<hash>/
    grading.json                         what was graded: the data's hash, the record indices, the
                                         generation settings, the run's state; `against` (a
                                         `model_refs` text) when the run is compared with another
                                         model than the base
    responses.json                       both answers per example (`base_response`, `tuned_response`):
                                         `base_response` is the compared model's answer, the base
                                         model's unless grading.json names another in `against`
    instruction-data-with-response.json  the book's file for the tuned model: exactly the book's keys
    scores-<judge>.json                  scores and reference metrics, one file per judge and settings
                                         (with grading.json's `against` when it has one)
  models/runs/<run>/judge/cache.jsonl    judge replies, shared by the run's gradings
A responses file the user gives is only read: its scores go beside it as `<name>.scores-<judge>.json`.

In one process (the app with several pages open), the same answers are generated once at a time, and
gradings that share a judge cache run one at a time: the same grading started again (another page,
the same settings) joins the one running and gets its result, so the server is asked once per prompt
and every page shows the same figures; another grading on the same cache waits for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from . import generation, judge, metrics, prompts, run_data, runs
from .judge import report as report_card
from .data import Dataset
from .errors import PlaygroundError
from .generation import GenerationSettings
from .model_refs import BASE, ModelRef, side_name

Progress = Callable[[float, str], None]
BOOK_FILE = "instruction-data-with-response.json"
# How test answers are asked for: the playground's prompt (the run's style, response header
# included), or the book's (gpt_instruction_finetuning.py): the prompt without its response header
# (`format_input(entry)`), up to 256 new tokens, and the header's text removed from the answer.
ANSWERS = {"playground": "the run's prompt, response header included",
           "book": "the book's: the prompt without its response header, up to 256 new tokens, "
                   "'### Response:' removed from the answer"}
BOOK_MAX_NEW_TOKENS = 256


def answer_prompt(rendered: prompts.Rendered, answers: str) -> prompts.Prompt:
    """What the model is asked to continue for a test answer."""
    if answers == "book":
        return prompts.Prompt(rendered.instruction, rendered.has_special_tokens)
    return rendered.inference


def book_answer(text: str, rendered: prompts.Rendered) -> str:
    """The book's `.replace("### Response:", "").strip()`, with the run's own header text."""
    header = rendered.header.strip()
    return (text.replace(header, "") if header else text).strip()


@dataclass
class GradingResult:
    summary: dict[str, Any]          # per side: judge average, scored/total, metrics
    rows: list[dict[str, Any]]       # per example: texts, scores, difference
    responses_path: Path
    scores_path: Path
    pairwise: dict[str, Any] | None = None
    against: str = BASE              # the model the "base" side's answers are from (`model_refs` text)


def _title(text: str) -> str:
    """`text` with its first letter upper case (the rest kept: run ids keep their case)."""
    return text[:1].upper() + text[1:]


def judge_dir(models_dir: Path, run_id: str) -> Path:
    return runs.runs_dir(models_dir) / run_id / "judge"


def check_limit(limit: int) -> int:
    """How many examples to grade: a whole number of at least 1."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise PlaygroundError(f"The number of examples to grade must be at least 1, not {limit!r}.")
    return limit


class _AnyOf:
    """A stop for work several callers share: set as soon as any of theirs is (each page's Stop stops
    the grading every page shows). `is_set` is what the generation and the judge read."""

    def __init__(self) -> None:
        self._events: list[threading.Event] = []
        self._lock = threading.Lock()

    def add(self, event: threading.Event | None) -> None:
        if event is not None:
            with self._lock:
                self._events.append(event)

    def is_set(self) -> bool:
        with self._lock:
            return any(event.is_set() for event in self._events)


class _Flight:
    """One grading in progress, which the same grading started again joins: every caller gets its
    progress and its result (or its error); any caller's stop stops it."""

    def __init__(self, identity: tuple[Any, ...]):
        self.identity = identity
        self.done = threading.Event()
        self.stop = _AnyOf()
        self.result: GradingResult | None = None
        self.error: BaseException | None = None
        self._owner: Progress | None = None
        self._joined: list[Progress] = []
        self._last: tuple[float, str] | None = None
        self._lock = threading.Lock()

    def join(self, on_progress: Progress | None, stop: threading.Event | None, owner: bool) -> None:
        self.stop.add(stop)
        with self._lock:
            if owner:
                self._owner = on_progress
            elif on_progress is not None:
                self._joined.append(on_progress)
            last = self._last
        if not owner and on_progress is not None and last is not None:
            self._tell(on_progress, *last)

    def progress(self, fraction: float, text: str) -> None:
        with self._lock:
            self._last = (fraction, text)
            joined = list(self._joined)
        if self._owner is not None:
            self._owner(fraction, text)  # the starter's own callback may end the grading by raising
        for listener in joined:
            self._tell(listener, fraction, text)

    def _tell(self, listener: Progress, fraction: float, text: str) -> None:
        try:
            listener(fraction, text)
        except Exception:  # a page that joined and went away ends nothing but its own progress
            with self._lock:
                if listener in self._joined:
                    self._joined.remove(listener)

    def outcome(self) -> GradingResult:
        self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class _InFlight:
    """The gradings running in this process, one per lane (a judge cache, or a scores file when no judge
    is asked), and the answers being generated, one per grading folder."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lanes: dict[str, _Flight] = {}
        self._folders: dict[str, threading.Lock] = {}

    def enter(self, lane: str, identity: tuple[Any, ...], on_progress: Progress | None,
              stop: threading.Event | None) -> tuple[_Flight, bool]:
        """(the grading to follow, True when this caller runs it). Waits while another grading holds the lane."""
        told = False
        while True:
            with self._lock:
                current = self._lanes.get(lane)
                if current is None:
                    current = self._lanes[lane] = _Flight(identity)
                    current.join(on_progress, stop, owner=True)
                    return current, True
                if current.identity == identity:
                    current.join(on_progress, stop, owner=False)
                    return current, False
            if stop is not None and stop.is_set():
                raise PlaygroundError("Stopped while another grading of these answers was running; nothing was asked.")
            if on_progress and not told:
                on_progress(0.0, "waiting for another grading of these answers (same judge replies) to finish")
                told = True
            current.done.wait(0.1)

    def leave(self, lane: str, flight: _Flight, result: GradingResult | None, error: BaseException | None) -> None:
        with self._lock:
            flight.result, flight.error = result, error
            if self._lanes.get(lane) is flight:
                del self._lanes[lane]
            flight.done.set()

    @contextlib.contextmanager
    def generating(self, folder: Path, stop: threading.Event | None) -> Iterator[None]:
        """Hold the grading folder while its answers are generated; another caller waits (or stops)."""
        with self._lock:
            lock = self._folders.setdefault(str(folder.resolve()), threading.Lock())
        while not lock.acquire(timeout=0.1):
            if stop is not None and stop.is_set():
                raise PlaygroundError("Stopped while another page was generating the same answers.")
        try:
            yield
        finally:
            lock.release()


IN_FLIGHT = _InFlight()


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _refuse_training(manager: Any, run_id: str, what: str) -> None:
    """A run training now moves under its answers: refused until it has finished or been stopped."""
    job = manager.job
    if job is not None and job.running and job.run_id == run_id:
        raise PlaygroundError(f"Run {run_id} is still training: {what} when it has finished or been stopped.")


def compared_side(manager: Any, against: ModelRef, spec: str) -> tuple[generation.Side, dict[str, Any]]:
    """The model a run is compared with, and what a grading's meta says of it: nothing for the base
    model (so a grading against the base keeps the folder it always had), else its `model_refs` text
    and, for a run's final weights, when they were saved. A run's best checkpoint is named by its step."""
    if against.is_base:
        return manager.base_side(spec), {}
    record = runs.read(manager.models_dir, against.run_id)
    against = against.resolved(record.status)
    if against.step is None:
        _refuse_training(manager, against.run_id, "compare with it")
    side = manager.side(against, spec)
    facts: dict[str, Any] = {"against": str(against)}
    if against.step is None:
        facts["against_updated"] = record.status.get("updated")
    return side, facts


def generate_responses(manager: Any, run_id: str, split: str, limit: int, settings: GenerationSettings,
                       batch_size: int = 8, on_progress: Progress | None = None,
                       stop: threading.Event | None = None, dataset: Dataset | None = None,
                       answers: str = "playground", against: str = BASE) -> Path:
    """The run's answers and those of the model it is compared with (`against`: a `model_refs` text,
    the base model by default) for the first `limit` examples of the run's own split; returns the
    grading's responses file, the compared model's answers as `base_response`. The same grading
    again reuses its file.

    Examples are generated in fixed blocks of `batch_size` consecutive examples of the split (the
    last block of a grading is completed, then cut), so a record's answer comes from the same batch
    whatever the limit: in bf16 the batch can change a greedy answer (bench/batch_invariance.py).
    `dataset` (one the user pointed at) is used only when it is the data the run trained on.
    `answers` "book" asks as the book does (ANSWERS), through the same generation engine.
    """
    if answers not in ANSWERS:
        raise PlaygroundError(f"Unknown answers {answers!r}: use {' or '.join(ANSWERS)}.")
    if answers == "book":
        settings = replace(settings, max_new_tokens=BOOK_MAX_NEW_TOKENS)
    other_ref = ModelRef.parse(against)
    record = runs.read(manager.models_dir, run_id)
    _refuse_training(manager, run_id, "grade it")
    found = (manager.run_data(run_id) if dataset is None
             else run_data.load(manager.models_dir, record, dataset))
    pool = found.indices(split)
    indices = pool[:check_limit(limit)]
    if not indices:
        raise PlaygroundError(f"The {split} split of run {run_id}'s data is empty.")
    tuned, _ = manager.tuned_side(run_id)
    spec = record.config.model
    compared, compared_facts = compared_side(manager, other_ref, spec)
    meta = {"run": run_id, "run_updated": record.status.get("updated"), "data_sha256": found.dataset.fingerprint,
            "data_source": found.dataset.source, "split": split, "indices": indices,
            "generation": asdict(settings), "examples_per_batch": batch_size,
            "dtype": str(next(tuned.weights.model.parameters()).dtype).replace("torch.", ""),
            **({"answers": answers} if answers != "playground" else {}), **compared_facts}
    folder = judge_dir(manager.models_dir, run_id) / f"{split}-{len(indices)}-{_digest(meta)[:8]}"
    path = folder / "responses.json"
    if path.exists() and (folder / "grading.json").exists():
        return path
    with IN_FLIGHT.generating(folder, stop):  # the same answers asked for by two pages: generated once
        if path.exists() and (folder / "grading.json").exists():  # by the other, while this one waited
            return path
        tokenizer = manager.tokenizer(spec)
        style, template = record.config.style, record.config.template
        written: dict[int, tuple[str, str]] = {}
        for start in range(0, len(indices), batch_size):
            block = pool[start:start + batch_size]
            rows, rendered = [], []
            for index in block:
                rendered.append(prompts.render(found.dataset.records[index], style, tokenizer, template))
                prompt = answer_prompt(rendered[-1], answers)
                rows += [(compared, prompt), (tuned, prompt)]
            texts = generation.generate(rows, tokenizer, style, settings, batch_size=None, stop=stop)
            if answers == "book":
                texts = [book_answer(text, rendered[n // 2]) for n, text in enumerate(texts)]
            written.update({index: (texts[2 * n], texts[2 * n + 1]) for n, index in enumerate(block)})
            if on_progress:
                done = min(start + batch_size, len(indices))
                on_progress(done / len(indices), f"generated answers for {done} of {len(indices)} examples")
        records = [{**found.dataset.records[i].as_dict(), "index": i, "base_response": written[i][0],
                    "tuned_response": written[i][1]} for i in indices]
        judge.write_responses(folder / BOOK_FILE, [{"instruction": r["instruction"], "input": r["input"],
                                                    "output": r["output"], "model_response": r["tuned_response"]}
                                                   for r in records])
        judge.write_responses(path, records)
        runs.write_json(folder / "grading.json", {**meta, "note": found.note})
        return path


def scores_name(settings: judge.JudgeSettings, use_judge: bool = True) -> str:
    """`scores-<judge model>-<hash of its settings>`, or `scores-metrics` when no judge is asked."""
    if not use_judge:
        return "scores-metrics"
    model = re.sub(r"[^A-Za-z0-9._-]+", "_", settings.model.strip())
    return f"scores-{model}-{judge.cache_key(settings, 'grading', settings.template)[:8]}"


def scores_path_for(responses: Path, settings: judge.JudgeSettings, use_judge: bool = True) -> Path:
    """Where a grading's scores go: in the grading's folder, or beside a file the user gave."""
    name = scores_name(settings, use_judge)
    if responses.name == "responses.json" and (responses.parent / "grading.json").exists():
        return responses.parent / f"{name}.json"
    return responses.with_name(f"{responses.stem}.{name}.json")


METRICS_ONLY = "scores-metrics"  # the scores file of a grading without a judge (scores_name)


def against_of(responses: Path) -> str:
    """The model whose answers a responses file holds as `base_response` (a `model_refs` text): its
    grading's `against`; the base model for a grading without one (every grading made before other
    models could be compared) and for a file the user gave."""
    meta = responses.parent / "grading.json"
    if responses.name != "responses.json" or not meta.is_file():
        return BASE
    try:
        value = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return BASE
    return str(value.get("against") or BASE) if isinstance(value, dict) else BASE


def _grading_against(record: runs.RunRecord, grading: str) -> str:
    """The `against` of one of the run's gradings (its folder's name), read through the run's checked reader."""
    meta = record.read_file(f"judge/{grading}/grading.json") or {}
    return str(meta.get("against") or BASE)


def _as_recorded(models_dir: Path, against: str) -> str:
    """`against` as a grading records it: `RUN@best` as the step of the run's best checkpoint now."""
    ref = ModelRef.parse(against)
    try:
        return str(ref.resolved(runs.read(models_dir, ref.run_id).status)) if ref.best else str(ref)
    except PlaygroundError:  # no such run, or no best checkpoint: no grading was made against it
        return str(ref)


def latest_grading(models_dir: Path, run_id: str, judged: bool | None = None,
                   against: str | None = None) -> dict[str, Any] | None:
    """The run's most recent grading as saved: its report ("judge", "summary", "rows"), the model it
    was compared with ("against", a `model_refs` text) and its files (both answers, the book's file,
    the scores); None when the run has not been graded. `judged`: True for the latest with a judge's
    scores only, False for reference metrics only, None for either; `against`: only gradings against
    that model (None: against any). A damaged run is refused."""
    record = runs.read(models_dir, run_id)
    folder = record.folder / "judge"
    found = sorted(folder.glob("*/scores-*.json"), key=lambda path: path.stat().st_mtime) if folder.is_dir() else []
    found = [path for path in found if not path.name.startswith(".") and path.is_file()
             and (judged is None or (path.stem != METRICS_ONLY) == judged)]
    if against is not None:
        wanted = _as_recorded(models_dir, against)
        found = [path for path in found if _grading_against(record, path.parent.name) == wanted]
    if not found:
        return None
    scores = found[-1]
    saved = record.read_file(scores.relative_to(record.folder).as_posix())
    rows = [row if "tuned_rouge_l" in row or "base_rouge_l" in row else {**row, **row_metrics(row)}
            for row in saved.get("rows", [])]  # a grading saved before the per-example metrics
    files = [scores.parent / "responses.json", scores.parent / BOOK_FILE, scores]
    return {**saved, "rows": rows, "grading": scores.parent.name, "files": [str(f) for f in files if f.exists()],
            "against": _grading_against(record, scores.parent.name)}


def quoted_grading(models_dir: Path, run_id: str, against: str = BASE) -> dict[str, Any] | None:
    """The grading a comparison or a model card quotes: the last one against `against` (the base model:
    their figures say base and tuned) with a judge, or reference metrics alone when the run was never
    judged against it (a later metrics-only grading does not hide the judge's)."""
    return (latest_grading(models_dir, run_id, judged=True, against=against)
            or latest_grading(models_dir, run_id, against=against))


def row_metrics(row: dict[str, Any]) -> dict[str, Any]:
    """One example's reference metrics per side: ROUGE-L, and exact match on a single-answer task (else None)."""
    values: dict[str, Any] = {}
    for side in ("base", "tuned"):
        answer = row.get(f"{side}_response")
        if answer is None:
            continue
        values[f"{side}_rouge_l"] = metrics.rouge_l(answer, row["reference"])
        values[f"{side}_exact"] = metrics.exact_match(answer, row["reference"]) if row.get("exact") else None
    if "base_rouge_l" in values and "tuned_rouge_l" in values:
        values["rouge_l_difference"] = values["tuned_rouge_l"] - values["base_rouge_l"]
    return values


def reference_metrics(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Exact match (on single-answer tasks) and ROUGE-L per side: a grade without any server."""
    result = {}
    exact = [r for r in records if r.get("exact")]
    for side in ("base", "tuned"):
        key = f"{side}_response"
        present = [r for r in records if key in r]
        if not present:
            continue
        result[side] = {
            "rouge_l": sum(metrics.rouge_l(r[key], r["output"]) for r in present) / len(present),
            "exact_match": (sum(metrics.exact_match(r[key], r["output"]) for r in exact if key in r) / len(exact)
                            if exact else None),
            "exact_examples": len(exact),
        }
    return result


def grade_responses(path: Path, settings: judge.JudgeSettings, cache_path: Path | None,
                    pairwise: bool = False, on_progress: Progress | None = None,
                    stop: threading.Event | None = None, use_judge: bool = True,
                    server: judge.Preflight | None = None, group_by: str = "task") -> GradingResult:
    """Score a responses file with the judge (when asked) and the reference metrics, and write the
    report card to a file of its own (`scores_path_for`); the responses file is only read.

    `server` is the preflight's answer (the judge's digest and size, for the report); `group_by`
    names the record field whose values get their own averages (the task family by default).
    """
    scores_path = scores_path_for(path, settings, use_judge)
    if scores_path.resolve() == path.resolve():
        raise PlaygroundError(f"{path}: its scores would be written over it; rename the file.")
    # The same grading (its answers, judge, settings and report) joins the one running; another on the
    # same judge cache waits for it, so that nothing is asked twice and no reply is kept twice.
    identity = (str(scores_path.resolve()), pairwise, use_judge, group_by,
                json.dumps(asdict(settings), sort_keys=True), asdict(server) if server else None)
    lane = str(Path(cache_path).resolve()) if use_judge and cache_path else str(scores_path.resolve())
    flight, runs_it = IN_FLIGHT.enter(lane, identity, on_progress, stop)
    if not runs_it:
        return flight.outcome()
    result = error = None
    try:
        result = _grade(path, scores_path, settings, cache_path, pairwise, flight.progress, flight.stop, use_judge,
                        server, group_by)
        return result
    except BaseException as exc:
        error = exc
        raise
    finally:
        IN_FLIGHT.leave(lane, flight, result, error)


def _grade(path: Path, scores_path: Path, settings: judge.JudgeSettings, cache_path: Path | None, pairwise: bool,
           on_progress: Progress | None, stop: Any, use_judge: bool, server: judge.Preflight | None,
           group_by: str) -> GradingResult:
    records = judge.read_responses(path)
    cache = judge.JudgeCache(cache_path)
    items = judge.items_from_responses(records)
    judgments: list[judge.Judgment] = []
    share = 0.5 if pairwise else 1.0  # of the progress bar, for the scores; the pairwise questions get the rest
    if use_judge and items:
        report = ((lambda done, total: on_progress(share * done / total, f"graded {done} of {total} answers"))
                  if on_progress else None)
        judgments = judge.grade(items, settings, cache, on_progress=report, stop=stop)
    pairs: list[judge.PairJudgment] = []
    if pairwise and use_judge:
        report = ((lambda done, total: on_progress(share + (1 - share) * done / total,
                                                   f"asked {done} of {total} pairwise questions (both orders)"))
                  if on_progress else None)
        pairs = judge.grade_pairwise(judge.pairs_from_responses(records), settings, cache, on_progress=report,
                                     stop=stop)
    rows = example_rows(records, judgments, pairs, group_by, use_judge)
    summary = judge.summarize(judgments) if judgments else {}
    summary["metrics"] = reference_metrics(records)
    if pairs:
        summary["pairwise"] = judge.summarize_pairwise(pairs)
    if judgments:
        summary["length"] = report_card.length_report(rows, {p.key: p.verdict for p in pairs} if pairs else None)
        summary["groups"] = {"by": group_by, "values": report_card.by_group(rows, "group")}
        summary["exact_agreement"] = report_card.exact_agreement(rows, metrics.exact_match)
        summary["warnings"] = report_card.warnings(summary, server.parameters if server else "")
    against = against_of(path)
    runs.write_json(scores_path, {"judge": judge_facts(settings, server, use_judge), "summary": summary,
                                  "rows": rows, **({"against": against} if against != BASE else {})})
    return GradingResult(summary, rows, path, scores_path, summary.get("pairwise"), against)


def judge_facts(settings: judge.JudgeSettings, server: judge.Preflight | None, use_judge: bool) -> dict[str, Any]:
    """What the grading used, for the report and its file (an API key's variable name, never the key; the
    server's address without a user:password in it)."""
    if not use_judge:
        return {"used": False}
    template = settings.effective_template()
    return {"used": True, "backend": settings.api, "host": settings.shown_host, "model": settings.model_name(),
            "digest": server.digest if server else "", "parameters": server.parameters if server else "",
            "prompt": settings.prompt, "template_sha256": hashlib.sha256(template.encode()).hexdigest()[:16],
            "structured": settings.structured, "options": settings.request_options(),
            "api_key_env": settings.api_key_env or None}


def example_rows(records: list[dict[str, Any]], judgments: list[judge.Judgment], pairs: list[judge.PairJudgment],
                 group_by: str, use_judge: bool) -> list[dict[str, Any]]:
    """One row per example: texts, each side's score, status and the judge's raw reply, the verdict."""
    by_key = {(j.key, j.side): j for j in judgments}
    verdicts = {p.key: p for p in pairs}
    rows = []
    for number, record in enumerate(records, start=1):
        row = {"#": number, "record": record.get("index", number - 1), "instruction": record["instruction"],
               "input": record.get("input", ""), "reference": record["output"],
               "group": record.get(group_by, ""), "exact": bool(record.get("exact"))}
        for side in ("base", "tuned"):
            answer = record.get(f"{side}_response", record.get("model_response") if side == "tuned" else None)
            if answer is None:
                continue
            found = by_key.get((str(number), side))
            row[f"{side}_response"] = answer
            row[f"{side}_score"] = found.score if found else None
            row[f"{side}_status"] = found.status if found else ("not graded" if use_judge else "")
            row[f"{side}_reply"] = (found.reply or found.error) if found else ""
            if found and found.error:
                row[f"{side}_error"] = f"{found.kind}: {found.error}"
        if row.get("base_score") is not None and row.get("tuned_score") is not None:
            row["difference"] = row["tuned_score"] - row["base_score"]
        row.update(row_metrics(row))
        pair = verdicts.get(str(number))
        if pair is not None:
            row["pairwise"] = pair.verdict
            row["pairwise_replies"] = list(pair.replies)
            if any(pair.errors):
                row["pairwise_errors"] = [f"{kind}: {error}" if error else "" for kind, error in zip(pair.kinds, pair.errors)]
        rows.append(row)
    return rows


def _by_kind(part: dict[str, Any], status: str) -> str:
    """A count with its kinds: "4 (3 timeout, 1 HTTP 503)"."""
    key = "errors" if status == "error" else status
    kinds = [f"{e['count']} {e['kind']}" for e in part.get("problems") or [] if e["status"] == status]
    return f"{part[key]} ({', '.join(kinds)})" if kinds else str(part[key])


def summary_lines(summary: dict[str, Any], facts: dict[str, Any] | None = None, against: str = BASE) -> list[str]:
    """The report card as text: averages with intervals and counts, reference metrics, pairwise,
    length, agreement with exact match, per group, what was used, and warnings. The side the run is
    compared with is named by `against` (`model_refs.side_name`)."""
    other = side_name(against)
    names = {"base": other, "tuned": "tuned"}
    lines = []
    for side in ("base", "tuned"):
        part = summary.get(side)
        if part:
            average = "n/a" if part["average"] is None else f"{part['average']:.1f}"
            interval = (f" [95% interval {part['interval'][0]:.1f}–{part['interval'][1]:.1f}]"
                        if part.get("interval") else "")
            lines.append(f"{_title(names[side])}: average {average}{interval} (scored {part['scored']} of "
                         f"{part['total']}; unparsed {part['unparsed']}, errors {_by_kind(part, 'error')}, skipped "
                         f"{_by_kind(part, 'skipped')}, truncated {part['truncated']})")
    for side, values in summary.get("metrics", {}).items():
        exact = ("n/a" if values["exact_match"] is None
                 else f"{values['exact_match']:.0%} on {values['exact_examples']} single-answer examples")
        lines.append(f"{_title(names.get(side, side))} reference metrics: ROUGE-L {values['rouge_l']:.3f}, "
                     f"exact match {exact}")
    pairwise = summary.get("pairwise")
    if pairwise and pairwise["tuned_win_rate"] is not None:
        interval = pairwise.get("interval")
        lines.append(f"Pairwise ({pairwise['judged']} of {pairwise['examples']} examples judged in both orders): "
                     f"tuned wins {pairwise['tuned_wins']}, ties {pairwise['ties']}, {other} wins "
                     f"{pairwise['base_wins']}; tuned win rate {pairwise['tuned_win_rate']:.0%}"
                     + (f" [{interval[0]:.0%}–{interval[1]:.0%}]" if interval else "")
                     + f"; the two orders agree on {pairwise['swap_consistency']:.0%}")
    length = summary.get("length")
    if length and length["tuned_win_rate"] is not None:
        controlled = length["length_controlled_win_rate"]
        lines.append(f"Length: {other} {length['base_mean_words']:.0f} words, tuned {length['tuned_mean_words']:.0f} "
                     f"words on average; tuned win rate ({length['verdicts_from']}) {length['tuned_win_rate']:.0%}, "
                     f"length-controlled {'n/a' if controlled is None else f'{controlled:.0%}'}")
    agreement = summary.get("exact_agreement")
    if agreement:
        lines.append(f"Judge (score >= {agreement['pass_mark']}) and exact match agree on {agreement['agree']} of "
                     f"{agreement['answers']} single-answer answers")
    groups = (summary.get("groups") or {}).get("values") or {}
    for name, entry in list(groups.items())[:30]:
        base, tuned = entry["base_average"], entry["tuned_average"]
        lines.append(f"  {summary['groups']['by']} {name}: {entry['examples']} examples, {other} "
                     f"{'n/a' if base is None else f'{base:.1f}'}, tuned {'n/a' if tuned is None else f'{tuned:.1f}'}")
    if facts and facts.get("used"):
        lines.append(f"Judge: {facts['model']} ({facts['parameters'] or 'size unknown'}"
                     + (f", digest {facts['digest'][:12]}" if facts["digest"] else "")
                     + f") via {facts['backend']} at {facts['host']}; prompt {facts['prompt']} "
                     f"(template {facts['template_sha256']}); options {facts['options']}")
    lines += [f"warning: {text}" for text in summary.get("warnings", [])]
    return lines
