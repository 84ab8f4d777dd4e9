"""Asking the judge: several requests in flight, retries with backoff, a re-ask, the cache.

A reply with no answer is asked again once (the book's prompt: not asked again), then counted as
unparsed: never as 0, never dropped. Transient failures (busy, a broken stream, a timeout) are
retried with backoff; what still fails is an error for that item and the run goes on, unless every
further item would fail the same way (the server is gone, the model is missing): then nothing more
is asked and the rest are "skipped" with the reason. The same happens after `give_up_after` failed
requests in a row (a server that hangs), when the grading's deadline passes, and on Stop; requests
in flight are then not waited for. Items with the same prompt are asked once.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from . import backends
from .backends import Backend, PromptTooLong, RequestTimeout
from .cache import JudgeCache, cache_key
from .parsing import parse_book_score, parse_choice, parse_score
from .prompts import (PAIRWISE_TEMPLATE, REASK_CHOICE, REASK_SCORE, SCORE_SCHEMA, JudgeItem, PairItem,
                      render_pair_prompt, render_prompt)
from .settings import JudgeSettings

STATUSES = ("scored", "unparsed", "error", "skipped")
EMPTY_IN_BOOK = "(the response is empty: the book's script scores it 0 without asking the judge)"


@dataclass
class _Job:
    key: str  # cache key
    prompt: str
    parse: Callable[[str], Any]
    reask: str | None  # None: ask once
    format: dict[str, Any] | None = None
    fixed: Any = None  # an answer known without asking (the book's 0 for an empty response)


@dataclass
class _Outcome:
    status: str  # one of STATUSES
    value: Any = None
    reply: str = ""
    error: str = ""
    kind: str = ""  # what went wrong, in a few words ("timeout", "HTTP 503", "stopped", ...)
    truncated: bool = False
    prompt_tokens: int | None = None
    requests: int = 0
    cached: bool = False
    fatal: bool = False


class _Either:
    """An Event-like view of two events: set when either is. wait() wakes at once on the second
    and within 50 ms on the first (threading has no wait on several events)."""

    def __init__(self, a: threading.Event, b: threading.Event):
        self._a, self._b = a, b

    def is_set(self) -> bool:
        return self._a.is_set() or self._b.is_set()

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.is_set() and (left := deadline - time.monotonic()) > 0:
            self._b.wait(min(left, 0.05))
        return self.is_set()


class _Stopped(Exception):
    pass


class _Bounded:
    """A backend whose every chat request ends within the settings' timeout, its whole reply included
    (a client's own timeout only bounds the wait between two reads, which a server sending a byte a
    second never exceeds): when time is up, its client is closed, which ends the request, and a fresh
    one asks the next. A request cut so counts as a timeout: retried, and a failure for the breaker."""

    def __init__(self, settings: JudgeSettings):
        self.settings = settings
        self.backend = backends.make(settings)

    def chat(self, messages: list[dict[str, str]], schema: dict[str, Any] | None) -> backends.Reply:
        backend = self.backend

        def cut() -> None:
            backend.close()
            self.backend = backends.make(self.settings)

        return backends.within(self.settings.timeout, lambda: backend.chat(messages, schema), cut)

    def transient(self, exc: BaseException) -> bool:
        return isinstance(exc, RequestTimeout) or self.backend.transient(exc)

    def fatal(self, exc: BaseException) -> bool:
        return not isinstance(exc, RequestTimeout) and self.backend.fatal(exc)

    def describe(self, exc: BaseException) -> str:
        if isinstance(exc, RequestTimeout):
            return (f"No complete answer from the server at {self.settings.shown_host} within {exc.seconds:g} s (the "
                    "limit for one request, its whole reply included): it is overloaded or sends too slowly; raise "
                    "the timeout or lower the concurrency.")
        return self.backend.describe(exc)

    def kind(self, exc: BaseException) -> str:
        return "timeout" if isinstance(exc, RequestTimeout) else self.backend.kind(exc)

    def close(self) -> None:
        self.backend.close()


class _Halt:
    """Why the grading asks nothing more: the first reason given wins, and `event` is set. `kind` says
    which of STOP_KINDS it was; `reason` says it to the user."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = ""
        self.kind = ""
        self._lock = threading.Lock()
        self._failures = 0  # failed requests in a row, over every worker

    def set(self, kind: str, reason: str) -> None:
        assert kind in STOP_KINDS, kind
        with self._lock:
            if not self.event.is_set():
                self.kind, self.reason = kind, reason
                self.event.set()

    def request_failed(self, limit: int, why: str) -> None:
        """The circuit breaker: `limit` failed requests in a row (no reply in between) end the grading."""
        with self._lock:
            self._failures += 1
            tripped = self._failures >= limit
        if tripped:
            self.set("gave up", f"gave up after {limit} failed requests in a row; the last: {why}")

    def request_answered(self) -> None:
        with self._lock:
            self._failures = 0


