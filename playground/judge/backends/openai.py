"""Any server that speaks OpenAI's `/v1/chat/completions`: llama.cpp's server, vLLM, LM Studio,
Ollama's compatibility endpoint, hosted APIs.

Through the official `openai` client: it knows the protocol's shapes and its error types (one
class per kind of HTTP failure), and its own retries are switched off, so that the runner's
backoff, deadline and accounting apply to every backend alike. An API key is read from the
environment variable the settings name, never stored. These servers have no `num_ctx`: a prompt
that does not fit is refused (HTTP 400), which the runner records as refused, never as graded.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable

import openai

from ...errors import PlaygroundError
from .base import Preflight, PromptTooLong, Reply

if TYPE_CHECKING:
    from ..settings import JudgeSettings

_TOO_LONG = re.compile(r"context|too long|exceed|maximum.*length|n_ctx", re.IGNORECASE)


def base_url(host: str) -> str:
    """`http://host:port` or `http://host:port/v1` -> the API's base URL, which ends in /v1; an address
    without a scheme is http://."""
    host = host.strip().rstrip("/")
    host = host if "://" in host else f"http://{host}"
    return host if host.endswith("/v1") else f"{host}/v1"


class OpenAIBackend:
    name = "openai"
    label = "OpenAI-compatible (llama.cpp, vLLM, LM Studio, …)"
    default_host = "http://127.0.0.1:8080"  # llama.cpp's server
    host_env = ""

    @staticmethod
    def sent_options(settings: JudgeSettings) -> dict[str, Any]:
        """No context option (the server's is set when it starts); the reply limit is max_tokens."""
        options = settings.options()
        return {"temperature": options["temperature"], "seed": options["seed"], "max_tokens": settings.max_reply_tokens}

    @staticmethod
    def model_name(model: str) -> str:
        return model.strip()

    def __init__(self, settings: JudgeSettings):
        self.settings = settings
        # The address without its user:password, sent as the Authorization header instead (as the client
        # did from the URL): never in a URL an error message could show.
        self.client = openai.OpenAI(base_url=base_url(settings.shown_host), api_key=settings.api_key() or "none",
                                    timeout=settings.timeout, max_retries=0,
                                    default_headers=settings.auth_headers() or None)

    def chat(self, messages: list[dict[str, str]], schema: dict[str, Any] | None) -> Reply:
        options = self.sent_options(self.settings)
        extra: dict[str, Any] = {}
        if schema is not None:
            extra["response_format"] = {"type": "json_schema",
                                        "json_schema": {"name": "judgment", "schema": schema, "strict": True}}
        try:
            response = self.client.chat.completions.create(
                model=self.settings.model, messages=messages, temperature=options["temperature"],
                seed=options["seed"], max_tokens=options["max_tokens"], **extra)
        except openai.BadRequestError as exc:
            if _TOO_LONG.search(str(exc.message)):
                raise PromptTooLong(exc.message) from exc
            raise
        usage = response.usage
        return Reply(response.choices[0].message.content or "", usage.prompt_tokens if usage else None)

    def preflight(self) -> Preflight:
        settings = self.settings
        try:
            names = tuple(model.id for model in self.client.models.list().data)
        except openai.APIConnectionError as exc:
            return Preflight("server_down", self.describe(exc))
        except Exception as exc:
            return Preflight("error", self.describe(exc))
        wanted = settings.model.strip()
        found = [n for n in names if n == wanted or n.rsplit("/", 1)[-1] == wanted]
        if found:
            return Preflight("ok", f"The server at {settings.shown_host} serves the judge model {found[0]}.",
                             model=found[0], models=names)
        return Preflight("model_missing", f"The server at {settings.shown_host} is running but serves no model "
                         f"'{wanted}'; it serves {', '.join(names) or 'none'}. Set the judge model to one of "
                         "those names.", models=names)

    def pull(self, on_progress: Callable[[float, str], None] | None) -> None:
        raise PlaygroundError(f"The server at {self.settings.shown_host} speaks the OpenAI protocol, which has no way "
                              "to download a model: load the judge model in the server itself.")

    def transient(self, exc: BaseException) -> bool:
        if isinstance(exc, openai.APITimeoutError):
            return True
        if isinstance(exc, openai.APIStatusError):
            return exc.status_code in (408, 409, 429, 500, 502, 503, 504)
        return isinstance(exc, openai.APIConnectionError) and not self.fatal(exc)

    def fatal(self, exc: BaseException) -> bool:
        if isinstance(exc, openai.APIStatusError):
            return exc.status_code in (401, 403, 404)
        # nothing listens there (a timeout is a slow server, not a dead one). By the cause's class name:
        # the client's transport is httpx or its successor httpx2, depending on the client's version.
        return (isinstance(exc, openai.APIConnectionError) and not isinstance(exc, openai.APITimeoutError)
                and type(exc.__cause__).__name__ == "ConnectError")

    def describe(self, exc: BaseException) -> str:
        host, settings = self.settings.shown_host, self.settings
        if isinstance(exc, PromptTooLong):
            return f"The server at {host} refused the prompt: it does not fit the judge model's context ({exc})."
        if isinstance(exc, openai.APITimeoutError):
            return (f"No answer from the server at {host} within {settings.timeout:g} s: raise the timeout or "
                    "lower the concurrency.")
        if isinstance(exc, openai.APIConnectionError):
            return (f"Cannot reach an OpenAI-compatible server at {host} ({exc.__cause__ or exc}). Start it, or "
                    "set the server address to where it runs.")
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            where = f"the key in {settings.api_key_env}" if settings.api_key_env else "no API key"
            return f"The server at {host} refused {where} (HTTP {exc.status_code}): {exc.message}"
        if isinstance(exc, openai.NotFoundError):
            return (f"The server at {host} has no model '{settings.model}' or no chat endpoint at "
                    f"{base_url(host)}/chat/completions (HTTP 404): {exc.message}")
        if isinstance(exc, openai.APIStatusError):
            return f"The server at {host} answered an error (HTTP {exc.status_code}): {exc.message}"
        return f"Unexpected problem talking to the server at {host}: {type(exc).__name__}: {exc}"

    def kind(self, exc: BaseException) -> str:
        if isinstance(exc, PromptTooLong):
            return "prompt too long"
        if isinstance(exc, openai.APITimeoutError):
            return "timeout"
        if isinstance(exc, openai.APIConnectionError):
            return "server unreachable" if self.fatal(exc) else "broken connection"
        if isinstance(exc, openai.APIStatusError):
            return f"HTTP {exc.status_code}"
        return type(exc).__name__

    def close(self) -> None:
        self.client.close()
