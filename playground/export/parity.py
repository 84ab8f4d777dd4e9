"""The parity check: does the exported GGUF answer like the app, and what does its type cost?

The run's own test records are used twice:
- Answered greedily by the app's tuned model through the one generation engine, and by llama.cpp
  (`llama_cpp.Llama`) on the exported file with llama.cpp's own tokenizer. The result counts identical
  answers and, for the others, where the first different token is; it counts prompts that llama.cpp
  tokenises differently from the app, llama.cpp's speed, and both sides' exact match and ROUGE-L
  against the references.
- Read with teacher forcing: the prompt and the reference answer, the same token ids on both sides.
  At each answer position, whether both pick the same next token (top-1 agreement) and how far
  llama.cpp's next-token distribution is from the app's, KL(app || gguf). Unlike identical answers,
  this does not hang on a near-tie early in an answer: it is what a quantisation costs.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .. import batching, metrics, prompts
from ..errors import PlaygroundError
from ..generation import GenerationSettings, answer_text, encode, generate
from ..inspection import kl_divergence, next_token_logprobs

Progress = Callable[[float, str], None]


@dataclass
class Difference:
    record: int            # the record's number in the dataset
    instruction: str
    app: str
    gguf: str
    token: int             # the answer's first token that differs (0-based)
    app_token: str         # what the app wrote there ("" when its answer had ended)
    gguf_token: str


@dataclass
class ParityResult:
    total: int
    identical: int
    same_prompt_tokens: int
    max_new_tokens: int
    differences: list[Difference] = field(default_factory=list)
    # teacher forcing on the references: answer positions read, the share where both pick the same
    # next token, and the mean KL(app || gguf) per position in nats
    positions: int = 0
    top1_agreement: float | None = None
    mean_kl: float | None = None
    tokens_per_s: float | None = None  # llama.cpp's greedy answers, prompt included
    exact_match: dict[str, float] = field(default_factory=dict)  # "app", "gguf": share of the references
    rouge_l: dict[str, float] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        text = (f"{self.identical} of {self.total} answers identical to the app's "
                f"(greedy, {self.max_new_tokens} tokens at most)")
        if self.same_prompt_tokens != self.total:
            text += f"; llama.cpp tokenised {self.total - self.same_prompt_tokens} prompts differently"
        if self.top1_agreement is not None:
            text += (f"; on the references, the same next token at {self.top1_agreement:.1%} of "
                     f"{self.positions} answer positions, mean KL(app || gguf) {nats(self.mean_kl)} nats")
        return text

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "summary": self.summary}


def nats(kl: float) -> str:
    """A KL figure readable at every size: 0.0123, or 4.2e-06 below a thousandth."""
    return f"{kl:.4f}" if kl >= 1e-3 or kl == 0 else f"{kl:.1e}"


COST_COLUMNS = ("file", "size", "llama.cpp tokens/s", "top-1 agreement", "mean KL (nats)",
                "exact match (app / gguf)", "ROUGE-L (app / gguf)")


def cost_row(name: str, size: str, parity: dict[str, Any]) -> tuple[str, ...]:
    """One row of COST_COLUMNS from a parity result's `as_dict()` (as exports.jsonl keeps it); a figure
    an older export did not measure reads "–"."""
    def pair(values: dict[str, float] | None, form: str) -> str:
        return f"{values['app']:{form}} / {values['gguf']:{form}}" if values else "–"

    speed, agreement, kl = parity.get("tokens_per_s"), parity.get("top1_agreement"), parity.get("mean_kl")
    return (name, size, "–" if speed is None else f"{speed:,.0f}",
            "–" if agreement is None else f"{agreement:.1%} of {parity['positions']}",
            "–" if kl is None else nats(kl), pair(parity.get("exact_match"), ".0%"),
            pair(parity.get("rouge_l"), ".2f"))


@dataclass(frozen=True)
class Case:
    record: int
    instruction: str
    prompt: prompts.Prompt
    reference: str
    sample: batching.Sample  # the prompt and the reference answer as training reads them


def cases_for(manager: Any, run_id: str, style: str, tokenizer: Any, template: str | None, count: int) -> list[Case]:
    """The first `count` records of the run's own test split, as the app prompts them."""
    found = manager.run_data(run_id)
    cases = []
    for index in found.indices("test")[:count]:
        record = found.dataset.records[index]
        cases.append(Case(index, record.instruction, prompts.render(record, style, tokenizer, template).inference,
                          record.output, batching.encode(record, style, tokenizer, template, index)))
    if not cases:
        raise PlaygroundError(f"Run {run_id} has no test records to check the export with.")
    return cases