def _chat_with_retries(backend: Backend, settings: JudgeSettings, messages: list[dict[str, str]],
                       schema: dict[str, Any] | None, halt: _Halt, stop: _Either,
                       counter: list[int]) -> backends.Reply:
    """Retry transient failures with exponential backoff; `counter[0]` counts the requests sent."""
    for attempt in range(settings.retries + 1):
        if stop.is_set():
            raise _Stopped()
        counter[0] += 1
        try:
            reply = backend.chat(messages, schema)
        except Exception as exc:
            if isinstance(exc, PromptTooLong):  # the server answered: it is alive
                halt.request_answered()
            else:
                halt.request_failed(settings.give_up_after, backend.describe(exc))
            if not backend.transient(exc) or attempt == settings.retries:
                raise
        else:
            halt.request_answered()
            return reply
        if stop.wait(settings.backoff * 2 ** attempt):
            raise _Stopped()
    raise AssertionError("unreachable")


def _ask(backend: Backend, job: _Job, settings: JudgeSettings, halt: _Halt, stop: _Either) -> _Outcome:
    """Ask; re-ask once when the reply holds no answer; keep every reply."""
    messages = [{"role": "user", "content": job.prompt}]
    replies: list[str] = []
    counter = [0]
    truncated, tokens = False, None
    try:
        for _ in range(2 if job.reask else 1):
            reply = _chat_with_retries(backend, settings, messages, job.format, halt, stop, counter)
            replies.append(reply.text)
            tokens = reply.prompt_tokens if tokens is None else tokens  # the first prompt's count is the item's
            truncated = truncated or reply.truncated
            value = job.parse(reply.text)
            if value is not None:
                return _Outcome("scored", value, "\n[asked again]\n".join(replies), truncated=truncated,
                                prompt_tokens=tokens, requests=counter[0])
            # A greedy judge repeats itself on the same prompt, so the re-ask continues the conversation.
            messages += [{"role": "assistant", "content": reply.text}, {"role": "user", "content": job.reask or ""}]
    except _Stopped:
        return _Outcome("skipped", error=halt.reason or STOPPED, kind=halt.kind or "stopped", requests=counter[0])
    except Exception as exc:  # one item's failure never ends the run
        return _Outcome("error", reply="\n[asked again]\n".join(replies), error=backend.describe(exc),
                        kind=backend.kind(exc), truncated=truncated or isinstance(exc, PromptTooLong),
                        prompt_tokens=tokens, requests=counter[0], fatal=backend.fatal(exc))
    return _Outcome("unparsed", None, "\n[asked again]\n".join(replies), truncated=truncated,
                    prompt_tokens=tokens, requests=counter[0])


STOPPED = "stopped before an answer"
# Why a grading stops asking: the user stopped it, the circuit breaker tripped, the deadline passed,
# or a request failed in a way every further request would (the rest is "not asked").
STOP_KINDS = ("stopped", "gave up", "deadline", "not asked")


def _cached(jobs: list[_Job], cache: JudgeCache) -> list[_Outcome | None]:
    """The outcomes known without asking: fixed answers and cached replies."""
    outcomes: list[_Outcome | None] = [None] * len(jobs)
    for i, job in enumerate(jobs):
        if job.fixed is not None:
            outcomes[i] = _Outcome("scored", job.fixed, EMPTY_IN_BOOK)
        elif (hit := cache.get(job.key)) is not None:
            outcomes[i] = _Outcome(hit["status"], hit.get("value"), hit.get("reply", ""),
                                   truncated=bool(hit.get("truncated")), prompt_tokens=hit.get("prompt_tokens"),
                                   cached=True)
    return outcomes


