"""An Ollama model: the Modelfile beside the GGUF (or beside the LoRA adapter GGUF, on the base model's
GGUF), and the model created on a server through the client.

The TEMPLATE is written from the same prompt pieces as the chat template: a user message's text is
the instruction (Ollama has no separate Input section), an answer is followed by what the app writes
between turns. The parameters make Ollama decode as the app does by default: greedy, no repetition
penalty, stopping at the run's end markers.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Callable

from ..errors import PlaygroundError
from .prompt_format import INSTRUCTION, PromptFormat

GGUF_NAME = "model.gguf"
ADAPTER_NAME = "adapter.gguf"
DEFAULT_HOST = "http://127.0.0.1:11434"
Progress = Callable[[float, str], None]


def go_template(found: PromptFormat) -> str:
    """Ollama's TEMPLATE (Go text/template) over `.Messages`, writing the app's prompt text."""
    user = "".join("{{ $m.Content }}" if piece.kind == INSTRUCTION else _go_text(piece.text)
                   for piece in found.pieces if piece.kind != "input")
    return ('{{ range $i, $m := .Messages }}{{ if eq $m.Role "user" }}' + user +
            '{{ else if eq $m.Role "assistant" }}{{ $m.Content }}'
            '{{ if gt (len (slice $.Messages $i)) 1 }}' + _go_text(found.between_turns) + '{{ end }}'
            '{{ end }}{{ end }}')


def _go_text(text: str) -> str:
    """Literal text for a Go template: as it is, except that "{{" is written as a string action."""
    return text.replace("{{", '{{ "{{" }}')


def parameters(stop_texts: list[str], max_new_tokens: int = 256) -> dict[str, Any]:
    """Greedy decoding as in the app, stopping at its end markers."""
    return {"temperature": 0, "top_k": 1, "top_p": 1.0, "repeat_penalty": 1.0, "seed": 123,
            "num_predict": max_new_tokens, "stop": stop_texts}


def modelfile_text(found: PromptFormat, stop_texts: list[str], base: Path | None = None) -> str:
    """The Modelfile of the model in ./model.gguf, or of ./adapter.gguf on the base model's GGUF `base`."""
    if '"""' in go_template(found):
        raise PlaygroundError('The prompt style holds \'"""\', which a Modelfile cannot quote.')
    model = [f"FROM ./{GGUF_NAME}"] if base is None else [f"FROM {base}", f"ADAPTER ./{ADAPTER_NAME}"]
    lines = [*model, f'TEMPLATE """{go_template(found)}"""']
    for key, value in parameters(stop_texts).items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"PARAMETER {key} {json.dumps(item) if key == 'stop' else item}")
    return "\n".join(lines) + "\n"


def model_name(run_id: str) -> str:
    """An Ollama model name for a run: lowercase letters, digits, '-' and '.'."""
    return "playground-" + re.sub(r"[^a-z0-9.-]+", "-", run_id.lower()).strip("-")


def create_command(folder: Path, name: str) -> str:
    return f"ollama create {name} -f {folder / 'Modelfile'}"


def server_host(host: str | None) -> str:
    return (host or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST).strip()


def reachable(host: str, timeout: float = 3.0) -> bool:
    import ollama

    import httpx

    try:
        ollama.Client(host=host, timeout=timeout).list()
        return True
    except (ConnectionError, OSError, httpx.HTTPError, ollama.ResponseError):
        return False


def send_blob(client: Any, host: str, path: Path) -> str:
    """The file's digest, the file sent to the server only when the server lacks that blob (Ollama's
    HEAD /api/blobs: a base model shared by several adapters goes up once)."""
    import httpx

    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    name = f"sha256:{digest.hexdigest()}"
    address = host if "://" in host else f"http://{host}"
    if httpx.head(f"{address.rstrip('/')}/api/blobs/{name}", timeout=30).status_code == 200:
        return name
    return client.create_blob(path)


def create(host: str, name: str, gguf_path: Path, found: PromptFormat, stop_texts: list[str],
           on_progress: Progress | None = None, timeout: float = 600.0, adapter: Path | None = None) -> list[str]:
    """Upload the GGUF (and the LoRA adapter GGUF on it, if given) as blobs and create the model on the
    server; returns the server's status lines. A blob the server holds already is not sent again (a base
    model shared by several adapters goes up once)."""
    import httpx
    import ollama

    client = ollama.Client(host=host, timeout=timeout)
    try:
        if on_progress:
            on_progress(0.0, f"Uploading {gguf_path.name} to Ollama at {host}")
        digest = send_blob(client, host, gguf_path)
        adapters = None
        if adapter is not None:
            if on_progress:
                on_progress(0.0, f"Uploading {adapter.name} to Ollama at {host}")
            adapters = {ADAPTER_NAME: send_blob(client, host, adapter)}
        statuses = []
        for update in client.create(model=name, files={GGUF_NAME: digest}, adapters=adapters,
                                    template=go_template(found), parameters=parameters(stop_texts), stream=True):
            statuses.append(update.status or "")
            if on_progress:
                done = update.completed / update.total if update.total and update.completed is not None else 0.5
                on_progress(done, f"Ollama: {update.status}")
    except ollama.ResponseError as exc:
        raise PlaygroundError(f"Ollama at {host} refused to create {name}: {exc.error}") from None
    except (ConnectionError, OSError, httpx.HTTPError) as exc:  # refused, cut off, timed out
        raise PlaygroundError(f"Ollama at {host} failed while creating {name} ({type(exc).__name__}: "
                              f"{exc or 'the connection was closed'}).") from None
    if not statuses or statuses[-1] != "success":
        raise PlaygroundError(f"Ollama at {host} did not finish creating {name} (last status: "
                              f"{statuses[-1] if statuses else 'none'}).")
    return statuses