def answer_in_app(manager: Any, run_id: str, cases: list[Case], tokenizer: Any, style: str,
                settings: GenerationSettings, stop: threading.Event | None,
                on_progress: Progress | None, step: int | None = None) -> list[str]:
    side, _ = manager.tuned_side(run_id, step)

    def progress(done: int, total: int) -> None:
        if on_progress:
            on_progress(done / total, f"The app's answers: {done} of {total}")

    return generate([(side, case.prompt) for case in cases], tokenizer, style, settings, stop=stop,
                    on_progress=progress)


def gguf_answers(path: Path, cases: list[Case], tokenizer: Any, stops: list[int], adds_bos: bool,
                 settings: GenerationSettings, stop: threading.Event | None,
                 on_progress: Progress | None, **options: Any) -> tuple[list[list[int]], int, float | None]:
    """llama.cpp's greedy answer tokens for every case, how many prompts it tokenised as the app did, and
    its speed (prompt and answer tokens per second, the file's loading not counted)."""
    llm = load_llama(path, max(len(encode(tokenizer, c.prompt)) for c in cases) + settings.max_new_tokens + 8,
                     **options)
    started, read = time.perf_counter(), 0
    try:
        answers, same = [], 0
        for number, case in enumerate(cases):
            if stop is not None and stop.is_set():
                raise PlaygroundError(f"Stopped during the parity check ({number} of {len(cases)} answered).")
            ids = llm.tokenize(case.prompt.text.encode("utf-8"), add_bos=adds_bos and not case.prompt.has_special_tokens,
                               special=True)
            same += ids == encode(tokenizer, case.prompt)
            read += len(ids)
            llm.reset()
            answer: list[int] = []
            for token in llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0, reset=True):
                if token in stops:
                    break
                answer.append(token)
                if len(answer) >= settings.max_new_tokens:
                    break
            answers.append(answer)
            if on_progress:
                on_progress((number + 1) / len(cases), f"llama.cpp's answers: {number + 1} of {len(cases)}")
    finally:
        llm.close()  # its memory now, not whenever the collector runs
    seconds = time.perf_counter() - started
    return answers, same, (read + sum(map(len, answers))) / seconds if seconds > 0 else None


# llama.cpp's Python package compiles from source, so it is an extra of the app, not a requirement.
INSTALL_LLAMA = "python -m pip install -r requirements-llama.txt"
MISSING_NOTE = ("No parity check: it runs the GGUF file in llama.cpp, whose Python package (llama-cpp-python) "
                f"is not installed. Install it with `{INSTALL_LLAMA}` (pip builds it from source: a C/C++ "
                "compiler and cmake, several minutes the first time), then export again.")


def llama_cpp_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def turn_off_weight_repacking() -> None:
    """Load every later llama.cpp model of this process with weight repacking off (llama.cpp's
    `--no-repack`): on a CPU with AMX or AVX-512, a native build's repacked kernels crashed the whole
    process (Q8_0 exports, and the Q4_K_M default model in llama.cpp's server). The parity check
    measures the file, not llama.cpp's fastest kernels. `Llama()` has no option for it, so the default
    parameters it starts from are changed."""
    from llama_cpp import llama_cpp as bindings  # the module `Llama()` takes its defaults from

    defaults = bindings.llama_model_default_params
    if getattr(defaults, "repacking_off", False):
        return

    def without_repacking() -> Any:
        params = defaults()
        params.use_extra_bufts = False
        return params

    without_repacking.repacking_off = True  # type: ignore[attr-defined]
    bindings.llama_model_default_params = without_repacking


