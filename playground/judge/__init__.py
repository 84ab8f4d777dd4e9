"""The judge: scores model responses 0–100 through a judge model on a server (chapter 7 of the book).

The judge gets the instruction (and input), the reference output and the response, and answers a
score. It runs on Ollama (its own API, the default) or on any OpenAI-compatible server (llama.cpp's
server, vLLM, LM Studio, hosted APIs), one backend module each. Modules: `settings` (what is asked
and where), `prompts` (what the judge is shown), `parsing` (reading replies), `backends` (server
protocols), `cache` (replies on disk), `runner` (concurrency, retries, re-asks), `report` (averages
with intervals and bias checks), `files` (responses files).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from . import backends
from .backends import BACKENDS, Preflight, register_backend
from .cache import JudgeCache, cache_key
from .files import RESPONSE_KEYS, items_from_responses, pairs_from_responses, read_responses, write_responses
from .parsing import parse_book_score, parse_choice, parse_score
from .prompts import (PAIRWISE_TEMPLATE, REASK_CHOICE, REASK_SCORE, SCORE_SCHEMA, JudgeItem, PairItem,
                      render_pair_prompt, render_prompt)
from .report import summarize, summarize_pairwise
from .runner import STATUSES, Judgment, PairJudgment, grade, grade_pairwise
from .settings import BOOK_OPTIONS, BOOK_TEMPLATE, DEFAULT_TEMPLATE, JudgeSettings, check_template


QUICK_CHECK = 10.0  # seconds at most for the server check, however slowly the server answers


def preflight(settings: JudgeSettings) -> Preflight:
    """Is the server up and does it have the judge model? Never raises for server problems. Ends within
    `QUICK_CHECK` seconds (or the settings' timeout when shorter), even on a server that hangs or sends its
    answer a byte at a time."""
    settings.check()
    limit = min(settings.timeout, QUICK_CHECK)
    backend = backends.make(dataclasses.replace(settings, timeout=limit))
    try:
        return backends.within(limit, backend.preflight, backend.close)
    except backends.RequestTimeout:
        return Preflight("error", f"The server at {settings.shown_host} sent no complete answer to the check within "
                         f"{limit:g} s: it is overloaded, or it is not the kind of server chosen "
                         f"({backends.backend_of(settings.api).label}).")
    finally:
        backend.close()


def pull(settings: JudgeSettings, on_progress: Callable[[float, str], None] | None = None) -> None:
    """Download the judge model to the server (Ollama), reporting (fraction 0..1, status text)."""
    settings.check()
    backend = backends.make(settings)
    try:
        backend.pull(on_progress)
    finally:
        backend.close()


__all__ = [
    "BACKENDS", "BOOK_OPTIONS", "BOOK_TEMPLATE", "DEFAULT_TEMPLATE", "PAIRWISE_TEMPLATE",
    "REASK_CHOICE", "REASK_SCORE", "RESPONSE_KEYS", "SCORE_SCHEMA", "STATUSES", "JudgeCache", "JudgeItem",
    "JudgeSettings", "Judgment", "PairItem", "PairJudgment", "Preflight", "cache_key", "check_template", "grade",
    "grade_pairwise", "items_from_responses", "pairs_from_responses", "parse_book_score", "parse_choice",
    "parse_score", "preflight", "pull", "read_responses", "register_backend", "render_pair_prompt", "render_prompt",
    "summarize", "summarize_pairwise", "write_responses",
]
