"""Quality per minute: how good the tuned model gets in the time a user will wait, on this machine.

For each setting, ONE LoRA run of the embedded default model on the bundled data, its learning-rate
schedule sized to end at the last time mark; the adapter is copied when the training time crosses
each mark (default 1, 2 and 5 minutes), then the base and every copy answer the run's own test
split greedily through the playground's one generation engine, in fixed blocks of 8. Reported per
mark: steps, trained tokens, tokens/s, the validation loss (over answer tokens only, the same
targets for every setting, so the losses can be ranked), exact match on the single-answer test
records (per task family too) and ROUGE-L on all test records. Goal: >= 80% exact within 5 minutes.

    python bench/quality_per_minute.py [--marks 1,2,5] [--settings quick-demo,lr-1e-3] [--limit N] [--quick]

Training time counts optimizer steps only (validation and probes are off during the run), measured
on the wall clock: a busy machine makes every figure worse.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from playground import batching, data, generation, metrics, prompts, store, training  # noqa: E402
from playground.generation import GenerationSettings, Side  # noqa: E402
from playground.modeling import CausalLMLoss, pick_device, pick_dtype  # noqa: E402
from playground.weights import Weights  # noqa: E402

DEMO = training.PRESETS["Quick CPU demo"]
# Each setting: changes to the Quick CPU demo preset (its step count is replaced by the time budget).
# The preset was lr 5e-4 when the first figures in bench/RESULTS.md were taken ("quick-demo" there), and
# its schedule linear when the second were ("quick-demo" there is "linear" now).
SETTINGS = {
    "quick-demo": {},
    "lr-5e-4": {"lr": 5e-4},
    "lr-3e-4": {"lr": 3e-4},
    "lr-1e-3": {"lr": 1e-3},
    "lr-2e-3": {"lr": 2e-3},
    "batch-8": {"batch_size": 8},
    "rank-4": {"lora_r": 4, "lora_alpha": 8},
    "attention-only": {"target_modules": "q_proj,k_proj,v_proj,o_proj"},
    "max-length-64": {"max_length": 64},
    "nothing-masked": {"mask": "none"},
    "full-5e-5": {"method": "full", "lr": 5e-5},  # every weight trained, at the book's learning rate
    "full-1e-5": {"method": "full", "lr": 1e-5},
    "packed": {"pack": True},  # rows of the max length (128), about 2.5 samples each: a step sees more samples
    "linear": {"lr_schedule": "linear"},
    "cosine": {"lr_schedule": "cosine"},
    "constant": {"lr_schedule": "constant"},
}
DEFAULT_SETTINGS = "quick-demo,linear,packed"
ANSWER_TOKENS = 32  # the longest reference in the test split is 25 tokens
BLOCK = 8           # answers generated in fixed blocks, as a grading does


class Snapshots:
    """The emit callback of one run: copies of the trainable weights as training time crosses each mark."""

    def __init__(self, model, marks_s: list[float], stop: threading.Event):
        self.model, self.marks, self.stop = model, list(marks_s), stop
        self.taken: list[dict] = []
        self.training_started: float | None = None  # the run's elapsed time when step 1 began

    def __call__(self, event: training.Event) -> None:
        if event.kind == "phase" and event.values.get("phase") == "training" and self.training_started is None:
            self.training_started = event.elapsed
        if event.kind != "step" or not self.marks:
            return
        seconds = event.elapsed - self.training_started
        if seconds >= self.marks[0] or event.step >= event.total_steps:
            self.marks.pop(0)
            weights = {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}
            self.taken.append({"seconds": seconds, "step": event.step, "trained_tokens": event.values["trained_tokens"],
                               "weights": weights})
            if not self.marks:
                self.stop.set()


def steps_per_second(side, tokenizer, dataset, splits, config) -> float:
    """Twelve steps of the same setting (its adapter is made afresh afterwards): steps 4-12, after warm-up."""
    probe = training.TrainConfig.from_dict({**vars(config), "max_steps": 12})
    times = []
    training.train(side, tokenizer, dataset, splits, probe, lambda e: times.append(e.elapsed) if e.kind == "step" else None)
    return (len(times) - 3) / (times[-1] - times[2])


def answers(side: Side, tokenizer, records: list[data.Record]) -> list[str]:
    out = []
    settings = GenerationSettings(max_new_tokens=ANSWER_TOKENS)
    for start in range(0, len(records), BLOCK):
        rows = [(side, prompts.render(r, "alpaca", tokenizer).inference) for r in records[start:start + BLOCK]]
        out += generation.generate(rows, tokenizer, "alpaca", settings, batch_size=None)
    return out


def validation_loss(side: Side, tokenizer, dataset, splits) -> float:
    """Mean loss over the answer tokens of the whole validation split (prompt masked for every setting).
    The base is scored first, before any adapter exists; a tuned side's adapter is the active one."""
    samples = batching.encode_all(dataset.records, "alpaca", tokenizer, indices=splits.validation)
    _, pad_id = batching.special_ids(tokenizer)
    loss_module, total, count = CausalLMLoss(side.weights.model), 0.0, 0
    with side.weights.use(adapter=side.adapter), torch.no_grad():
        for start in range(0, len(samples), 8):
            batch = batching.collate(samples[start:start + 8], pad_id, 256, "prompt")
            loss, n = loss_module(batch.inputs, batch.targets)
            total, count = total + float(loss), count + int(n)
    return total / count


