"""Training throughput: the playground's trainer against what a user would otherwise run.

Same model (the embedded default, Gemma 3 270M), data (the bundled training split, Alpaca style,
prompt tokens masked), LoRA settings (r 16, alpha 32, all linear layers), batch size, max
length, number of steps, learning rate and seed, each in its own process:
  (a) the playground's trainer (`playground.training.train`: grouped batches, LM head and loss only
      where the target is not -100);
  (b) Hugging Face `Trainer` with `DataCollatorForSeq2Seq` (what most users would write);
  (c) the book's loop (ch. 7): random batches padded to the batch's longest sample, full logits;
  (d) TRL's `SFTTrainer` as its documentation sets it up: prompt/completion data (here already
      tokenised by the playground, with its completion mask), `completion_only_loss=True`, LoRA through
      `peft_config`, its defaults otherwise (bf16 autocast, gradient checkpointing on, no packing);
      (d-) the same with gradient checkpointing off.
Printed: trained tokens/s, samples/s, peak memory, and the validation loss after training on one
fixed set of validation batches (so a speed-up cannot come from learning less). Target: (a)/(b) >= 2.

Distance to the machine's limit: this CPU's matmul peak is measured in the same run (torch matmuls
at the model's shapes, [tokens x hidden] @ [hidden x intermediate], bf16 and float32, best of 5),
and each method's useful work is counted the same way, from the samples: per real input token
4 x N_body FLOPs (forward, and the backward pass to the inputs that a frozen base needs; N_body =
the decoder's matmul weights), plus 4 x hidden x vocabulary per trained target (the LM head where
the loss needs it). Attention scores and LoRA's own small matmuls are left out. Useful FLOP/s over
the peak, in the dtype the method computes in, is the model FLOPs utilisation (MFU) printed.

    python bench/train_throughput.py [--steps 20] [--quick]
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
from bench.common import run_child, train_with_trl  # noqa: E402

METHODS = {"a": "playground trainer", "a32": "playground trainer, float32", "b": "HF Trainer + DataCollatorForSeq2Seq",
           "c": "book's loop (full logits)", "d": "TRL SFTTrainer (its defaults)",
           "d-": "TRL SFTTrainer, no grad. checkpointing"}


def setup(args):
    import torch

    from playground import store
    from playground.modeling import pick_device, pick_dtype
    from playground.training import TrainConfig, prepare_model
    from playground.weights import Weights

    torch.manual_seed(args.seed)
    device = pick_device()
    # (a) takes the playground's choice (bf16 for Gemma, on the CPU too); the baselines take what a
    # user would: bf16 on a GPU, float32 on the CPU
    dtype = (pick_dtype(device, "auto", store.model_type()) if args.child == "a"
             else torch.bfloat16 if device.type == "cuda" else torch.float32)
    global _dtype_used
    _dtype_used = str(dtype).replace("torch.", "")
    tokenizer = store.load_tokenizer()
    model = store.load_model(store.DEFAULT, dtype=dtype).to(device)
    config = TrainConfig(max_steps=None, epochs=1, batch_size=args.batch_size, lr=args.lr, max_length=args.max_length,
                         mask="prompt", warmup_steps=2, seed=args.seed, lora_r=16, lora_alpha=32,
                         lora_dropout=0.0, eval_every=0, eval_batches=1, probe_every=0, probes=0)
    side = prepare_model(Weights(model), config, "bench", store.MODELS_DIR, dtype, device)
    dataset, split, train, val = bench_data(args, tokenizer)
    return torch, side, tokenizer, config, dataset, split, train, val, device


def bench_data(args, tokenizer):
    """A subset whose training split is exactly `steps` batches: every method trains one epoch over
    the same samples, so they see the same tokens and differ only in how they batch and compute."""
    from playground import batching, data

    full = data.load(data.BUILTIN)
    size = next(n for n in range(1, len(full)) if int(n * 0.85) >= args.steps * args.batch_size)
    dataset = data.Dataset(records=full.records[:size], source="builtin subset", mapping=full.mapping)
    split = dataset.splits(seed=args.seed)
    val_pool = full.splits(seed=args.seed).validation
    train = batching.encode_all(dataset.records, "alpaca", tokenizer, indices=split.train)
    val = batching.encode_all(full.records, "alpaca", tokenizer, indices=val_pool[:32])
    return dataset, split, train, val


_dtype_used = ""


def validation_loss(torch, model, tokenizer, val, device) -> float:
    from playground import batching
    from playground.modeling import CausalLMLoss

    loss_fn, total, count = CausalLMLoss(model), 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(val), 8):
            batch = batching.collate(val[start:start + 8], tokenizer.pad_token_id, 256, "prompt")
            loss, n = loss_fn(batch.inputs.to(device), batch.targets.to(device))
            total, count = total + float(loss), count + int(n)
    return total / count


def run_playground(args):
    from playground.training import train

    torch, side, tokenizer, config, dataset, split, samples, val, device = setup(args)
    model = side.weights.model
    steps = []
    train(side, tokenizer, dataset, split, config, lambda e: steps.append(e) if e.kind in ("start", "step") else None)
    start = next(e for e in steps if e.kind == "start")
    step_events = [e for e in steps if e.kind == "step"]
    seconds = step_events[-1].elapsed - start.elapsed
    return seconds, trained_tokens(samples, tokenizer, args), len(samples), validation_loss(torch, model, tokenizer, val, device)


def trained_tokens(samples, tokenizer, args) -> int:
    """Targets that are not -100 over the epoch (the same for every method: same samples and mask)."""
    from playground import batching

    return sum(batching.collate([s], tokenizer.pad_token_id, args.max_length, "prompt").trained_tokens for s in samples)


def run_hf_trainer(args):
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    torch, side, tokenizer, config, _, _, train, val, device = setup(args)
    model = side.weights.model
    rows = []
    for sample in train:
        ids = sample.ids[:args.max_length + 1]
        labels = [-100] * sample.prompt_len + ids[sample.prompt_len:]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels[:len(ids)]})
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    trained = [0]

    def counting(features):
        batch = collator(features)
        trained[0] += int((batch["labels"][:, 1:] != -100).sum())
        return batch

    training_args = TrainingArguments(
        output_dir=str(ROOT / "artifacts" / "hf-trainer-bench"), per_device_train_batch_size=args.batch_size,
        num_train_epochs=1, learning_rate=args.lr, warmup_steps=2, lr_scheduler_type="linear", logging_steps=1,
        save_strategy="no", report_to=[], seed=args.seed, dataloader_num_workers=0, max_grad_norm=1.0,
        remove_unused_columns=False, bf16=device.type == "cuda", use_cpu=device.type == "cpu")
    trainer = Trainer(model=model, args=training_args, train_dataset=rows, data_collator=counting)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    return seconds, trained[0], len(train), validation_loss(torch, model, tokenizer, val, device)


def run_book_loop(args):
    import torch.nn.functional as F

    from playground import batching

    torch, side, tokenizer, _, _, _, train, val, device = setup(args)
    model = side.weights.model
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.1)
    generator = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(train), generator=generator).tolist()
    model.train()
    trained = 0
    started = time.perf_counter()
    for start in range(0, len(order), args.batch_size):
        chosen = order[start:start + args.batch_size]
        batch = batching.collate([train[i] for i in chosen], tokenizer.pad_token_id, args.max_length, "prompt")
        inputs, targets = batch.inputs.to(device), batch.targets.to(device)
        logits = model(inputs).logits
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        trained += batch.trained_tokens
    seconds = time.perf_counter() - started
    return seconds, trained, len(train), validation_loss(torch, model, tokenizer, val, device)


def run_trl(args):
    """TRL's SFTTrainer on the same samples: pre-tokenised rows with their completion mask."""
    from trl import SFTConfig, SFTTrainer

    import torch

    from playground import store
    from playground.modeling import pick_device, pick_dtype

    torch.manual_seed(args.seed)
    device = pick_device()
    tokenizer = store.load_tokenizer()
    _, _, train, val = bench_data(args, tokenizer)
    global _dtype_used
    # the base as the playground loads it (bf16 for Gemma, on the CPU too); TRL wraps it with LoRA itself
    dtype = pick_dtype(device, "auto", store.model_type())
    _dtype_used = str(dtype).replace("torch.", "") + " + autocast"
    model = store.load_model(store.DEFAULT, dtype=dtype).to(device)
    rows = [{"input_ids": s.ids[:args.max_length + 1],
             "completion_mask": ([0] * s.prompt_len + [1] * len(s.ids))[:min(len(s.ids), args.max_length + 1)]}
            for s in train]
    seconds, trainer = train_with_trl(SFTTrainer, SFTConfig, model, rows, tokenizer, args, output="trl-bench",
                                      device_type=device.type, bf16=dtype == torch.bfloat16, completion_only_loss=True,
                                      packing=False, gradient_checkpointing=args.child == "d")
    return seconds, trained_tokens(train, tokenizer, args), len(train), validation_loss(
        torch, trainer.model, tokenizer, val, device)