def threads() -> int | None:
    """llama.cpp's threads: the budget OMP_NUM_THREADS gives torch, when set; else llama.cpp's own choice."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def load_llama(path: Path, n_ctx: int, **options: Any) -> Any:
    """The GGUF file in llama.cpp, with weight repacking off (see turn_off_weight_repacking)."""
    try:
        import llama_cpp
    except ImportError:
        raise PlaygroundError(MISSING_NOTE) from None
    turn_off_weight_repacking()
    try:
        return llama_cpp.Llama(str(path), n_ctx=max(n_ctx, 256), n_threads=threads(), verbose=False, seed=0, **options)
    except (ValueError, RuntimeError) as exc:
        raise PlaygroundError(f"llama.cpp could not load {path.name}: {exc}") from None


def compare(cases: list[Case], app: list[str], gguf: list[list[int]], tokenizer: Any, same_prompts: int,
            max_new_tokens: int) -> ParityResult:
    result = ParityResult(len(cases), 0, same_prompts, max_new_tokens)
    for case, app_text, ids in zip(cases, app, gguf):
        gguf_text = answer_text(tokenizer, ids)
        if gguf_text == app_text:
            result.identical += 1
            continue
        result.differences.append(first_difference(case, app_text, ids, tokenizer))
    return result


def first_difference(case: Case, app_text: str, ids: list[int], tokenizer: Any) -> Difference:
    """The first llama.cpp token whose text leaves the app's answer, and the app's token at that place."""
    position = 0
    while position < len(ids) and app_text.startswith(answer_text(tokenizer, ids[:position + 1])):
        position += 1
    written = answer_text(tokenizer, ids[:position])
    rest = app_text[len(written):] if app_text.startswith(written) else app_text
    app_ids = tokenizer(rest, add_special_tokens=False).input_ids
    return Difference(case.record, case.instruction, app_text, answer_text(tokenizer, ids), position,
                      tokenizer.decode(app_ids[:1]) if app_ids else "",
                      tokenizer.decode(ids[position:position + 1]) if position < len(ids) else "")


def teacher_forced(manager: Any, run_id: str, path: Path, cases: list[Case], stop: threading.Event | None,
                   on_progress: Progress | None, step: int | None = None, **options: Any) -> tuple[int, float, float]:
    """(answer positions, top-1 agreement, mean KL(app || gguf)) with both reading each case's prompt and
    reference answer, the same token ids; the app's side is the run's checkpoint at `step` if given."""
    side, _ = manager.tuned_side(run_id, step)
    llm = load_llama(path, max(len(c.sample.ids) for c in cases) + 8, logits_all=True, **options)
    agree, kl_sum, positions = 0, 0.0, 0
    try:
        for number, case in enumerate(cases):
            if stop is not None and stop.is_set():
                raise PlaygroundError(f"Stopped during the parity check ({number} of {len(cases)} read).")
            ids = case.sample.ids
            keep = slice(case.sample.prompt_len - 1, len(ids) - 1)  # the positions that predict the answer
            app = next_token_logprobs([side], ids, keep)[0]
            llm.reset()
            llm.eval(ids)
            gguf = torch.log_softmax(torch.from_numpy(llm.scores[keep].copy()).float(), dim=-1)
            if gguf.shape != app.shape:
                raise PlaygroundError(f"llama.cpp's vocabulary ({gguf.shape[-1]} tokens) differs from the app's "
                                      f"({app.shape[-1]}): the file cannot be compared.")
            agree += int((app.argmax(-1) == gguf.argmax(-1)).sum())
            kl_sum += float(kl_divergence(app, gguf).sum())
            positions += app.shape[0]
            if on_progress:
                on_progress((number + 1) / len(cases), f"Reading the references: {number + 1} of {len(cases)}")
    finally:
        llm.close()
    return positions, agree / max(1, positions), kl_sum / max(1, positions)


def reference_scores(answers: list[str], cases: list[Case]) -> tuple[float, float]:
    """(exact match, mean ROUGE-L) of the answers against the cases' references."""
    pairs = list(zip(answers, (c.reference for c in cases)))
    return (statistics.fmean(metrics.exact_match(a, r) for a, r in pairs),
            statistics.fmean(metrics.rouge_l(a, r) for a, r in pairs))


def check(manager: Any, run_id: str, path: Path, tokenizer: Any, style: str, template: str | None,
          stops: list[int], adds_bos: bool, count: int, settings: GenerationSettings,
          stop: threading.Event | None = None, on_progress: Progress | None = None,
          lora: Path | None = None, app_answers: dict[Any, list[str]] | None = None,
          step: int | None = None) -> ParityResult:
    """Answer `count` test prompts of the run (of its checkpoint at `step`, if given) in the app and with
    the GGUF file (with the LoRA adapter file `lora` on it, if given), compare them, and read their
    references on both sides. The app's
    answers are taken from `app_answers` when it holds them for the same prompts and settings, and
    kept there."""
    options = {"lora_path": str(lora)} if lora is not None else {}
    cases = cases_for(manager, run_id, style, tokenizer, template, count)

    def part(start: float, share: float) -> Progress | None:
        return (lambda f, text: on_progress(start + share * f, text)) if on_progress else None

    asked = (run_id, step, tuple(case.record for case in cases), style, template, repr(settings))
    known = app_answers if app_answers is not None else {}
    if asked not in known:
        known[asked] = answer_in_app(manager, run_id, cases, tokenizer, style, settings, stop, part(0.0, 0.45),
                                     step)
    app = known[asked]
    gguf, same, speed = gguf_answers(path, cases, tokenizer, stops, adds_bos, settings, stop, part(0.45, 0.3),
                                     **options)
    result = compare(cases, app, gguf, tokenizer, same, settings.max_new_tokens)
    result.tokens_per_s = speed
    for side, answers in (("app", app), ("gguf", [answer_text(tokenizer, ids) for ids in gguf])):
        result.exact_match[side], result.rouge_l[side] = reference_scores(answers, cases)
    result.positions, result.top1_agreement, result.mean_kl = teacher_forced(manager, run_id, path, cases, stop,
                                                                             part(0.75, 0.25), step, **options)
    return result
