"""Judge server protocols. A new one is a module with a class like `OllamaBackend` and a line below."""

from __future__ import annotations

from ..settings import JudgeSettings
from .base import Backend, BrokenStream, Preflight, PromptTooLong, Reply
from .ollama import OllamaBackend
from .openai import OpenAIBackend

BACKENDS: dict[str, type] = {
    "ollama": OllamaBackend,
    "openai": OpenAIBackend,
}


def make(settings: JudgeSettings) -> Backend:
    return BACKENDS[settings.api](settings)


__all__ = ["BACKENDS", "Backend", "BrokenStream", "Preflight", "PromptTooLong", "Reply", "make"]