def _start_workers(settings: JudgeSettings, todo: queue.Queue, done: queue.Queue, jobs: list[_Job],
                   halt: _Halt, halted: _Either) -> None:
    """`concurrency` daemon threads, each with its own backend (client), asking until `todo` is empty.

    Daemon threads, so that a request hanging in a dead server never holds the caller: when the
    grading stops, gives up or passes its deadline, it returns and the thread ends with its timeout
    (each request's whole reply is bounded by it: `_Bounded`)."""

    def work() -> None:
        backend = _Bounded(settings)
        try:
            while True:
                try:
                    members = todo.get_nowait()
                except queue.Empty:
                    return
                if halted.is_set():
                    outcome = _Outcome("skipped", error=halt.reason or STOPPED, kind=halt.kind or "stopped")
                else:
                    outcome = _ask(backend, jobs[members[0]], settings, halt, halted)
                    if outcome.fatal:  # every further item would fail the same way
                        halt.set("not asked", f"not asked: {outcome.error}")
                done.put((members, outcome))
        finally:
            backend.close()

    for n in range(min(settings.concurrency, todo.qsize())):
        threading.Thread(target=work, name=f"judge-{n}", daemon=True).start()


def _run(jobs: list[_Job], settings: JudgeSettings, cache: JudgeCache | None,
         on_progress: Callable[[int, int], None] | None, stop: threading.Event | None) -> list[_Outcome]:
    """Every job's outcome, in order: from the cache, or asked with `concurrency` requests in flight.

    Asking ends early when `stop` is set, the deadline passes or the circuit breaker trips: the
    items not answered by then come back "skipped" with the reason, and nothing waits for the
    requests still in flight."""
    settings.check()
    cache = cache if cache is not None else JudgeCache(None)
    stop = stop or threading.Event()
    outcomes = _cached(jobs, cache)
    same: dict[str, list[int]] = {}  # each prompt is asked once, for every item that has it
    for i, outcome in enumerate(outcomes):
        if outcome is None:
            same.setdefault(jobs[i].key, []).append(i)
    finished = len(jobs) - sum(len(members) for members in same.values())
    if on_progress:
        on_progress(finished, len(jobs))
    halt = _Halt()
    halted = _Either(stop, halt.event)
    todo: queue.Queue = queue.Queue()
    done: queue.Queue = queue.Queue()
    for members in same.values():
        todo.put(members)
    _start_workers(settings, todo, done, jobs, halt, halted)
    deadline = time.monotonic() + settings.deadline
    waiting = len(same)
    try:
        while waiting:
            try:
                members, outcome = done.get(timeout=0.05)
            except queue.Empty:
                if stop.is_set():
                    halt.set("stopped", STOPPED)
                elif time.monotonic() > deadline:
                    halt.set("deadline", f"deadline: the grading's limit of {settings.deadline:g} s passed; grade again to "
                             "ask for the rest (the replies so far are kept), or raise the limit")
                if halt.event.is_set() and (stop.is_set() or halt.kind != "not asked"):
                    break  # requests in flight are not waited for
                continue
            waiting -= 1
            for i in members:
                outcomes[i] = outcome
            if outcome.status in ("scored", "unparsed"):  # errors are asked again next time
                cache.put({"key": jobs[members[0]].key, "status": outcome.status, "value": outcome.value,
                           "reply": outcome.reply, "truncated": outcome.truncated,
                           "prompt_tokens": outcome.prompt_tokens})
            finished += len(members)
            if on_progress:
                on_progress(finished, len(jobs))
    finally:
        halt.set("stopped", STOPPED)  # if the caller's callback raised, the queued items return at once
    return [o or _Outcome("skipped", error=halt.reason, kind=halt.kind) for o in outcomes]


# ---------------------------------------------------------------- scores


