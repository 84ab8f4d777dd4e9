"""What the benchmark scripts share: running one case in a fresh process and reading its figures,
sampling its peak memory, and the files of tiny records they load."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

ROOT = Path(__file__).resolve().parent.parent
MIB = 2**20


class PeakTensorBytes(TorchDispatchMode):
    """The peak of the bytes of tensor storages made while the mode is on and still alive, on any
    device: what a GPU's `max_memory_allocated` counts beyond what existed before, measured the same
    way for every trainer on the CPU too, where the resident set also holds the allocator's cache."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, int] = {}
        self.now = self.peak = 0

    def _freed(self, key: int) -> None:
        self.now -= self.live.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        given = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()  # one Python object per storage while it lives
                if id(storage) not in self.live and storage.data_ptr() not in given:  # not a view, not in place
                    self.live[id(storage)] = storage.nbytes()
                    self.now += storage.nbytes()
                    self.peak = max(self.peak, self.now)
                    weakref.finalize(storage, self._freed, id(storage))
        return out


class TensorMemory:
    """The peak bytes of tensors while a block runs, on the block's device: the GPU allocator's own peak,
    or on the CPU, with `track`, the weights given plus PeakTensorBytes's peak over the block (which
    slows every operation a little: time the block in another run without it)."""

    def __init__(self, device: torch.device, weights: torch.nn.Module, track: bool):
        self.device = device
        self.tracker = PeakTensorBytes() if track and device.type != "cuda" else None
        self.weight_bytes = sum(t.numel() * t.element_size() for t in (*weights.parameters(), *weights.buffers()))

    def __enter__(self) -> "TensorMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        elif self.tracker:
            self.tracker.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.tracker:
            self.tracker.__exit__(*exc)

    @property
    def peak(self) -> int | None:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated()
        return self.weight_bytes + self.tracker.peak if self.tracker else None


def run_child(script: str, arguments: list[str], name: str) -> dict:
    """Run `script --child ...` in its own process (so peak memory is its own); return its CHILD json."""
    output = subprocess.run([sys.executable, script, *arguments], capture_output=True, text=True, cwd=ROOT)
    line = next((l for l in output.stdout.splitlines() if l.startswith("CHILD ")), None)
    if line is None:
        raise SystemExit(f"{name} failed:\n{output.stderr[-3000:]}")
    return json.loads(line[len("CHILD "):])


def parse_or_run_child(doc: str, child: Callable[[str, str], None]) -> argparse.Namespace | None:
    """The arguments of a memory benchmark (--quick: 10k and 100k records only); or, when called as
    `--child METHOD FILE` by run_child, run that one case and return None. Prints the machine line."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10k and 100k records only")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return None
    print(f"machine: {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs")
    return args


def write_file(path: Path, n: int) -> None:
    with open(path, "w", encoding="utf-8") as file:
        file.write("[")
        for i in range(n):
            record = {"instruction": f"Say {i}.", "input": "", "output": str(i)}
            file.write(("," if i else "") + json.dumps(record))
        file.write("]")


class Sampler:
    """The largest RSS seen by psutil while a block runs (a cross-check of ru_maxrss)."""

    def __init__(self) -> None:
        import psutil

        self.process, self.peak, self.done = psutil.Process(), 0, threading.Event()

    def __enter__(self) -> "Sampler":
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


def train_with_trl(trainer_class, config_class, model, rows: list[dict], tokenizer, args, *, output: str,
                   device_type: str, bf16: bool, around=None, **options):
    """One epoch of a TRL trainer (`SFTTrainer` or `DPOTrainer`) with a LoRA adapter of the shape the
    playground's benchmarks train (r 16, alpha 32, every linear layer), on `rows`, with the settings
    every TRL baseline here shares and the trainer's own `options`; (seconds of `train()`, trainer).
    `around`: a context manager `train()` runs in (a TensorMemory)."""
    from datasets import Dataset
    from peft import LoraConfig

    config = config_class(
        output_dir=str(ROOT / "artifacts" / output), per_device_train_batch_size=args.batch_size,
        num_train_epochs=1, learning_rate=args.lr, warmup_steps=2, lr_scheduler_type="linear", logging_steps=1,
        save_strategy="no", report_to=[], seed=args.seed, max_grad_norm=1.0, max_length=args.max_length + 1,
        use_cpu=device_type == "cpu", bf16=bf16, dataloader_num_workers=0, **options)
    peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = trainer_class(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                            peft_config=peft_config)
    with around or contextlib.nullcontext():
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    return seconds, trainer
