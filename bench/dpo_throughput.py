"""DPO throughput: the playground's DPO against TRL's `DPOTrainer` on the same pairs.

Same model (the embedded default, Gemma 3 270M; `--random-weights`: its shapes and tokenizer with
seeded random weights, where the converted model is not at hand), data (the bundled records as
preference pairs, `builtin-pairs`, Alpaca style, the prompt masked), LoRA (r 16, alpha 32, all
linear layers, no dropout) on the base model, which is also the reference, beta, learning rate,
batch size, max length and number of steps (one epoch over the same training pairs), each in its
own process:
  (a) the playground (`training.train` with the DPO objective): the reference's log-probabilities
      computed once before the first step from the starting weights (counted in its time), chosen
      and rejected rows in one forward pass, the LM head only on the response tokens;
  (a+) the same with its gradient checkpointing (layers, and the LM head in chunks of positions,
      computed again in the backward pass), to set beside TRL's defaults, which checkpoint too;
  (t) TRL's `DPOTrainer` as its documentation sets it up (a LoRA `peft_config`, the base model as
      the reference through the adapter switched off, its defaults: gradient checkpointing on,
      bf16 autocast on a GPU), with `loss_type=["sigmoid_norm"]`, TRL's name for the book's loss on
      log-probabilities averaged over the response tokens;
  (t-) the same with gradient checkpointing off.
Printed: training pairs per second (over the whole training call), peak memory, and the validation
loss, reward margin and reward accuracy after training, measured the same way for every method (the playground's
`dpo.Preference.evaluate` on the same validation pairs, the reference being the model with its
adapter off). Peak memory is the tensors' ("tensor MiB": the weights, and the peak of the tensors
made during training, what a GPU's `max_memory_allocated` counts, measured on the CPU by
bench.common.PeakTensorBytes in a second run of the same case, as tracking slows it), and on the
CPU also the process's resident set ("RSS MiB", which holds the allocator's cache too). Goal: the
playground at least 2x TRL's pairs per second at no more tensor memory, equal margins within noise:
(a) against (t-) and (a+) against (t), each pair keeping the same kind of memory.

    python bench/dpo_throughput.py [--steps 20] [--batch-size 8] [--quick] [--random-weights]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import TensorMemory, run_child, train_with_trl  # noqa: E402

METHODS = {"a": "playground DPO", "a+": "playground DPO, grad. checkpointing", "t": "TRL DPOTrainer (its defaults)",
           "t-": "TRL DPOTrainer, no grad. checkpointing"}
VALIDATION_PAIRS = 32


def bench_data(args, tokenizer):
    """A subset of the bundled pairs whose training split is exactly `steps` batches, and fixed
    validation pairs from the whole set's validation split."""
    from playground import data, dpo

    full = data.load(data.BUILTIN_PAIRS)
    size = next(n for n in range(1, len(full)) if int(n * 0.85) >= args.steps * args.batch_size)
    dataset = data.Dataset(records=full.records[:size], source="builtin-pairs subset", mapping=full.mapping)
    split = dataset.splits(seed=args.seed)
    pool = full.splits(seed=args.seed).validation[:VALIDATION_PAIRS]
    val = dpo.encode_pairs(full.records, "alpaca", tokenizer, indices=pool)
    return dataset, split, val


def dpo_config(args):
    from playground.training import TrainConfig

    return TrainConfig(objective="dpo", beta=args.beta, max_steps=None, epochs=1, batch_size=args.batch_size,
                       lr=args.lr, max_length=args.max_length, mask="prompt", warmup_steps=2, seed=args.seed,
                       lora_r=16, lora_alpha=32, lora_dropout=0.0, eval_every=0, eval_batches=1, probe_every=0,
                       probes=0, gradient_checkpointing=args.child == "a+")


def device_and_dtype():
    from playground import store
    from playground.modeling import pick_device, pick_dtype

    device = pick_device()
    return device, pick_dtype(device, "auto", store.model_type())


def validation(args, model, tokenizer, val, device) -> dict:
    """The validation figures of a trained LoRA model, its adapter off being the reference."""
    import torch

    from playground import dpo
    from playground.modeling import RowLogProbs

    objective = dpo.Preference(dpo_config(args), tokenizer)
    module = RowLogProbs(model)
    batches = [val[start:start + 8] for start in range(0, len(val), 8)]
    model.eval()
    with torch.no_grad():
        with model.disable_adapter():
            for pairs in batches:
                logprobs = dpo.mean_logprobs(module, objective.collate(pairs), device).tolist()
                objective.reference.update({p.index: (logprobs[n], logprobs[n + len(pairs)])
                                            for n, p in enumerate(pairs)})
        return objective.evaluate(module, batches, device)


def run_playground(args):
    import torch

    from playground import store
    from playground.training import prepare_model, train
    from playground.weights import Weights

    torch.manual_seed(args.seed)
    device, dtype = device_and_dtype()
    tokenizer = store.load_tokenizer()
    config = dpo_config(args)
    side = prepare_model(Weights(store.load_model(store.DEFAULT, dtype=dtype).to(device)), config, "bench",
                         store.MODELS_DIR, dtype, device)
    dataset, split, val = bench_data(args, tokenizer)
    with TensorMemory(device, side.weights.model, args.track_tensors) as memory:
        started = time.perf_counter()
        train(side, tokenizer, dataset, split, config, lambda event: None)
        seconds = time.perf_counter() - started
    figures = validation(args, side.weights.model, tokenizer, val, device)
    return seconds, len(split.train), figures, str(dtype), memory.peak