@dataclass
class Judgment:
    key: str
    side: str
    score: int | None  # None unless status is "scored"
    status: str  # "scored", "unparsed" (the reply held no score), "error" or "skipped" (not asked)
    reply: str = ""  # the judge's raw reply (both, when it was asked again)
    error: str = ""
    kind: str = ""  # what went wrong, in a few words: "timeout", "HTTP 503", "stopped", "gave up", ...
    truncated: bool = False  # the prompt did not fit the judge's context: cut by the server, or refused
    prompt_tokens: int | None = None
    cached: bool = False
    requests: int = 0  # chat requests sent for it in this run

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def grade(items: list[JudgeItem], settings: JudgeSettings, cache: JudgeCache | None = None,
          on_progress: Callable[[int, int], None] | None = None,
          stop: threading.Event | None = None) -> list[Judgment]:
    """A judgment for every item, in order. `on_progress(done, total)` is called as items finish;
    setting `stop` asks nothing more (the items not asked come back "skipped")."""
    template = settings.effective_template()
    jobs = [_Job(cache_key(settings, "score", template, instruction=it.instruction, input=it.input,
                           reference=it.reference, response=it.response),
                 render_prompt(it, settings),
                 parse_book_score if settings.book else parse_score,
                 None if settings.book else REASK_SCORE,
                 SCORE_SCHEMA if settings.structured else None,
                 fixed=0 if settings.book and it.response == "" else None) for it in items]
    outcomes = _run(jobs, settings, cache, on_progress, stop)
    return [Judgment(it.key, it.side, o.value if o.status == "scored" else None, o.status, o.reply, o.error,
                     o.kind, o.truncated, o.prompt_tokens, o.cached, o.requests) for it, o in zip(items, outcomes)]


# ---------------------------------------------------------------- pairwise


@dataclass
class PairJudgment:
    key: str
    base_first: str | None  # the winner ("base", "tuned" or "tie") when base was shown as A
    tuned_first: str | None  # the winner when tuned was shown as A
    statuses: tuple[str, str]  # per order, as for Judgment
    replies: tuple[str, str]
    errors: tuple[str, str] = ("", "")
    kinds: tuple[str, str] = ("", "")

    @property
    def disagree(self) -> bool | None:
        """The two orders picked differently (position bias); None unless both gave a verdict."""
        if self.base_first is None or self.tuned_first is None:
            return None
        return self.base_first != self.tuned_first

    @property
    def verdict(self) -> str | None:
        """The example's verdict: the two orders' common choice; a tie when they disagree."""
        if self.disagree is None:
            return None
        return "tie" if self.disagree else self.base_first


def grade_pairwise(pairs: list[PairItem], settings: JudgeSettings, cache: JudgeCache | None = None,
                   on_progress: Callable[[int, int], None] | None = None,
                   stop: threading.Event | None = None) -> list[PairJudgment]:
    """Ask which answer is better, in both orders (base as A, then tuned as A), to expose position
    bias. Plain-text replies ("A", "B" or "tie"); `settings.template` and `structured` are not used."""
    jobs = []
    for pair in pairs:
        for first, second in ((pair.base, pair.tuned), (pair.tuned, pair.base)):
            key = cache_key(settings, "pairwise", PAIRWISE_TEMPLATE, instruction=pair.instruction,
                            input=pair.input, reference=pair.reference, a=first, b=second)
            jobs.append(_Job(key, render_pair_prompt(pair, first, second), parse_choice, REASK_CHOICE))
    outcomes = _run(jobs, settings, cache, on_progress, stop)
    results = []
    for n, pair in enumerate(pairs):
        one, two = outcomes[2 * n], outcomes[2 * n + 1]
        results.append(PairJudgment(
            pair.key, _winner(one, a="base", b="tuned"), _winner(two, a="tuned", b="base"),
            (one.status, two.status), (one.reply, two.reply), (one.error, two.error), (one.kind, two.kind)))
    return results


def _winner(outcome: _Outcome, a: str, b: str) -> str | None:
    if outcome.status != "scored":
        return None
    return {"A": a, "B": b, "tie": "tie"}[outcome.value]
