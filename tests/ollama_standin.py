"""A local stand-in for an Ollama server, for tests and manual tries.

Ollama cannot be installed here, so this real HTTP server (stdlib, 127.0.0.1, a free port) speaks the
subset of the Ollama REST API that the official `ollama` client uses, with the same JSON shapes and
the same error bodies (`{"error": "..."}` with the HTTP status):

  GET  /api/version  {"version": ...}
  GET  /api/tags     the models it has
  POST /api/show     a model's details, or 404
  POST /api/pull     NDJSON progress lines (or one line when not streamed); the model is then present
  POST /api/chat     one reply, or NDJSON chunks (`done: false` ... then a final `done: true`)
  HEAD /api/blobs/sha256:<hex>   200 when the blob is there, else 404
  POST /api/blobs/sha256:<hex>   the file's bytes; 201, or 400 when they do not hash to the digest
  POST /api/create   a model from uploaded blobs (`files`, and LoRA `adapters` on them), a `template` and
                     `parameters`: NDJSON progress
                     lines ending in `success` (or one line when not streamed); the model is then listed

What a chat request gets is scripted from tests: `reply(request) -> str | Fault` (default: "85"),
or `script`, a queue of behaviours (a reply text or a `Fault`) consumed one per request before
`reply` is asked. `latency` is added to every chat request; `capacity` requests are served at once
and the rest wait (like OLLAMA_NUM_PARALLEL); `max_concurrent` is the most seen at once. Every chat
request body is kept in `requests`, and its Authorization header (or None) in `authorizations`. Uploaded blobs are kept in `blobs` (digest -> bytes), each upload's
digest in `uploads`, and every
create request body in `created` (model name -> body); `create_gate`, an Event, holds each create
after its first status line until it is set (a slow server).

From another test module:  `from ollama_standin import OllamaStandin, Fault, standin  # noqa: F401`
(the `standin` fixture yields a started server and stops it afterwards).
By hand:  `python tests/ollama_standin.py --port 11434 --score 85 [--latency 0.2] [--capacity 1]`
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

VERSION = "0.12.6"
DIGEST = "6a0746a1ec1aef3e7ec53868f220ff6e389f6f8ef87a01d77c96807de94ca2aa"
FAULTS = ("404", "503", "mid_stream_error", "drop", "garbage", "hang")
BUSY = "server busy, please try again.  maximum pending requests exceeded"
GARBAGE = "I'm sorry, but I can't provide a numeric rating for this response without more context."


@dataclass(frozen=True)
class Fault:
    """A scripted failure for one chat request; `name` is one of FAULTS:
    404 model not found, 503 server busy, mid_stream_error (a few chunks, then an error line),
    drop (a few chunks, then the connection is cut), garbage (a reply with no score),
    hang (no answer until the server stops)."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in FAULTS:
            raise ValueError(f"unknown fault {self.name!r}; one of {FAULTS}")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _full_name(model: str) -> str:
    return model if ":" in model else f"{model}:latest"


def prompt_tokens(request: dict[str, Any]) -> int:
    """A rough token count of the messages (words * 1.3), capped at num_ctx like a real server
    that silently truncates a prompt longer than its context."""
    words = sum(len(str(m.get("content", "")).split()) for m in request.get("messages", []))
    count = int(words * 1.3) + 1
    num_ctx = (request.get("options") or {}).get("num_ctx") or 2048
    return min(count, int(num_ctx))


