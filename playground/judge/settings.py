"""What a grading is asked with: the server, its protocol, the judge model, the prompt and options."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

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
    timeout: float = 120.0    # seconds without a byte from the server; the client's default is None
    concurrency: int = 4
    retries: int = 3          # for transient errors (busy, broken stream, timeout)
    backoff: float = 1.0      # seconds before the first retry, doubled for each next one
    give_up_after: int = 4    # failed requests in a row (no reply in between) before nothing more is asked
    deadline: float = 1800.0  # seconds for the whole grading; the rest is skipped, and asked for next time

    @property
    def book(self) -> bool:
        return self.prompt == "book"

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
        if not self.host.strip():
            problems.append("the server address is empty")
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