def run_trl(args):
    """TRL's DPOTrainer on the same pairs, as text (prompt in the Alpaca style, chosen, rejected)."""
    import torch
    from trl import DPOConfig, DPOTrainer

    from playground import prompts, store

    torch.manual_seed(args.seed)
    device, dtype = device_and_dtype()
    tokenizer = store.load_tokenizer()
    dataset, split, val = bench_data(args, tokenizer)
    rows = []
    for index in split.train:
        record = dataset.records[index]
        rendered = prompts.render(record, "alpaca", tokenizer)
        rows.append({"prompt": rendered.prompt, "chosen": record.chosen, "rejected": record.rejected})
    model = store.load_model(store.DEFAULT, dtype=dtype).to(device)
    memory = TensorMemory(device, model, args.track_tensors)  # the weights as loaded; TRL's adapter counts as made
    seconds, trainer = train_with_trl(DPOTrainer, DPOConfig, model, rows, tokenizer, args, output="trl-dpo-bench",
                                      device_type=device.type, bf16=dtype == torch.bfloat16, around=memory,
                                      beta=args.beta, loss_type=["sigmoid_norm"],
                                      gradient_checkpointing=args.child == "t")
    figures = validation(args, trainer.model, tokenizer, val, device)
    return seconds, len(rows), figures, str(dtype) + " + autocast", memory.peak


def child(args) -> None:
    seconds, pairs, figures, dtype, tensor_peak = (run_playground if args.child.startswith("a") else run_trl)(args)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("CHILD " + json.dumps({"seconds": seconds, "pairs": pairs, "peak_bytes": tensor_peak, "rss_bytes": rss,
                                 "dtype": dtype, **figures}))


def random_weights_store(seed: int) -> Path:
    """A model store whose default model has the embedded default's shapes and tokenizer and seeded
    random weights (the tokenizer must have been converted once: models/gemma-3-270m/tokenizer.json)."""
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from playground import store

    source = store.default_dir()
    if not (source / "tokenizer.json").exists():
        raise SystemExit(f"--random-weights needs the default tokenizer in {source} (converted once by the app)")
    folder = Path(tempfile.mkdtemp(prefix="dpo-bench-")) / store.DEFAULT_NAME
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        if (source / name).exists():
            shutil.copyfile(source / name, folder / name)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(store.DEFAULT_CONFIG_DIR),
                                             dtype=torch.bfloat16)
    model.save_pretrained(folder)
    return folder.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--quick", action="store_true", help="6 steps of 4 pairs")
    parser.add_argument("--random-weights", action="store_true",
                        help="the default's shapes and tokenizer with seeded random weights")
    parser.add_argument("--child", choices=list(METHODS), help=argparse.SUPPRESS)
    parser.add_argument("--track-tensors", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.batch_size = 6, 4
    if args.child:
        child(args)
        return
    import torch

    if args.random_weights:  # the children read the store from the environment
        os.environ["PLAYGROUND_MODELS_DIR"] = str(random_weights_store(args.seed))
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'}")
    print(f"default model{' (random weights)' if args.random_weights else ''}, LoRA r16 on the base (also the "
          f"reference), beta {args.beta}, lr {args.lr}, one epoch of {args.steps} batches of {args.batch_size} pairs, "
          f"max length {args.max_length}, prompt masked, seed {args.seed}\n")
    common = ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
              "--lr", str(args.lr), "--beta", str(args.beta), "--seed", str(args.seed)]
    print(f"{'':45} {'dtype':>25} {'pairs/s':>8} {'tensor MiB':>10} {'RSS MiB':>8} {'val loss':>9} "
          f"{'val margin':>11} {'val acc.':>9} {'seconds':>8}", flush=True)
    results = {}
    for key, name in METHODS.items():  # each line as soon as its case has run
        r = results[key] = run_child(__file__, ["--child", key, *common], name)
        if r["peak_bytes"] is None:  # on the CPU: tensor memory from a second run, timed apart
            r["peak_bytes"] = run_child(__file__, ["--child", key, "--track-tensors", *common], name)["peak_bytes"]
        r["pairs_per_s"] = r["pairs"] / r["seconds"]
        print(f"({key:>2}) {name:40} {r['dtype']:>25} {r['pairs_per_s']:8.2f} {r['peak_bytes'] / 2**20:10.0f} "
              f"{r['rss_bytes'] / 2**20:8.0f} {r['val_loss']:9.4f} {r['val_reward_margin']:11.4f} {r['val_reward_accuracy']:9.2f} "
              f"{r['seconds']:8.1f}", flush=True)
    pairs = [("a", "t-"), ("a+", "t"), ("a", "t")]  # like against like, then the fastest against TRL's defaults
    speed = {f"{a}/{t}": results[a]["pairs_per_s"] / results[t]["pairs_per_s"] for a, t in pairs}
    memory = {f"{a}/{t}": results[a]["peak_bytes"] / results[t]["peak_bytes"] for a, t in pairs}
    print("\nspeed (pairs/s, goal >= 2): " + ", ".join(f"({a})/({t}) = {speed[f'{a}/{t}']:.2f}x" for a, t in pairs)
          + "; peak tensor memory (goal <= 1): " + ", ".join(f"({a})/({t}) = {memory[f'{a}/{t}']:.2f}" for a, t in pairs))
    print("RESULT " + json.dumps({"results": results, "speed": speed, "memory": memory}))


if __name__ == "__main__":
    main()