class OllamaStandin:
    def __init__(self, models: tuple[str, ...] = ("llama3:latest",),
                 reply: Callable[[dict[str, Any]], str | Fault] | None = None,
                 latency: float = 0.0, capacity: int = 8, port: int = 0, pull_steps: int = 4,
                 create_drops: bool = False, create_gate: threading.Event | None = None):
        self.models = {_full_name(m) for m in models}
        self.create_drops = create_drops  # /api/create cuts the connection after its first status line
        self.create_gate = create_gate    # /api/create waits for it after its first status line (a slow server)
        self.reply = reply or (lambda request: "85")
        self.script: collections.deque[str | Fault] = collections.deque()
        self.latency = latency
        self.capacity = capacity
        self.port = port
        self.pull_steps = pull_steps
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []
        self.blobs: dict[str, bytes] = {}
        self.uploads: list[str] = []  # the digest of each blob sent, in order
        self.created: dict[str, dict[str, Any]] = {}
        self.max_concurrent = 0
        self._active = 0
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(capacity)
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "OllamaStandin":
        self._stopping.clear()
        self._slots = threading.Semaphore(self.capacity)
        self._server = _Server(("127.0.0.1", self.port), _handler_for(self))
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="ollama-standin")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection (in-flight requests see a reset)."""
        self._stopping.set()  # wakes hanging and sleeping handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> "OllamaStandin":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def chat_count(self) -> int:
        with self._lock:
            return len(self.requests)

    # ------------------------------------------------------------ behaviour

    def _behaviour(self, request: dict[str, Any]) -> str | Fault:
        with self._lock:
            if self.script:
                return self.script.popleft()
        return self.reply(request)

    def _enter(self) -> None:
        self._slots.acquire()
        with self._lock:
            self._active += 1
            self.max_concurrent = max(self.max_concurrent, self._active)

    def _leave(self) -> None:
        with self._lock:
            self._active -= 1
        self._slots.release()


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections must not keep stop() waiting
    block_on_close = False
    allow_reuse_address = True


def _handler_for(standin: OllamaStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        owner = standin
    return Handler


class _Handler(BaseHTTPRequestHandler):
    owner: OllamaStandin
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streams, like the real server
    server_version = "ollama-standin"
    # Ollama's Go server sends with TCP_NODELAY; without it small writes wait ~40 ms on delayed ACKs
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        with self.owner._lock:
            self.owner._connections.add(self.connection)

    def finish(self) -> None:
        with self.owner._lock:
            self.owner._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # quiet in tests
        pass

    # ------------------------------------------------------------ plumbing

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw or b"{}")

    def _send(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _send_text(self, status: int, text: str) -> None:
        self._send(status, text.encode(), "text/plain")

    def _error(self, status: int, message: str) -> None:
        self._send_json(status, {"error": message})

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _stream_line(self, value: Any) -> None:
        data = json.dumps(value).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # ------------------------------------------------------------ routes

    def do_HEAD(self) -> None:
        if self.path.startswith("/api/blobs/"):
            with self.owner._lock:
                found = self.path[len("/api/blobs/"):] in self.owner.blobs
            self.send_response(200 if found else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        if self.path == "/":
            self._send_text(200, "Ollama is running")
        elif self.path == "/api/version":
            self._send_json(200, {"version": VERSION})
        elif self.path == "/api/tags":
            self._send_json(200, {"models": [_model_entry(name) for name in sorted(self.owner.models)]})
        else:
            self._send_text(404, "404 page not found")

    def do_POST(self) -> None:
        if self.owner._stopping.is_set():  # a server going away answers nothing more
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if self.path.startswith("/api/blobs/"):
            self._blob(self.path[len("/api/blobs/"):])
            return
        try:
            body = self._body()
        except json.JSONDecodeError:
            self._error(400, "invalid character in request body")
            return
        routes = {"/api/chat": self._chat, "/api/show": self._show, "/api/pull": self._pull,
                  "/api/create": self._create}
        route = routes.get(self.path)
        if route is None:
            self._send_text(404, "404 page not found")
        else:
            route(body)

    def _show(self, body: dict[str, Any]) -> None:
        name = str(body.get("model") or body.get("name") or "")
        if _full_name(name) not in self.owner.models:
            self._error(404, f"model '{name}' not found")
            return
        self._send_json(200, {
            "license": "META LLAMA 3 COMMUNITY LICENSE AGREEMENT",
            "modelfile": f"FROM {name}\n",
            "parameters": 'num_keep 24\nstop "<|start_header_id|>"\nstop "<|end_header_id|>"\nstop "<|eot_id|>"',
            "template": "{{ if .System }}<|start_header_id|>system<|end_header_id|>...",
            "details": _details(),
            "model_info": {"general.architecture": "llama", "llama.context_length": 8192},
            "capabilities": ["completion"],
            "modified_at": _now(),
        })

    def _pull(self, body: dict[str, Any]) -> None:
        name = _full_name(str(body.get("model") or body.get("name") or ""))
        total = 4_661_211_424
        steps = max(1, self.owner.pull_steps)
        if not body.get("stream", True):  # the real server streams unless told not to
            with self.owner._lock:
                self.owner.models.add(name)
            self._send_json(200, {"status": "success"})
            return
        self._start_stream()
        self._stream_line({"status": "pulling manifest"})
        for step in range(steps + 1):
            self._stream_line({"status": f"pulling {DIGEST[:12]}", "digest": f"sha256:{DIGEST}",
                               "total": total, "completed": total * step // steps})
        for status in ("verifying sha256 digest", "writing manifest"):
            self._stream_line({"status": status})
        with self.owner._lock:
            self.owner.models.add(name)
        self._stream_line({"status": "success"})
        self._end_stream()

    def _raw_body(self) -> bytes:
        """The request's bytes, sent with a Content-Length or in chunks."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _blob(self, digest: str) -> None:
        data = self._raw_body()
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if not digest.startswith("sha256:") or len(digest) != 71:
            self._error(400, "invalid digest format")
            return
        if actual != digest:
            self._error(400, f"digest mismatch, expected {digest!r}, got {actual!r}")
            return
        with self.owner._lock:
            self.owner.blobs[digest] = data
            self.owner.uploads.append(digest)
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _create(self, body: dict[str, Any]) -> None:
        name = str(body.get("model") or "")
        if not name:
            self._error(400, "model is required")
            return
        files = body.get("files") or {}
        if not files and not body.get("from"):
            self._error(400, "neither 'from' or 'files' was specified")
            return
        adapters = body.get("adapters") or {}
        with self.owner._lock:
            missing = [digest for digest in [*files.values(), *adapters.values()] if digest not in self.owner.blobs]
        if missing:
            self._error(400, f"blob {missing[0]} not found: upload it first")
            return
        lines = [{"status": "parsing GGUF"}]
        lines += [{"status": f"using existing layer {digest}"} for digest in [*files.values(), *adapters.values()]]
        for part in ("template", "parameters"):
            if body.get(part):
                text = json.dumps(body[part], sort_keys=True).encode()
                lines.append({"status": f"creating new layer sha256:{hashlib.sha256(text).hexdigest()}"})
        lines += [{"status": "writing manifest"}, {"status": "success"}]
        if not self.owner.create_drops:
            with self.owner._lock:
                self.owner.created[_full_name(name)] = body
                self.owner.models.add(_full_name(name))
        if not body.get("stream", True):
            self._send_json(200, {"status": "success"})
            return
        self._start_stream()
        for number, line in enumerate(lines[:1] if self.owner.create_drops else lines):
            if number == 1 and self.owner.create_gate is not None:
                while not self.owner.create_gate.wait(0.05) and not self.owner._stopping.is_set():
                    pass
            self._stream_line(line)
        if self.owner.create_drops:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)  # cut inside the chunked body
            return
        self._end_stream()

    def _chat(self, body: dict[str, Any]) -> None:
        owner = self.owner
        with owner._lock:
            owner.requests.append(body)
            owner.authorizations.append(self.headers.get("Authorization"))
        model = str(body.get("model") or "")
        if not model:
            self._error(400, "model is required")
            return
        behaviour = owner._behaviour(body)
        if _full_name(model) not in owner.models or behaviour == Fault("404"):
            self._error(404, f"model '{model}' not found")
            return
        if behaviour == Fault("503"):
            self._error(503, BUSY)
            return
        owner._enter()
        try:
            if behaviour == Fault("hang"):
                owner._stopping.wait()
                return  # the connection is cut without an answer
            if owner.latency and owner._stopping.wait(owner.latency):
                return
            self._answer(body, model, behaviour)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout): nothing to answer
        finally:
            owner._leave()

    def _answer(self, body: dict[str, Any], model: str, behaviour: str | Fault) -> None:
        text = GARBAGE if behaviour == Fault("garbage") else behaviour if isinstance(behaviour, str) else "..."
        final = {"model": model, "created_at": _now(), "message": {"role": "assistant", "content": ""},
                 "done": True, "done_reason": "stop", "total_duration": 1_250_000_000,
                 "load_duration": 20_000_000, "prompt_eval_count": prompt_tokens(body),
                 "prompt_eval_duration": 400_000_000, "eval_count": max(1, len(text.split())),
                 "eval_duration": 800_000_000}
        if not body.get("stream", True):
            if isinstance(behaviour, Fault) and behaviour.name in ("mid_stream_error", "drop"):
                if behaviour.name == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self._error(500, "an error was encountered while running the model: unexpected EOF")
                return
            final["message"]["content"] = text
            self._send_json(200, final)
            return
        self._start_stream()
        pieces = [word + " " for word in text.split(" ")]
        pieces[-1] = pieces[-1][:-1]
        if isinstance(behaviour, Fault) and behaviour.name in ("mid_stream_error", "drop"):
            pieces = ["The response ", "is "]
        for piece in pieces:
            self._stream_line({"model": model, "created_at": _now(),
                               "message": {"role": "assistant", "content": piece}, "done": False})
        if behaviour == Fault("mid_stream_error"):
            self._stream_line({"error": "an error was encountered while running the model: unexpected EOF"})
            self._end_stream()
            return
        if behaviour == Fault("drop"):
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)  # cut inside the chunked body
            return
        self._stream_line(final)
        self._end_stream()


def _details() -> dict[str, Any]:
    return {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
            "parameter_size": "8.0B", "quantization_level": "Q4_0"}


def _model_entry(name: str) -> dict[str, Any]:
    return {"name": name, "model": name, "modified_at": _now(), "size": 4_661_224_676,
            "digest": DIGEST, "details": _details()}


# ---------------------------------------------------------------- pytest fixture

try:
    import pytest
except ImportError:  # run by hand without pytest
    pytest = None

if pytest is not None:
    @pytest.fixture
    def standin():
        """A started stand-in on a free port, stopped after the test."""
        server = OllamaStandin().start()
        try:
            yield server
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="A local stand-in for an Ollama server.")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--score", default="85", help="what every chat request is answered")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per chat request")
    parser.add_argument("--capacity", type=int, default=1, help="chat requests served at once")
    parser.add_argument("--model", action="append", help="a model it has (repeatable; default llama3:latest)")
    args = parser.parse_args()
    server = OllamaStandin(models=tuple(args.model or ["llama3:latest"]), reply=lambda request: args.score,
                           latency=args.latency, capacity=args.capacity, port=args.port).start()
    print(f"Ollama stand-in at {server.url} with {sorted(server.models)}; Ctrl-C stops it", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
