"""Ollama's own API through the official `ollama` client.

The client raises the built-in ConnectionError for a refused connection on calls that are not
streamed, httpx.ConnectError for streamed ones (chat and pull here), `ollama.ResponseError` for
HTTP errors (status -1 for an error line inside a stream) and httpx exceptions for timeouts.
A prompt longer than `num_ctx` is cut by the server without a word: `prompt_eval_count` tells.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import httpx
import ollama

from ...errors import PlaygroundError
from .base import BrokenStream, Preflight, Reply

if TYPE_CHECKING:
    from ..settings import JudgeSettings


class OllamaBackend:
    name = "ollama"
    label = "Ollama"
    default_host = "http://127.0.0.1:11434"
    host_env = "OLLAMA_HOST"

    @staticmethod
    def sent_options(settings: JudgeSettings) -> dict[str, Any]:
        return settings.options()

    @staticmethod
    def model_name(model: str) -> str:
        """Ollama reads a name without a tag as `:latest`."""
        model = model.strip()
        return model if ":" in model else f"{model}:latest"

    def __init__(self, settings: JudgeSettings):
        self.settings = settings
        # The address without its user:password, which goes in the Authorization header instead (the
        # client would drop it): never in a URL an error message or a log could show.
        self.client = ollama.Client(host=settings.shown_host, timeout=settings.timeout,
                                    headers=settings.auth_headers())

    def chat(self, messages: list[dict[str, str]], schema: dict[str, Any] | None) -> Reply:
        # Streamed, so that the timeout bounds the wait for each piece rather than the whole reply.
        parts, final = [], None
        for chunk in self.client.chat(model=self.settings.model, messages=messages, stream=True, format=schema,
                                      options=self.sent_options(self.settings)):
            parts.append(chunk.message.content or "")
            if chunk.done:
                final = chunk
        if final is None:
            raise BrokenStream("the reply ended before the server's final message")
        count = final.prompt_eval_count
        return Reply("".join(parts), count, truncated=count is not None and count >= self.settings.options()["num_ctx"])

    def preflight(self) -> Preflight:
        settings = self.settings
        try:
            # The client has no call for /api/version; _request_raw maps errors like its public calls.
            version = str(self.client._request_raw("GET", "/api/version").json().get("version", ""))
            listed = {m.model or "": m for m in self.client.list().models}
        except (ConnectionError, httpx.ConnectError, httpx.TimeoutException) as exc:
            return Preflight("server_down", self.describe(exc))
        except Exception as exc:  # an HTTP error or a reply that is not Ollama's
            return Preflight("error", self.describe(exc))
        names = tuple(listed)
        wanted = self.model_name(settings.model)
        if wanted in listed:
            found = listed[wanted]
            size = getattr(getattr(found, "details", None), "parameter_size", "") or ""
            return Preflight("ok", f"Ollama {version} at {settings.shown_host}: the judge model {wanted} is ready.",
                             version, wanted, names, digest=found.digest or "", parameters=size)
        family = wanted.split(":")[0]
        others = [n for n in names if n.split(":")[0] == family]
        hint = f" It has {', '.join(others)}: set the judge model to one of those names, or pull." if others else ""
        return Preflight("model_missing", f"The Ollama server at {settings.shown_host} is running but has no model "
                         f"'{settings.model}'. Pull it with `ollama pull {settings.model}` (about 4.7 GB for "
                         f"llama3) or with the Pull button.{hint}", version, "", names)

    def pull(self, on_progress: Callable[[float, str], None] | None) -> None:
        """Pull the judge model, reporting (fraction done 0..1, status text) as the server streams it."""
        totals: dict[str, int] = {}
        completed: dict[str, int] = {}
        try:
            for part in self.client.pull(self.settings.model, stream=True):
                if part.digest and part.total:
                    totals[part.digest] = part.total
                    completed[part.digest] = part.completed or 0
                fraction = sum(completed.values()) / sum(totals.values()) if totals else 0.0
                if part.status == "success":
                    fraction = 1.0
                if on_progress:
                    on_progress(fraction, part.status or "")
        except (ConnectionError, ollama.ResponseError, httpx.HTTPError) as exc:
            raise PlaygroundError(f"Pulling '{self.settings.model}' failed. {self.describe(exc)}") from None

    def transient(self, exc: BaseException) -> bool:
        if isinstance(exc, ollama.ResponseError):
            return exc.status_code in (-1, 429, 500, 502, 503, 504)  # -1: an error line inside a stream
        return isinstance(exc, (ConnectionError, httpx.TransportError, BrokenStream))

    def fatal(self, exc: BaseException) -> bool:
        if isinstance(exc, ollama.ResponseError):
            return exc.status_code in (400, 401, 403, 404)
        return isinstance(exc, (ConnectionError, httpx.ConnectError))

    def describe(self, exc: BaseException) -> str:
        host, settings = self.settings.shown_host, self.settings
        if isinstance(exc, (ConnectionError, httpx.ConnectError)):  # nothing listens at the host
            return (f"Cannot reach the Ollama server at {host}. Start it with `ollama serve` "
                    "(or set the host, or OLLAMA_HOST, to where it runs).")
        if isinstance(exc, ollama.ResponseError):
            if exc.status_code == 404 and "not found" in str(exc.error):
                return (f"The Ollama server at {host} has no model '{settings.model}' ({exc.error}). "
                        f"Pull it with `ollama pull {settings.model}`.")
            if exc.status_code == 503:
                return (f"The Ollama server at {host} is busy ({exc.error}). Lower the judge concurrency, "
                        "or start the server with a larger OLLAMA_NUM_PARALLEL / OLLAMA_MAX_QUEUE.")
            if exc.status_code == -1:
                return f"The Ollama server at {host} failed while answering: {exc.error}"
            return f"The Ollama server at {host} answered an error (HTTP {exc.status_code}): {exc.error}"
        if isinstance(exc, httpx.TimeoutException):
            return (f"No answer from the Ollama server at {host} within {settings.timeout:g} s. The model "
                    "may still be loading or the server is overloaded: raise the timeout or lower the concurrency.")
        if isinstance(exc, (httpx.TransportError, BrokenStream)):
            return f"The connection to the Ollama server at {host} broke ({type(exc).__name__}: {exc})."
        return f"Unexpected problem talking to the Ollama server at {host}: {type(exc).__name__}: {exc}"

    def kind(self, exc: BaseException) -> str:
        if isinstance(exc, (ConnectionError, httpx.ConnectError)):
            return "server unreachable"
        if isinstance(exc, ollama.ResponseError):
            return "error mid-reply" if exc.status_code == -1 else f"HTTP {exc.status_code}"
        if isinstance(exc, httpx.TimeoutException):
            return "timeout"
        if isinstance(exc, (httpx.TransportError, BrokenStream)):
            return "broken connection"
        return type(exc).__name__

    def close(self) -> None:
        self.client.close()
