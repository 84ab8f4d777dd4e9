"""What a grading is asked with: the server, its protocol, the judge model, the prompt and options."""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import PlaygroundError
from .backends import BACKENDS, backend_of, default_host

DEFAULT_API = "ollama"  # a name in BACKENDS
PROMPTS = ("default", "book")
PROMPT_VERSION = 1  # part of the cache key: bump when the fixed prompt wording changes

# The book's prompt (ch. 7), with the response between markers instead of backticks. {input} is the
# Alpaca "### Input:" section, heading included, or nothing when the record has no input.
DEFAULT_TEMPLATE = (
    "Given the input `Below is an instruction that describes a task. Write a response that "
    "appropriately completes the request.\n\n### Instruction:\n{instruction}{input}` "
    "and correct output `{reference}`, score the model response\n{response}\n"
    "on a scale from 0 to 100, where 100 is the best score. Respond with the integer number only."
)
# ollama_evaluate.py's prompt, character for character: the response inside backticks, no markers.
BOOK_TEMPLATE = (
    "Given the input `Below is an instruction that describes a task. Write a response that "
    "appropriately completes the request.\n\n### Instruction:\n{instruction}{input}` "
    "and correct output `{reference}`, score the model response `{response}` "
    "on a scale from 0 to 100, where 100 is the best score. Respond with the integer number only."
)
BOOK_OPTIONS = {"temperature": 0.0, "seed": 123, "num_ctx": 2048}
PLACEHOLDERS = ("instruction", "input", "reference", "response")
REQUIRED = ("instruction", "reference", "response")
PLACEHOLDER = re.compile(r"\{(\w+)\}")
# A scheme written without "//" ("javascript:alert(1)", "mailto:x"), told apart from "localhost:11434"
OTHER_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(?![0-9]|$)")


def without_credentials(host: str) -> tuple[str, tuple[str, str] | None]:
    """(the address with any `user:password@` cut out, (user, password) or None). Works on any text,
    valid address or not, so that an error about a bad address never shows its password."""
    text = host.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    end = min([i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0], default=len(rest))
    userinfo, at, hostport = rest[:end].rpartition("@")
    if not at:
        return text, None
    user, _, password = userinfo.partition(":")
    return scheme + sep + hostport + rest[end:], (unquote(user), unquote(password))


def check_host(host: str) -> str | None:
    """What is wrong with a judge server's address, in a few words naming it; None when it can be used.
    `http://` or `https://`, a host name, an optional port and path; no scheme means http://."""
    shown, _ = without_credentials(host)
    if not shown:
        return "the server address is empty"
    where = f"the server address {shown!r}"
    if any(ch.isspace() or ord(ch) < 32 for ch in shown):
        return f"{where} contains spaces or control characters"
    scheme = shown.partition("://")[0].lower() if "://" in shown else ""
    if not scheme and (other := OTHER_SCHEME.match(shown)):
        scheme = other.group(0)[:-1].lower()
    if scheme and scheme not in ("http", "https"):
        return f"{where} must start with http:// or https:// (not {scheme}:)"
    try:
        parts = urlsplit(shown if scheme else f"http://{shown}")
        port = parts.port
    except ValueError as exc:
        if "IPv6" in str(exc):
            return f"{where} is not a valid address: an IPv6 address must be written whole in brackets, e.g. http://[::1]:11434"
        netloc = urlsplit(shown if scheme else f"http://{shown}", allow_fragments=False).netloc
        given = netloc.rpartition("]")[2].rpartition(":")[2] if "]" in netloc else netloc.rpartition(":")[2]
        return f"{where} has a port that is not a number from 1 to 65535 ({given!r})"
    if not parts.hostname:
        return f"{where} names no host (e.g. http://127.0.0.1:11434)"
    if port == 0:
        return f"{where} has a port that is not a number from 1 to 65535 ('0')"
    if parts.query or parts.fragment or "?" in shown or "#" in shown:
        return f"{where} may not contain ? or #"
    return None


