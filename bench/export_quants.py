"""What each GGUF type costs: a Quick CPU demo run of the default model exported to every type, each
measured against the app's tuned model (float32) on the run's own test split.

Per type: the file's size, llama.cpp's speed on the greedy answers (prompt and answer tokens per
second, 2 threads here), and with teacher forcing on the reference answers (the same token ids on both
sides) the share of answer positions where llama.cpp picks the app's next token (top-1 agreement) and
the mean KL(app || gguf) per position; then both sides' exact match and ROUGE-L against the references
on their greedy answers. F16 is the baseline a user would otherwise ship: its row is llama.cpp's own
rounding, every other row is what the smaller file costs beside it.

    python bench/export_quants.py [--run RUN --models-dir DIR] [--records 20] [--steps 240] [--quick]

Without --run, a Quick CPU demo run (--steps optimizer steps) is trained first in a temporary store.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playground import data, store  # noqa: E402
from playground.export.cli import table  # noqa: E402
from playground.export.parity import COST_COLUMNS  # noqa: E402
from playground.export.runner import compare_quants  # noqa: E402
from playground.manager import ModelManager  # noqa: E402


def train_quick_demo(models: Path, steps: int) -> str:
    """A Quick CPU demo LoRA run of the default model (probes and validation off), its id."""
    from playground.training import PRESETS, TrainConfig, prepare_model, run_training
    from playground.weights import Weights

    config = TrainConfig(**{**PRESETS["Quick CPU demo"], "max_steps": steps, "probes": 0, "eval_every": 0,
                            "probe_every": 0, "checkpoint_every": 0})
    side = prepare_model(Weights(store.load_model(store.DEFAULT, models)), config, "quick-demo", models, None, "cpu")
    started = time.perf_counter()
    state, message, _ = run_training(side, store.load_tokenizer(store.DEFAULT, models), data.load(data.BUILTIN),
                                     config, models, "quick-demo")
    if state != "finished":
        raise SystemExit(message)
    print(f"trained run quick-demo: {steps} steps in {time.perf_counter() - started:.0f} s")
    return "quick-demo"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="an existing run (default: train a Quick CPU demo run first)")
    parser.add_argument("--models-dir", type=Path, default=store.MODELS_DIR)
    parser.add_argument("--records", type=int, default=20, help="test records read and answered per type")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--steps", type=int, default=240, help="the trained run's steps (the preset's: 240)")
    parser.add_argument("--quick", action="store_true", help="60 steps and 10 records")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.records = 60, 10
    print(f"machine: {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    with tempfile.TemporaryDirectory(prefix="bench-quants-") as scratch:
        models, run_id = args.models_dir, args.run
        if run_id is None:
            models = Path(scratch)
            (models / store.DEFAULT_NAME).symlink_to(store.ensure_default_model(), target_is_directory=True)
            run_id = train_quick_demo(models, args.steps)
        manager = ModelManager(models, dtype="float32")
        started = time.perf_counter()
        rows = [cost.row() for cost in compare_quants(manager, run_id, args.records, args.max_new_tokens)]
        print(f"\nrun {run_id}, {args.records} test records, greedy answers of {args.max_new_tokens} tokens at most; "
              f"the app in float32 ({time.perf_counter() - started:.0f} s for all types)\n")
        print(table([list(COST_COLUMNS), *rows]))


if __name__ == "__main__":
    main()