def body_matmul_parameters(model) -> int:
    """The decoder's matmul weights: every 2-D weight but the embeddings, the LM head and LoRA's."""
    return sum(p.numel() for name, p in model.named_parameters()
               if p.ndim == 2 and not any(k in name for k in ("embed", "lm_head", "lora_")))


def useful_flops(args) -> dict:
    """The work every method must do on these samples (see the docstring), and the model's shapes."""

    _, side, tokenizer, _, _, _, train, _, _ = setup(args)
    config = side.weights.model.config
    config = getattr(config, "text_config", config)
    n_body = body_matmul_parameters(side.weights.model)
    inputs = sum(min(len(s.ids) - 1, args.max_length) for s in train)
    trained = trained_tokens(train, tokenizer, args)
    return {"flops": 4 * n_body * inputs + 4 * config.hidden_size * config.vocab_size * trained,
            "hidden": config.hidden_size, "intermediate": config.intermediate_size, "input_tokens": inputs,
            "n_body": n_body}


def matmul_peak(hidden: int, intermediate: int, dtype_name: str, tokens: int = 512, repeats: int = 5) -> float:
    """FLOP/s of the best of `repeats` timings of [tokens x hidden] @ [hidden x intermediate] matmuls."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(tokens, hidden, dtype=dtype), torch.randn(hidden, intermediate, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(20):
            a @ b
        best = min(best, (time.perf_counter() - started) / 20)
    return 2 * tokens * hidden * intermediate / best


def child(args) -> None:
    if args.child == "work":
        print("CHILD " + json.dumps(useful_flops(args)))
        return
    runner = {"a": run_playground, "a32": run_playground, "b": run_hf_trainer, "c": run_book_loop,
              "d": run_trl, "d-": run_trl}[args.child]
    seconds, trained, samples, loss = runner(args)
    import torch

    peak = (torch.cuda.max_memory_allocated() if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    print("CHILD " + json.dumps({"seconds": seconds, "trained_tokens": trained, "samples": samples,
                                 "peak_bytes": peak, "val_loss": loss, "dtype": _dtype_used}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--quick", action="store_true", help="6 steps")
    parser.add_argument("--child", choices=[*METHODS, "work"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.steps = 6
    if args.child:
        child(args)
        return
    import torch

    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'}")
    print(f"default model, LoRA r16, batch {args.batch_size}, max length {args.max_length}, one epoch of "
          f"{args.steps} batches over the same samples, prompt masked, seed {args.seed}\n")
    common = ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
              "--lr", str(args.lr), "--seed", str(args.seed)]
    results = {key: run_child(__file__, ["--child", key, *common], name) for key, name in METHODS.items()}
    work = run_child(__file__, ["--child", "work", *common], "useful work")
    peaks = {name: matmul_peak(work["hidden"], work["intermediate"], name) for name in ("bfloat16", "float32")}
    print(f"{'':45} {'dtype':>17} {'trained tok/s':>14} {'samples/s':>10} {'MFU':>6} {'peak MiB':>9} {'val loss':>9} "
          f"{'seconds':>8}")
    for key, name in METHODS.items():
        r = results[key]
        r["tokens_per_s"] = r["trained_tokens"] / r["seconds"]
        r["samples_per_s"] = r["samples"] / r["seconds"]
        r["mfu"] = work["flops"] / r["seconds"] / peaks["bfloat16" if r["dtype"].startswith("bfloat16") else "float32"]
        print(f"({key:>3}) {name:39} {r['dtype']:>17} {r['tokens_per_s']:14.1f} {r['samples_per_s']:10.2f} "
              f"{100 * r['mfu']:5.1f}% {r['peak_bytes'] / 2**20:9.0f} {r['val_loss']:9.4f} {r['seconds']:8.1f}")
    ratio_b = results["a"]["samples_per_s"] / results["b"]["samples_per_s"]
    ratio_c = results["a"]["samples_per_s"] / results["c"]["samples_per_s"]
    ratio_d = results["a"]["samples_per_s"] / results["d"]["samples_per_s"]
    ratio_d_ = results["a"]["samples_per_s"] / results["d-"]["samples_per_s"]
    ratio_32 = results["a32"]["samples_per_s"] / results["b"]["samples_per_s"]
    print(f"\nmatmul peak at the model's shapes ([512 x {work['hidden']}] @ [{work['hidden']} x {work['intermediate']}]):"
          f" bf16 {peaks['bfloat16'] / 1e9:.0f} GFLOP/s, float32 {peaks['float32'] / 1e9:.0f} GFLOP/s; useful work "
          f"{work['flops'] / 1e12:.2f} TFLOP ({work['input_tokens']:,} input tokens, N_body {work['n_body']:,})")
    print(f"speed (samples/s over the same samples): (a)/(b) = {ratio_b:.2f}x, (a)/(c) = {ratio_c:.2f}x, "
          f"(a)/(d) TRL = {ratio_d:.2f}x, (a)/(d-) = {ratio_d_:.2f}x (target (a)/(b) >= 2); "
          f"in float32 like the baselines: (a32)/(b) = {ratio_32:.2f}x")
    print("RESULT " + json.dumps({"results": results, "a_over_b": ratio_b, "a_over_c": ratio_c, "a_over_d": ratio_d,
                                  "a_over_d_nogc": ratio_d_, "a32_over_b": ratio_32, "peaks": peaks, "work": work}))


if __name__ == "__main__":
    main()