@dataclass
class JudgeSettings:
    host: str = field(default_factory=lambda: default_host(DEFAULT_API))
    model: str = "llama3"
    api: str = DEFAULT_API    # the server's protocol: a name in BACKENDS
    api_key_env: str = ""     # the environment variable holding an API key; the key itself is never stored
    prompt: str = "default"   # "default" (injection-safe markers) or "book" (ollama_evaluate.py exactly)
    template: str = DEFAULT_TEMPLATE
    structured: bool = False  # ask for JSON {reasoning, score}, enforced by a JSON schema
    temperature: float = 0.0  # greedy, and with a fixed seed the same prompt gives the same reply
    seed: int = 123
    num_ctx: int = 4096       # Ollama's context; other servers have their own
    max_reply_tokens: int = 512  # a judge's reply is short; a model that rambles is cut here
    timeout: float = 120.0    # seconds for one request, its whole reply included (a server that trickles too)
    concurrency: int = 4
    retries: int = 3          # for transient errors (busy, broken stream, timeout)
    backoff: float = 1.0      # seconds before the first retry, doubled for each next one
    give_up_after: int = 4    # failed requests in a row (no reply in between) before nothing more is asked
    deadline: float = 1800.0  # seconds for the whole grading; the rest is skipped, and asked for next time

    @property
    def book(self) -> bool:
        return self.prompt == "book"

    @property
    def shown_host(self) -> str:
        """The server's address as shown and saved: a `user:password@` in it is cut out (sent, never stored)."""
        return without_credentials(self.host)[0]

    def auth_headers(self) -> dict[str, str]:
        """The HTTP Basic authorisation for a `user:password@` in the address, for the requests alone."""
        credentials = without_credentials(self.host)[1]
        if credentials is None:
            return {}
        token = base64.b64encode(":".join(credentials).encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def effective_template(self) -> str:
        return BOOK_TEMPLATE if self.book else self.template

    def options(self) -> dict[str, Any]:
        """Sampling options as Ollama names them; the book's prompt comes with the book's options."""
        if self.book:
            return dict(BOOK_OPTIONS)
        return {"temperature": self.temperature, "seed": self.seed, "num_ctx": self.num_ctx,
                "num_predict": self.max_reply_tokens}

    def request_options(self) -> dict[str, Any]:
        """The options as the chosen protocol sends them."""
        return backend_of(self.api).sent_options(self)

    def model_name(self) -> str:
        """The judge model's full name, as the chosen protocol's server names it."""
        return backend_of(self.api).model_name(self.model)

    def api_key(self) -> str | None:
        """The key from the named environment variable (None when no variable is named)."""
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise PlaygroundError(f"Judge settings: the environment variable {self.api_key_env} holds no API key.")
        return key

    def check(self) -> None:
        problems = []
        if (host_problem := check_host(self.host)) is not None:
            problems.append(host_problem)
        if not self.model.strip():
            problems.append("the judge model name is empty")
        if self.api not in BACKENDS:
            problems.append(f"the API must be one of {', '.join(BACKENDS)}, not {self.api!r}")
        if self.prompt not in PROMPTS:
            problems.append(f"the prompt must be one of {', '.join(PROMPTS)}, not {self.prompt!r}")
        if self.timeout <= 0:
            problems.append("the timeout must be more than 0 seconds")
        if self.concurrency < 1:
            problems.append("concurrency must be at least 1")
        if self.retries < 0:
            problems.append("retries cannot be negative")
        if self.give_up_after < 1:
            problems.append("the number of failures in a row before giving up must be at least 1")
        if self.deadline <= 0:
            problems.append("the grading's deadline must be more than 0 seconds")
        if self.num_ctx < 256:
            problems.append("the context (num_ctx) must be at least 256 tokens")
        if self.max_reply_tokens < 1:
            problems.append("the reply limit must be at least 1 token")
        if self.book and self.structured:
            problems.append("the book's prompt asks for the number alone: structured replies cannot be used with it")
        if problems:
            raise PlaygroundError("Judge settings: " + "; ".join(problems) + ".")
        check_template(self.effective_template())


def check_template(template: str) -> None:
    """A judge template must name {instruction}, {reference} and {response}; {input} is optional.
    Other braces are kept as written unless they look like an unknown placeholder."""
    names = PLACEHOLDER.findall(template)
    problems = [f"unknown placeholder {{{name}}}" + (" (the reference is {reference})" if name == "output" else "")
                for name in dict.fromkeys(names) if name not in PLACEHOLDERS]
    problems += [f"it must contain {{{name}}}" for name in REQUIRED if name not in names]
    if names.count("response") > 1:
        problems.append("it may contain {response} only once")
    if problems:
        raise PlaygroundError("Judge prompt template: " + "; ".join(problems) + ". Placeholders: "
                              + ", ".join(f"{{{name}}}" for name in PLACEHOLDERS) + ".")
