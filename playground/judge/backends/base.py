"""What a judge server's protocol must offer the runner; each backend module implements it."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol, TypeVar

if TYPE_CHECKING:
    from ..settings import JudgeSettings


@dataclass(frozen=True)
class Reply:
    text: str
    prompt_tokens: int | None  # as the server counted them; None when it does not say
    truncated: bool = False    # the server cut the prompt to fit its context


@dataclass(frozen=True)
class Preflight:
    state: str  # "ok", "server_down", "model_missing" or "error"
    message: str
    version: str = ""
    model: str = ""  # the model's full name on the server, e.g. "llama3:latest"
    models: tuple[str, ...] = ()  # every model the server has
    digest: str = ""  # the model's digest, when the server reports one
    parameters: str = ""  # the model's size as the server reports it, e.g. "8.0B"

    @property
    def ok(self) -> bool:
        return self.state == "ok"


class BrokenStream(Exception):
    """The reply stream ended before the server's final message."""


class PromptTooLong(Exception):
    """The server refused the prompt: it does not fit the model's context."""


class RequestTimeout(Exception):
    """A request's whole answer did not come within its limit: a server that hangs, or one that trickles
    its reply a byte at a time (which a client's timeout between two reads never catches)."""

    def __init__(self, seconds: float):
        super().__init__(f"no complete answer within {seconds:g} s")
        self.seconds = seconds


T = TypeVar("T")


def within(seconds: float, call: Callable[[], T], cut: Callable[[], None]) -> T:
    """`call()`'s result, or its exception, in at most `seconds` of wall-clock time, however slowly the
    server sends. The call runs in a daemon thread; when time is up, `cut()` closes the client it uses
    (which ends that thread at its next read) and RequestTimeout is raised."""
    outcome: list[Any] = []
    finished = threading.Event()

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # handed to the caller
            outcome.append((False, exc))
        finally:
            finished.set()

    threading.Thread(target=run, name="judge-request", daemon=True).start()
    if not finished.wait(seconds):
        try:
            cut()
        except Exception:
            pass  # closing a client mid-request may complain; the request is abandoned either way
        raise RequestTimeout(seconds)
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


class Backend(Protocol):
    """One server protocol: a class registered in `BACKENDS`, whose facts the Judge tab, `judge --api`,
    the settings and the cache key read. The runner makes one per worker thread and closes it at the end."""

    name: ClassVar[str]          # its `--api` value and its key in BACKENDS
    label: ClassVar[str]         # as the Judge tab lists it
    default_host: ClassVar[str]  # where its server listens unless told otherwise
    host_env: ClassVar[str]      # an environment variable that overrides default_host ("" for none)

    def __init__(self, settings: JudgeSettings) -> None:
        """A client for the settings' server: at `settings.shown_host` (a user:password in the address is
        never in a URL) with `settings.auth_headers()`, waiting at most `settings.timeout` between reads."""

    @staticmethod
    def sent_options(settings: JudgeSettings) -> dict[str, Any]:
        """The sampling options as this protocol sends them (the report shows these)."""

    @staticmethod
    def model_name(model: str) -> str:
        """The judge model's full name on the server: part of the cache key, and what preflight looks for."""

    def chat(self, messages: list[dict[str, str]], schema: dict[str, Any] | None) -> Reply:
        """The judge's reply to a conversation (greedy, with the settings' options); raises on failure."""

    def preflight(self) -> Preflight:
        """Is the server up and does it have the judge model? Never raises for server problems. Through
        this backend's own client, so that closing it ends a check that takes too long."""

    def pull(self, on_progress: Callable[[float, str], None] | None) -> None:
        """Download the judge model to the server, or raise PlaygroundError saying it cannot."""

    def transient(self, exc: BaseException) -> bool:
        """Worth asking again after a pause: busy, a broken stream, a timeout."""

    def fatal(self, exc: BaseException) -> bool:
        """Every further item would fail the same way: the server is gone, the model or key is wrong."""

    def describe(self, exc: BaseException) -> str:
        """A message for the user about a failed call."""

    def kind(self, exc: BaseException) -> str:
        """What went wrong in a few words, to count failures by: "timeout", "HTTP 503", ..."""

    def close(self) -> None:
        """Close the client; called from another thread too, to end a call that took too long (`within`)."""
