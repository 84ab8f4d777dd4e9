"""Judge server protocols: one class each in `BACKENDS`, added with `register_backend()`.

A backend class carries its facts (its name, label, default host, the options it sends and how it
names a model) beside its calls; the Judge tab, `judge --api`, the settings and the cache key read them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ...errors import PlaygroundError
from .base import Backend, BrokenStream, Preflight, PromptTooLong, Reply, RequestTimeout, within
from .ollama import OllamaBackend
from .openai import OpenAIBackend

if TYPE_CHECKING:
    from ..settings import JudgeSettings

BACKENDS: dict[str, type[Backend]] = {}


def register_backend(backend: type[Backend]) -> type[Backend]:
    """Add a protocol everywhere: `judge --api`, the Judge tab, the settings' check and the cache key."""
    BACKENDS[backend.name] = backend
    return backend


def backend_of(api: str) -> type[Backend]:
    if api not in BACKENDS:
        raise PlaygroundError(f"Judge settings: the API must be one of {', '.join(BACKENDS)}, not {api!r}.")
    return BACKENDS[api]


def default_host(api: str) -> str:
    """Where the protocol's server is unless told otherwise: its environment variable, or its usual address."""
    backend = backend_of(api)
    return (os.environ.get(backend.host_env) if backend.host_env else None) or backend.default_host


def make(settings: JudgeSettings) -> Backend:
    return backend_of(settings.api)(settings)


register_backend(OllamaBackend)
register_backend(OpenAIBackend)

__all__ = ["BACKENDS", "Backend", "BrokenStream", "Preflight", "PromptTooLong", "Reply", "RequestTimeout", "backend_of",
           "default_host", "make", "register_backend", "within"]
