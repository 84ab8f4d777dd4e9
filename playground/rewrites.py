"""Preference pairs from a served model, the way the book's `create-preference-data-ollama.ipynb` makes
them (chapter 7's bonus): for each record, a politeness is drawn ("polite" or "impolite", seeded), and
the model (a judge backend: Ollama or an OpenAI-compatible server) rewrites the record's output slightly
in that direction with the book's prompt. A polite rewrite is chosen over the original output; the
original is chosen over an impolite rewrite. Replies are cached on disk like the judge's (keyed by
everything that decides them), so a second pass over the same records asks nothing again.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import PlaygroundError
from .judge import backends
from .judge.cache import JudgeCache, cache_key
from .judge.settings import JudgeSettings
from .preference import Collected, Pair
from .prompts import alpaca_instruction

# The notebook's prompt character for character (its sentences run together), `format_input(entry)` as {input}.
TEMPLATE = ("Given the input `{input}` and correct output `{output}`, slightly rewrite the output to be more "
            "{politeness}.Keep the modification minimal.Only return return the generated response and nothing else.")
POLITENESS = ("polite", "impolite")
CACHE_FILE = "rewrites-cache.jsonl"  # in the models folder, shared by every rewrite


def rewrite_pairs(records: Sequence[Any], settings: JudgeSettings, models_dir: Path, seed: int = 123,
                  on_progress: Callable[[int, int], None] | None = None) -> Collected:
    """A pair per record whose rewrite came back different from its output (the rest left out, by reason)."""
    backend = backends.make(settings)
    try:
        ready = backend.preflight()
        if not ready.ok:
            raise PlaygroundError(f"No rewrites: {ready.message}")
        cache = JudgeCache(Path(models_dir) / CACHE_FILE, inside=Path(models_dir))
        draw, found = random.Random(seed), Collected()
        for number, record in enumerate(records):
            politeness = draw.choice(POLITENESS)
            rewritten = _rewrite(backend, cache, settings, record, politeness).strip()
            if not rewritten or rewritten == record.output.strip():
                found.leave_out("rewrites that came back empty or unchanged")
            else:
                polite = politeness == "polite"
                found.pairs.append(Pair(record.instruction, record.input, rewritten if polite else record.output,
                                        record.output if polite else rewritten,
                                        {"source": "rewrite", "model": settings.model, "politeness": politeness,
                                         "record": number, "seed": seed}, record.output))
            if on_progress:
                on_progress(number + 1, len(records))
        return found
    finally:
        backend.close()


def _rewrite(backend: Any, cache: JudgeCache, settings: JudgeSettings, record: Any, politeness: str) -> str:
    """The model's rewrite of the record's output, from the cache when it was asked before."""
    prompt = TEMPLATE.format(input=alpaca_instruction(record), output=record.output, politeness=politeness)
    key = cache_key(settings, "rewrite", TEMPLATE, prompt=prompt)
    kept = cache.get(key)
    if kept is not None:
        return kept["reply"]
    try:
        reply = backend.chat([{"role": "user", "content": prompt}], None)
    except Exception as exc:  # the backend names what went wrong (server down, timeout, HTTP error)
        raise PlaygroundError(f"The rewrite of record {record.instruction[:60]!r} failed: "
                              f"{backend.describe(exc)}") from None
    cache.put({"key": key, "reply": reply.text})
    return reply.text
