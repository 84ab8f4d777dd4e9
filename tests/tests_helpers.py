"""Small test data, runs and tools shared by several test modules."""

import socket
import subprocess
import sys
import time
from pathlib import Path

from playground import data, store

ROOT = Path(__file__).resolve().parent.parent
# Debian's Chromium as Playwright drives it here
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cli(*args: str, models_dir: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m playground ARGS [--models-dir DIR]` from the repository root, its output captured;
    past `timeout` seconds it is killed and subprocess.TimeoutExpired names the command."""
    command = [sys.executable, "-m", "playground", *map(str, args)]
    if models_dir is not None:
        command += ["--models-dir", str(models_dir)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=timeout)


def wait_until(predicate, what: str, seconds: float = 300, every: float = 0.05) -> None:
    """Polls `predicate()` until it is true; after `seconds`, fails saying it waited for `what`."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds:g} s for {what}")
        time.sleep(every)


def small_dataset(n=12) -> data.Dataset:
    records = [data.Record(f"Repeat the word {w}.", "", f"{w} {w}") for w in
               ["apple", "river", "stone", "cloud", "green", "piano", "tiger", "lemon", "ocean", "maple", "candle", "rocket"][:n]]
    return data.Dataset(records=records, source="test", mapping={})


def train_tiny_run(model_dir: Path, models: Path, run_id: str, dataset: data.Dataset, max_steps: int,
                   **settings) -> Path:
    """A finished LoRA run on the tiny model, saved under `models`; returns its folder."""
    from playground.training import TrainConfig, prepare_model, run_training
    from playground.weights import Weights

    config = TrainConfig(model=str(model_dir), max_steps=max_steps, batch_size=4, lr=1e-2, probes=0, eval_every=0,
                         probe_every=0, lora_r=8, lora_alpha=16, lora_dropout=0.0, **settings)
    side = prepare_model(Weights(store.load_model(str(model_dir))), config, run_id, models, None, "cpu")
    state, message, _ = run_training(side, store.load_tokenizer(str(model_dir)), dataset, config, models, run_id)
    assert state == "finished", message
    return models / "runs" / run_id


def saved_bytes(run, exclude):
    """Bytes of the tensors autograd keeps for backward while `run()` goes, parameters excluded."""
    import torch

    seen = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in exclude:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = run()
    return sum(seen.values()), result
