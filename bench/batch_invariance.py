"""Does a greedy answer depend on the batch it was generated in? Answers to N test prompts of the
bundled dataset, generated alone and in batches of 8 and 32, on the default model in the dtype the
playground picks for this device (bf16 on this CPU) and in float32 (the control), by:

  playground  `playground.generation.generate`: left padding, attention mask, per-row position ids,
              KV cache, finished rows leave the batch
  generate    Hugging Face `model.generate` on left-padded batches with an attention mask, the usual
              way to batch answers (and what the judge used before the one engine)

For each batch size it prints how many answers equal the answer generated alone, and the time.

    python bench/batch_invariance.py [--prompts 50] [--tokens 32] [--dtype auto float32] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BATCHES = (1, 8, 32)


def hf_generate(model, tokenizer, texts, tokens, batch_size, stops):
    import torch

    answers = []
    for start in range(0, len(texts), batch_size):
        encoded = [tokenizer(t).input_ids for t in texts[start:start + batch_size]]
        width = max(len(e) for e in encoded)
        pad = tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded])
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
        with torch.no_grad():
            output = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=tokens, do_sample=False,
                                    eos_token_id=stops, pad_token_id=pad)
        for row in output[:, width:].tolist():
            cut = next((i for i, token in enumerate(row) if token in stops), len(row))
            answers.append(tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per answer at most")
    parser.add_argument("--dtype", nargs="+", default=["auto", "float32"], choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--quick", action="store_true", help="16 prompts, 16 tokens")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.tokens = 16, 16
    import torch

    print(f"machine: {platform.platform()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"greedy, up to {args.tokens} new tokens\n")
    figures = {name: measure(name, args) for name in args.dtype}
    print("RESULT " + json.dumps(figures))


def measure(requested: str, args: argparse.Namespace) -> dict:

    from playground import data, prompts, store
    from playground.generation import GenerationSettings, Side, generate, stop_ids
    from playground.modeling import pick_device, pick_dtype
    from playground.weights import Weights

    device = pick_device()
    dtype = pick_dtype(device, requested, store.model_type())
    tokenizer = store.load_tokenizer()
    model = store.load_model(store.DEFAULT, dtype=dtype).to(device).eval()
    dataset = data.load(data.BUILTIN)
    records = [dataset.records[i] for i in dataset.splits().test[:args.prompts]]
    rendered = [prompts.render(r, "alpaca", tokenizer).inference for r in records]
    side = Side("base", Weights(model))
    settings = GenerationSettings(max_new_tokens=args.tokens)
    stops = stop_ids(tokenizer, "alpaca")
    print(f"default model on {device.type} in {str(dtype).replace('torch.', '')}, {len(records)} test prompts")
    runners = {
        "playground": lambda size: generate([(side, p) for p in rendered], tokenizer, "alpaca", settings,
                                            batch_size=size),
        "generate": lambda size: hf_generate(model, tokenizer, [p.text for p in rendered], args.tokens, size, stops),
    }
    results, answers = {}, {}
    print(f"{'':12} {'batch':>5} {'agree with alone':>17} {'seconds':>8}")
    for name, run in runners.items():
        for size in BATCHES:
            started = time.perf_counter()
            answers[name, size] = run(size)
            seconds = time.perf_counter() - started
            agree = sum(a == b for a, b in zip(answers[name, size], answers[name, 1]))
            results[f"{name}_{size}"] = {"agree": agree, "of": len(records), "seconds": round(seconds, 2)}
            print(f"{name:12} {size:5d} {agree:>10d} of {len(records):<3d} {seconds:8.1f}", flush=True)
    same = sum(a == b for a, b in zip(answers["playground", 1], answers["generate", 1]))
    print(f"alone, the two give the same answer for {same} of {len(records)} prompts")
    for size in BATCHES[1:]:
        for number, (batched, alone) in enumerate(zip(answers["playground", size], answers["playground", 1])):
            if batched != alone:
                common = next((i for i, (a, b) in enumerate(zip(alone, batched)) if a != b), len(alone))
                print(f"  playground, batch {size}, prompt {number}: the same for {common} characters, then "
                      f"alone {alone[common:common + 24]!r} | batched {batched[common:common + 24]!r}")
    print()
    return {"dtype": str(dtype), "results": results, "alone_agree": same}


if __name__ == "__main__":
    main()
