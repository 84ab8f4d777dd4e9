"""What a judge server's protocol must offer the runner; each backend module implements it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol

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


class Backend(Protocol):
    """One server protocol: a class registered in `BACKENDS`, whose facts the Judge tab, `judge --api`,
    the settings and the cache key read. The runner makes one per worker thread and closes it at the end."""

    name: ClassVar[str]          # its `--api` value and its key in BACKENDS
    label: ClassVar[str]         # as the Judge tab lists it
    default_host: ClassVar[str]  # where its server listens unless told otherwise
    host_env: ClassVar[str]      # an environment variable that overrides default_host ("" for none)

    def __init__(self, settings: JudgeSettings) -> None: ...

    @staticmethod
    def sent_options(settings: JudgeSettings) -> dict[str, Any]:
        """The sampling options as this protocol sends them (the report shows these)."""

    @staticmethod
    def model_name(model: str) -> str:
        """The judge model's full name on the server: part of the cache key, and what preflight looks for."""

    def chat(self, messages: list[dict[str, str]], schema: dict[str, Any] | None) -> Reply:
        """The judge's reply to a conversation (greedy, with the settings' options); raises on failure."""

    def preflight(self) -> Preflight:
        """Is the server up and does it have the judge model? Never raises for server problems."""

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

    def close(self) -> None: ...
