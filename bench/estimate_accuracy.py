"""How close the Train tab's estimate before Start comes to a real run of the default model.

For each case, in a fresh process: the estimate (memory by part; time per step from the matmul
speed measured here, as on a machine with no earlier run), then 8 real training steps in a
temporary store with the peak RSS sampled, and the measured time per step (the median after two
warm-up steps). Memory is compared beyond the base weights, which are loaded (and read once, so that
weights mapped from their file are in the RSS) before the run. The first three cases fitted
RUNTIME_BYTES; the last one did not. estimate.LOGIT_BYTES is counted from the LM head's tiles.

    python bench/estimate_accuracy.py
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import MIB, Sampler, run_child  # noqa: E402

CASES = {
    "Quick CPU demo (LoRA, batch 4, length 128, masked)": {},
    "LoRA, batch 8, length 256, not masked": {"batch_size": 8, "max_length": 256, "mask": "none"},
    "full fine-tune, batch 4, length 128, masked": {"method": "full"},
    # not used to fit LOGIT_BYTES and RUNTIME_BYTES: a check of the estimate on other settings
    "held out: LoRA r 64 on q,v, batch 2 x 2 accumulated, not grouped": {
        "lora_r": 64, "target_modules": "q_proj,v_proj", "batch_size": 2, "grad_accum": 2,
        "group_by_length": False, "mask": "none"},
}
STEPS = 8


def child(name: str) -> None:
    import psutil
    import torch

    from playground import data, estimate, store, training
    from playground.manager import ModelManager

    folder = Path(tempfile.mkdtemp())  # no earlier runs: the time estimate is the rough one
    (folder / store.DEFAULT_NAME).symlink_to(store.ensure_default_model(), target_is_directory=True)
    manager = ModelManager(folder)
    loaded = manager.model("default")
    dataset = data.load("builtin")
    config = training.TrainConfig(**{**training.PRESETS["Quick CPU demo"], **CASES[name], "max_steps": STEPS,
                                     "eval_every": 0, "probe_every": 0, "probes": 0})
    splits = dataset.splits(seed=config.split_seed)
    guess = estimate.for_settings(manager, dataset, config, splits.train)
    with torch.no_grad():  # weights read from a memory-mapped file count in the RSS once read: read them all now
        for parameter in loaded.weights.model.parameters():
            parameter.sum()
    before = psutil.Process().memory_info().rss
    with Sampler() as sampler:
        side = training.prepare_model(loaded.weights, config, "bench", folder, loaded.dtype, manager.device)
        state, message, _ = training.run_training(side, loaded.tokenizer, dataset, config, folder, "bench")
    assert state == "finished", message
    events = [json.loads(line) for line in (folder / "runs" / "bench" / "metrics.jsonl").read_text().splitlines()]
    steps = [e for e in events if e["kind"] == "step"]
    durations = [b["elapsed"] - a["elapsed"] for a, b in zip(steps, steps[1:])][2:]
    print("CHILD " + json.dumps({"estimate_mib": (guess.total - guess.already_loaded) / MIB,
                                 "parts": {k: v / MIB for k, v in guess.parts.items()},
                                 "measured_mib": (sampler.peak - before) / MIB,
                                 "estimate_s": guess.step_seconds, "measured_s": statistics.median(durations),
                                 "threads": torch.get_num_threads()}))


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2])
        return
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs; default model (Gemma 3 270M, in the dtype the app picks here), "
          f"{STEPS} steps per case; memory beyond the loaded base weights; time per step after 2 warm-up steps")
    print(f"\n{'case':<66} {'estimate MiB':>12} {'peak MiB':>9} {'ratio':>6} {'est. s/step':>11} "
          f"{'s/step':>7} {'ratio':>6}")
    for name in CASES:
        r = run_child(__file__, ["--child", name], name)
        print(f"{name:<66} {r['estimate_mib']:>12,.0f} {r['measured_mib']:>9,.0f} "
              f"{r['estimate_mib'] / r['measured_mib']:>6.2f} {r['estimate_s']:>11.2f} {r['measured_s']:>7.2f} "
              f"{r['estimate_s'] / r['measured_s']:>6.2f}")
    print("\nratio = estimate / measured. The time estimate here is the rough one (no earlier run); after a "
          "first run the Train tab uses that run's measured tokens/s instead.")


if __name__ == "__main__":
    main()
