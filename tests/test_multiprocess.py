"""Two processes (DDP over gloo on the CPU, started by torchrun; Accelerate picks them up) train like
one process with the same global batch: each process takes every other batch, as one process with
gradient accumulation 2 does. The preset has no LoRA dropout, whose random masks would differ
between the processes. (On the CPU, `accelerate launch --cpu --num_processes 2` starts one process.)"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
COMMON = ["--data", "builtin", "--preset", "Quick CPU demo", "--max-steps", "12", "--batch-size", "2", "--lr", "3e-3",
          "--eval-every", "6", "--probes", "0", "--probe-every", "0", "--score-answers-every", "0", "--max-length", "96", "--mask", "none",
          "--no-group-by-length", "--dtype", "float32"]


def train(command, tmp_path, name):
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = Path(result.stdout.strip().splitlines()[-1])
    assert folder.parent == tmp_path / name / "runs"
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return folder, [line["val_loss"] for line in lines if "val_loss" in line]


def test_two_processes_give_the_one_process_curve_and_a_loadable_adapter(tiny_model_dir, tmp_path):
    model = ["--model", str(tiny_model_dir)]
    one, one_curve = train([sys.executable, "-m", "playground", "train", *model, *COMMON, "--grad-accum", "2",
                            "--models-dir", str(tmp_path / "one")], tmp_path, "one")
    two, two_curve = train([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m",
                            "playground", "train", *model, *COMMON, "--device", "cpu",
                            "--models-dir", str(tmp_path / "two")], tmp_path, "two")
    assert len(one_curve) == len(two_curve) == 3  # before training, at step 6 and at the end
    assert one_curve[-1] < one_curve[0] - 0.01  # it learned something
    # the same curve, printed to 4 decimals; float sums in another order may move the last digit
    assert two_curve == pytest.approx(one_curve, abs=2e-4)
    assert json.loads((two / "status.json").read_text())["state"] == "finished"

    from peft import PeftModel

    from playground import store

    PeftModel.from_pretrained(store.load_model(str(tiny_model_dir)), str(two / "adapter"))