def score(side, tokenizer, dataset, splits, test: list[data.Record]) -> dict:
    started = time.perf_counter()
    said = answers(side, tokenizer, test)
    exact = [(r.task, metrics.exact_match(a, r.output)) for r, a in zip(test, said) if r.exact]
    families = defaultdict(list)
    for task, right in exact:
        families[task].append(right)
    return {"val_loss": validation_loss(side, tokenizer, dataset, splits),
            "exact": sum(right for _, right in exact), "exact_of": len(exact),
            "rouge_l": sum(metrics.rouge_l(a, r.output) for r, a in zip(test, said)) / len(test),
            "families": {task: (sum(v), len(v)) for task, v in families.items()},
            "eval_seconds": time.perf_counter() - started}


def run_setting(name, weights, tokenizer, dataset, splits, test, marks_s, dtype) -> list[dict]:
    config = training.TrainConfig.from_dict({**DEMO, **SETTINGS[name], "max_steps": 10_000, "eval_every": 0,
                                             "eval_batches": 1, "probes": 0, "probe_every": 0, "score_answers_every": 0,
                                             "checkpoint_every": 0})
    run_id = f"qpm-{name}"
    side = training.prepare_model(weights, config, run_id, store.MODELS_DIR, dtype, weights.device)
    rate = steps_per_second(side, tokenizer, dataset, splits, config)
    config.max_steps = max(10, int(rate * marks_s[-1]))  # the schedule ends at the last mark
    stop = threading.Event()
    side = training.prepare_model(weights, config, run_id, store.MODELS_DIR, dtype, weights.device)  # fresh init
    trained = side.weights.model  # the shared model with the run's adapter, or a full fine-tune's own copy
    snapshots = Snapshots(trained, marks_s, stop)
    training.train(side, tokenizer, dataset, splits, config, snapshots, stop)
    results = []
    for taken in snapshots.taken:
        with torch.no_grad():
            for parameter_name, parameter in trained.named_parameters():
                if parameter_name in taken["weights"]:
                    parameter.copy_(taken["weights"][parameter_name])
        figures = score(side, tokenizer, dataset, splits, test)
        results.append({**{k: v for k, v in taken.items() if k != "weights"}, **figures,
                        "planned_steps": config.max_steps})
    if side.adapter:
        weights.remove_adapter(side.adapter)
    return results


def row(label: str, mark: str, r: dict) -> str:
    speed = r["trained_tokens"] / r["seconds"] if r.get("seconds") else 0
    return (f"{label:<24} {mark:>5} {r.get('seconds', 0):>7.0f} {r.get('step', 0):>6} {r.get('trained_tokens', 0):>8} "
            f"{speed:>7.0f} {r['val_loss']:>8.3f} {r['exact']:>4}/{r['exact_of']:<3} {100 * r['exact'] / r['exact_of']:>5.1f}% "
            f"{r['rouge_l']:>7.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--marks", default="1,2,5", help="minutes of training at which the adapter is scored")
    parser.add_argument("--settings", default=DEFAULT_SETTINGS, help=f"comma-separated, of: {', '.join(SETTINGS)}")
    parser.add_argument("--limit", type=int, help="score only the first N test records")
    parser.add_argument("--quick", action="store_true", help="0.25 and 0.5 minutes, 2 settings, 16 test records")
    parser.add_argument("--skip-base", action="store_true", help="do not score the base model (about 3 minutes)")
    args = parser.parse_args()
    if args.quick:
        args.marks, args.settings, args.limit = "0.25,0.5", "quick-demo,lr-1e-3", args.limit or 16
    names = [n.strip() for n in args.settings.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting {unknown[0]!r}; choose from {', '.join(SETTINGS)}")
    marks = [float(m) for m in args.marks.split(",")]

    torch.manual_seed(0)
    device = pick_device()
    dtype = pick_dtype(device, "auto", store.model_type())
    tokenizer = store.load_tokenizer()
    weights = Weights(store.load_model(store.DEFAULT, dtype=dtype).to(device))
    dataset = data.load(data.BUILTIN)
    splits = dataset.splits(seed=123)
    test = [dataset.records[i] for i in splits.test[:args.limit]]
    print(f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"device {device}, {str(dtype).replace('torch.', '')}; model {store.DEFAULT}; test split {len(test)} records, "
          f"{sum(r.exact for r in test)} single-answer; answers greedy, at most {ANSWER_TOKENS} tokens")
    print(f"{'setting':<24} {'mark':>5} {'train s':>7} {'steps':>6} {'tokens':>8} {'tok/s':>7} {'val loss':>8} "
          f"{'exact':>8} {'':>6} {'ROUGE-L':>7}")
    if not args.skip_base:
        base = score(Side("base", weights), tokenizer, dataset, splits, test)
        print(row("base (untuned)", "-", base), flush=True)
    best = (0.0, "")
    for name in names:
        results = run_setting(name, weights, tokenizer, dataset, splits, test, [m * 60 for m in marks], dtype)
        for mark, result in zip(marks, results):
            print(row(name, f"{mark:g}m", result), flush=True)
            best = max(best, (result["exact"] / result["exact_of"], f"{name} at {mark:g} min"))
        last = results[-1]
        weakest = sorted(last["families"].items(), key=lambda item: item[1][0] / item[1][1])[:6]
        print(f"  {name}, planned {last['planned_steps']} steps; weakest families at the last mark: "
              + ", ".join(f"{task} {right}/{total}" for task, (right, total) in weakest), flush=True)
    print(f"goal: >= 80% exact within {marks[-1]:g} minutes; best {100 * best[0]:.1f}% ({best[1]})")


if __name__ == "__main__":
    main()
