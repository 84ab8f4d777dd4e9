"""Side-by-side generation: base and tuned answers to one prompt, against the base alone.

The default model with a LoRA adapter (r 16, all linear layers) on its shared weights. Each case
runs in its own process and writes the same number of new tokens (greedy, end-of-text held back):
  base alone             `model.generate` with the adapter off: what one answer costs;
  one after the other    `model.generate` twice, adapter off then on: the baseline a user would write;
  playground side by side  `playground.generation.generate`, both answers decoded together.
Printed: wall time, tokens/s, peak memory (process RSS on the CPU, allocated memory on a GPU), and
the parameter memory of base + adapter against the base alone. Targets: memory <= 1.05x base alone;
on the CPU, wall time no worse than the two answers one after the other.

    python bench/side_by_side.py [--tokens 48] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import run_child  # noqa: E402

CASES = {"alone": "base alone (generate)", "sequential": "base then tuned (generate x2)",
         "side_by_side": "playground side by side (stream)"}


def child(case: str, tokens: int) -> dict:
    import torch

    from playground import data, prompts, store
    from playground.generation import GenerationSettings, Side
    from playground.generation import generate as generate_rows
    from playground.modeling import pick_device, pick_dtype
    from playground.training import TrainConfig, lora_config
    from playground.weights import Weights

    device = pick_device()
    tokenizer = store.load_tokenizer()
    model = store.load_model(store.DEFAULT, dtype=pick_dtype(device)).to(device).eval()
    base_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    record = data.load(data.BUILTIN).records[0]
    prompt = prompts.render(record, "alpaca", tokenizer).prompt
    ids = tokenizer(prompt, return_tensors="pt").input_ids.to(device)
    weights = Weights(model)
    if case != "alone":
        model = weights.add_trainable_adapter("tuned", lora_config(TrainConfig(lora_dropout=0.0)))
    all_bytes = sum(p.numel() * p.element_size() for p in model.parameters())

    def generate(count=tokens):
        with torch.no_grad():
            return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=count,
                                  min_new_tokens=count, do_sample=False, pad_token_id=tokenizer.pad_token_id)

    generate(2)  # warm-up, outside the timing
    started = time.perf_counter()
    if case == "alone":
        generate()
        produced = tokens
    elif case == "sequential":
        with model.disable_adapter():
            generate()
        generate()
        produced = 2 * tokens
    else:
        settings = GenerationSettings(max_new_tokens=tokens, min_new_tokens=tokens)
        rows = [(Side("base", weights), prompts.Prompt(prompt)), (Side("tuned", weights, "tuned"), prompts.Prompt(prompt))]
        answers = generate_rows(rows, tokenizer, "alpaca", settings)
        produced = sum(len(tokenizer(a, add_special_tokens=False).input_ids) for a in answers)
    seconds = time.perf_counter() - started
    peak = (torch.cuda.max_memory_allocated() if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"seconds": seconds, "tokens": produced, "peak_bytes": peak, "base_param_bytes": base_bytes,
            "param_bytes": all_bytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=48, help="new tokens per answer")
    parser.add_argument("--quick", action="store_true", help="16 tokens per answer")
    parser.add_argument("--child", choices=list(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    tokens = 16 if args.quick else args.tokens
    if args.child:
        print("CHILD " + json.dumps(child(args.child, tokens)))
        return
    import torch

    print(f"machine: {platform.platform()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'}")
    print(f"default model, greedy, {tokens} new tokens per answer\n")
    results = {}
    for case, name in CASES.items():
        results[case] = run_child(__file__, ["--child", case, "--tokens", str(tokens)], name)
    print(f"{'':36} {'seconds':>8} {'tokens':>7} {'tok/s':>7} {'peak MiB':>9} {'params MiB':>11}")
    for case, name in CASES.items():
        r = results[case]
        print(f"{name:36} {r['seconds']:8.2f} {r['tokens']:7d} {r['tokens'] / r['seconds']:7.1f} "
              f"{r['peak_bytes'] / 2**20:9.0f} {r['param_bytes'] / 2**20:11.1f}")
    alone, sequential, ours = results["alone"], results["sequential"], results["side_by_side"]
    figures = {
        "time_vs_alone": ours["seconds"] / alone["seconds"],
        "time_vs_sequential": ours["seconds"] / sequential["seconds"],
        "param_memory_vs_alone": ours["param_bytes"] / alone["param_bytes"],
        "peak_memory_vs_alone": ours["peak_bytes"] / alone["peak_bytes"],
    }
    print(f"\nside by side vs base alone: time {figures['time_vs_alone']:.2f}x, parameter memory "
          f"{figures['param_memory_vs_alone']:.3f}x (target <= 1.05), peak memory {figures['peak_memory_vs_alone']:.3f}x")
    print(f"side by side vs one after the other: time {figures['time_vs_sequential']:.2f}x (target on the CPU: <= 1)")
    print("RESULT " + json.dumps({"results": results, **figures}))


if __name__ == "__main__":
    main()
