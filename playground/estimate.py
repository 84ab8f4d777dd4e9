"""Before Start: will the run fit in memory, and how long will it take?

Memory is counted from the model's own parameter shapes (the loaded model, or one built on the
`meta` device from its config, which costs no memory) and the batch the settings make:
- weights: the shared base weights, plus a float32 copy for a full fine-tune (training.prepare_model);
- trainable parameters, their gradients and AdamW's two states (float32 for LoRA);
- activations kept for the backward pass, counted on the widest padded batch (where a run's memory
  peaks: its longest samples, which every epoch meets): per token and layer,
  ACT_BYTES_PER_FEATURE bytes per input and output feature of the layer's linear layers, a measure
  that follows the architecture's widths; with gradient checkpointing, each layer's input and one
  layer's activations at a time (in the backward pass);
- the logits at trained positions, one tile of the vocabulary at a time (lm_head): the tile in the
  model's dtype and its float32 copies;
- the optimizer step's temporaries (off the GPU, AdamW updates one tensor at a time, with a
  temporary the size of that tensor) and the runtime's own memory (RUNTIME_BYTES).
bench/estimate_accuracy.py compares the total with the peak RSS of real runs of the default model.
Time per step comes from this machine's earlier runs of the same model, method, device and dtype
(their measured input tokens per second), or, without one, from the parameter count and a matmul
speed measured here, which is rougher and says so.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import psutil
import torch
from torch import nn

from . import batching, lm_head, runs, store
from .errors import PlaygroundError

# Bytes autograd keeps per token, per layer and per input or output feature of the layer's linear
# layers. Measured with saved-tensor hooks on a batch of 4 x 128: Gemma 3 270M 4.4 (LoRA on bf16,
# float32 adapters) and 6.0 (full, float32); a tiny Llama 4.2 (LoRA) and 4.5 (full), both float32.
ACT_BYTES_PER_FEATURE = {"lora": 4.5, "full": 6.0}
# Per element of the LM head's tile (lm_head), besides the tile in the model's dtype: its float32
# copy, which becomes the gradient in the backward pass (for a float32 model, the same tensor: counted
# twice, on the safe side).
LOGIT_BYTES = 4
# What a step holds besides tensors: the allocator's cache, kernel workspaces, the autograd engine.
# Measured as the rest of the peak RSS on this 2-core CPU with the default model.
RUNTIME_BYTES = 400 * 2**20
SAMPLE_RECORDS = 256  # training records tokenised to measure lengths
MATMUL_EFFICIENCY = 0.5  # of the measured matmul speed a training step reaches (rough)
GIB = 2**30


@dataclass
class Shapes:
    """What the estimate needs from a model."""
    parameters: int
    weight_bytes: int
    hidden: int
    vocab: int
    dtype_bytes: int
    largest: int  # elements of the largest parameter tensor
    linears: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (in, out), LM head excluded

    @property
    def layers(self) -> int:
        """Decoder layers: the numbers in the linear layers' names (`model.layers.N.mlp.up_proj`)."""
        return max(1, len({name.split(".layers.")[1].split(".")[0] for name in self.linears if ".layers." in name}))


@dataclass
class Batches:
    """Token counts per optimizer step, from a sample of the training split."""
    computed: float  # padded tokens the decoder runs on (batch x width), per micro-batch
    real: float      # real input tokens per micro-batch
    trained: float   # trained targets per micro-batch
    micro_batches: int  # per optimizer step (gradient accumulation)
    # the widest micro-batch of an epoch (its longest samples), where memory peaks: padded tokens and
    # trained targets; None: as wide as `computed`
    widest: float | None = None
    widest_trained: float | None = None


@dataclass
class Estimate:
    parts: dict[str, int]  # bytes
    trainable: int
    available: int | None  # bytes free on the device now
    step_seconds: float | None
    run_seconds: float | None
    steps: int
    basis: str  # where the time comes from
    already_loaded: int = 0  # bytes of `parts` already in memory (the loaded base weights)
    notes: list[str] = field(default_factory=list)  # what else the figures count

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    @property
    def fits(self) -> bool | None:
        if self.available is None:
            return None
        return self.total - self.already_loaded <= self.available


def shapes_of(model: nn.Module) -> Shapes:
    """Shapes of a loaded model (or one on the meta device); LoRA layers already on it are skipped."""
    from .modeling import unwrap_causal_lm

    causal_lm = unwrap_causal_lm(model)
    config = getattr(causal_lm.config, "text_config", None) or causal_lm.config
    head = causal_lm.get_output_embeddings()
    linears = {name: (module.in_features, module.out_features) for name, module in causal_lm.named_modules()
               if isinstance(module, nn.Linear) and module is not head and "lora_" not in name}
    base = [p for name, p in causal_lm.named_parameters() if "lora_" not in name]
    dtype = next(iter(base)).dtype
    return Shapes(parameters=sum(p.numel() for p in base), weight_bytes=sum(p.numel() * p.element_size() for p in base),
                  hidden=config.hidden_size, vocab=config.vocab_size, dtype_bytes=dtype.itemsize,
                  largest=max(p.numel() for p in base), linears=linears)


def shapes_from_config(folder: str | Path, dtype: torch.dtype) -> Shapes:
    """Shapes of a local model folder without loading its weights: built on the meta device."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return shapes_of(model)


def lora_parameters(shapes: Shapes, rank: int, targets: str) -> int:
    """Trainable parameters of LoRA adapters: rank x (in + out) per targeted linear layer."""
    names = None if targets == "all-linear" else {t.strip() for t in targets.split(",") if t.strip()}
    return sum(rank * (n_in + n_out) for name, (n_in, n_out) in shapes.linears.items()
               if names is None or name.rsplit(".", 1)[-1] in names)


def batch_tokens(records: Sequence[Any], indices: Sequence[int], tokenizer: Any, config: Any) -> Batches:
    """Mean tokens per micro-batch for the settings, from up to SAMPLE_RECORDS training records, encoded
    and collated by the run's own objective: a preference pair is two rows (chosen and rejected)."""
    from .training import objective_for  # the loop's module imports this one

    objective = objective_for(config, tokenizer)
    encoded = objective.encode(records, list(indices[:SAMPLE_RECORDS]))
    if not encoded:
        return Batches(0, 0, 0, config.grad_accum)
    collated = objective.collate(encoded)  # training's own masking
    rows = collated.samples
    lengths = [min(s.input_len, collated.inputs.shape[1]) for s in rows]
    trained = (collated.targets != batching.IGNORE_INDEX).sum(dim=1).tolist()
    size = min(config.batch_size * len(rows) // len(encoded), len(rows))
    # Batches are padded to their longest sample: about the mean when grouped by length, else
    # about the length below which a batch's samples all fall half of the time.
    mean = statistics.mean(lengths)
    width = mean if config.group_by_length else max(mean, _typical_max(lengths, size))
    return Batches(computed=size * width, real=size * mean,
                   trained=size * statistics.mean(trained), micro_batches=config.grad_accum,
                   widest=size * max(lengths), widest_trained=size * max(trained))


def _typical_max(lengths: list[int], size: int) -> float:
    ordered = sorted(lengths)
    quantile = 0.5 ** (1 / max(size, 1))  # P(max of `size` draws <= q) = 1/2
    return float(ordered[min(len(ordered) - 1, int(quantile * len(ordered)))])


def memory(shapes: Shapes, config: Any, batches: Batches, device_type: str = "cpu") -> tuple[dict[str, int], int]:
    """(bytes per part, trainable parameters)."""
    if config.method == "lora":
        trainable = lora_parameters(shapes, config.lora_r, config.target_modules)
        copy = 0
        largest = max((config.lora_r * max(n_in, n_out) for n_in, n_out in shapes.linears.values()), default=0)
    else:
        trainable, largest = shapes.parameters, shapes.largest
        copy = trainable * 4  # the float32 copy that trains
    logit_dtype_bytes = shapes.dtype_bytes if config.method == "lora" else 4
    features = sum(n_in + n_out for n_in, n_out in shapes.linears.values())  # over all layers
    per_token = features * ACT_BYTES_PER_FEATURE[config.method]
    if getattr(config, "gradient_checkpointing", False):
        # each layer's input, and one layer's activations while the backward pass recomputes it
        per_token = shapes.layers * shapes.hidden * logit_dtype_bytes + per_token / shapes.layers
    parts = {"weights": shapes.weight_bytes + copy,
             "gradients": trainable * 4,
             "optimizer": trainable * 8,
             "optimizer_step": 0 if device_type == "cuda" else largest * 4,  # fused on the GPU
             "activations": int((batches.widest or batches.computed) * per_token),
             "logits": lm_head.largest_tile(int(batches.widest_trained or batches.trained), shapes.vocab)
             * (LOGIT_BYTES + logit_dtype_bytes),
             "runtime": RUNTIME_BYTES}
    return parts, trainable


def available_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        return psutil.virtual_memory().available
    return None


def measured_speeds(models_dir: Path, config: Any, device: str, dtype: str) -> list[float]:
    """Median input tokens/s of each of the latest 5 runs like this one (same objective, model, method,
    device, dtype, batch size, max length and gradient checkpointing), newest first. A DPO step reads a token at about half a
    supervised step's speed (measured: 61 against 141 tokens/s on the default model), so the objectives
    never stand in for each other."""
    speeds = []
    for record in runs.list_runs(models_dir):
        s = record.config
        if (s.objective, s.model, s.method, record.config_json.get("device"), record.config_json.get("dtype"),
                s.batch_size, s.max_length, s.gradient_checkpointing) != \
                (config.objective, config.model, config.method, device, dtype, config.batch_size, config.max_length,
                 getattr(config, "gradient_checkpointing", False)):
            continue
        steps = [e["input_tokens_per_s"] for e in record.metrics() if e.get("kind") == "step"
                 and e.get("input_tokens_per_s")]
        if len(steps) > 2:
            speeds.append(statistics.median(steps[2:]))  # the first steps warm up
        if len(speeds) == 5:
            break
    return speeds


def speed_basis(speeds: list[float]) -> str:
    """Where a measured speed comes from, and how far the runs it comes from disagree."""
    count = len(speeds)
    basis = (f"measured: {statistics.median(speeds):,.0f} input tokens/s, the median of {count} earlier "
             f"run{'s' * (count > 1)} like this")
    if count > 1 and max(speeds) > 2 * min(speeds):  # the machine's load changed between them
        basis += (f"; they ran from {min(speeds):,.0f} to {max(speeds):,.0f} tokens/s, so this machine's load "
                  "varies: the Train tab's clock, from this run's own speed, is the one to trust")
    return basis


def matmul_flops(device: torch.device, dtype: torch.dtype, size: int = 1024, seconds: float = 0.3) -> float:
    """Floating-point operations per second of a square matmul here, measured for about `seconds`."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b  # warm up
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        count += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 2 * size**3 * count / (time.perf_counter() - started)


def step_seconds(shapes: Shapes, config: Any, batches: Batches, tokens_per_s: float | None,
                 flops: float | None) -> float | None:
    """One optimizer step: real tokens at the measured speed, or the compute over the matmul speed."""
    if tokens_per_s:
        return batches.real * batches.micro_batches / tokens_per_s
    if not flops:
        return None
    # 2 FLOPs per weight of the decoder's linear layers forward, 2 more back through the activations
    # and, for a full fine-tune, 2 for the weights' gradients; the embedding is a lookup, no matmul
    # (gradient checkpointing runs each forward pass twice: 2 more)
    again = 2 if getattr(config, "gradient_checkpointing", False) else 0
    per_token = (6 if config.method == "full" else 4) + again
    per_token *= sum(n_in * n_out for n_in, n_out in shapes.linears.values())
    work = batches.computed * per_token + batches.trained * (6 + again) * shapes.hidden * shapes.vocab
    return work * batches.micro_batches / (flops * MATMUL_EFFICIENCY)


def estimate(shapes: Shapes, config: Any, batches: Batches, steps: int, device: torch.device, *,
             models_dir: Path, dtype_name: str, already_loaded: bool = False,
             flops: float | None = None) -> Estimate:
    parts, trainable = memory(shapes, config, batches, device.type)
    speeds = measured_speeds(models_dir, config, device.type, dtype_name)
    speed = statistics.median(speeds) if speeds else None
    if speeds:
        basis = speed_basis(speeds)
    else:
        trains_in = torch.float32 if config.method == "full" and device.type != "cuda" else getattr(torch, dtype_name)
        flops = flops if flops is not None else matmul_flops(device, trains_in)
        basis = (f"rough: no earlier run like this, so from this machine's matmul speed ({flops / 1e9:,.0f} GFLOP/s) "
                 "and the model's size; the first run makes it measured")
    per_step = step_seconds(shapes, config, batches, speed, flops)
    evaluations = math.ceil(steps / config.eval_every) + 1 if config.eval_every else 2
    forward_only = evaluations * config.eval_batches  # in steps' worth of batches, each about a third of a step
    notes = []
    if getattr(config, "objective", "sft") == "dpo":
        forward_only += steps  # the reference's log-probabilities: one forward pass over the pairs, before step 1
        notes.append(DPO_NOTE)
    run = None if per_step is None else per_step * steps + forward_only * per_step / 3
    return Estimate(parts, trainable, available_bytes(device), per_step, run, steps, basis,
                    shapes.weight_bytes if already_loaded else 0, notes)


def for_settings(manager: Any, dataset: Any, config: Any, train_indices: Sequence[int],
                 wait: bool = False) -> Estimate:
    """The estimate for training `config` on `dataset` with the manager's device, over the steps the
    run will take (`training.planned_steps`): the loaded model's shapes when it is loaded, else its
    config's (the weights are not loaded for this).

    `wait` (the command line) waits for the tokenizer and converts the default model first when this
    models folder has not converted it yet; without it (a tab) a model still to convert is a message."""
    from .modeling import pick_dtype
    from .training import planned_steps  # the loop's module imports this one

    tokenizer = manager.tokenizer(config.model, timeout=None if wait else 60)
    loaded = manager.loaded_model(config.model)
    if wait and loaded is None and store.needs_conversion(config.model, manager.models_dir):
        store.ensure_default_model(manager.models_dir)
    if loaded is not None:
        shapes, dtype = shapes_of(loaded.weights.model), loaded.dtype
    else:
        dtype = pick_dtype(manager.device, manager.requested_dtype, store.model_type(config.model, manager.models_dir))
        # the default model before its first conversion: the shapes of its config as shipped
        folder = store.DEFAULT_CONFIG_DIR if store.needs_conversion(config.model, manager.models_dir) else \
            store.resolve(config.model, manager.models_dir, weights=True)
        try:
            shapes = shapes_from_config(folder, dtype)
        except (OSError, ValueError) as exc:
            raise PlaygroundError(f"No estimate: the config of model '{config.model}' cannot be read ({exc}).") from None
    batches = batch_tokens(dataset.records, train_indices, tokenizer, config)
    steps = planned_steps(config, tokenizer, dataset, train_indices)
    return estimate(shapes, config, batches, steps, manager.device, models_dir=manager.models_dir,
                    dtype_name=str(dtype).replace("torch.", ""), already_loaded=loaded is not None)


DPO_NOTE = ("DPO: each pair is two rows, its chosen and its rejected response, so a step computes twice the batch "
            "size in rows; the reference model's log-probabilities are computed once before step 1 (counted in the "
            "time) and kept, so no second copy of the weights is held.")

PART_NAMES = {"weights": "weights", "gradients": "gradients", "optimizer": "AdamW states",
              "optimizer_step": "its update's temporaries", "activations": "activations",
              "logits": "logits at trained positions", "runtime": "runtime"}


def refuse_beyond_memory(model: nn.Module, tokenizer: Any, dataset: Any, config: Any, device: torch.device) -> None:
    """Before anything is allocated: refuse settings whose estimate is more than the device has free
    (LoRA rank 10^6 asks for terabytes), naming the estimate. `config.ignore_memory_estimate` (the
    command line's `--ignore-memory-estimate`, the Train tab's box) starts anyway."""
    available = available_bytes(device)
    if getattr(config, "ignore_memory_estimate", False) or available is None:
        return
    shapes = shapes_of(model)
    train = dataset.splits(seed=config.split_seed, order=config.split_order).train
    parts, _ = memory(shapes, config, batch_tokens(dataset.records, train, tokenizer, config), device.type)
    parts["weights"] -= shapes.weight_bytes  # the base weights are loaded already
    needed = sum(parts.values())
    if needed > available:
        biggest = ", ".join(f"{PART_NAMES[name]} {size / GIB:,.1f}"
                            for name, size in sorted(parts.items(), key=lambda p: -p[1])[:3])
        raise PlaygroundError(
            f"Not started: these settings need about {needed / GIB:,.1f} GiB more memory ({biggest} GiB) and "
            f"{available / GIB:,.1f} GiB is free. Lower the LoRA rank, the batch size or the max length; or, if "
            "you know better than the estimate, start anyway (--ignore-memory-estimate, or the Train tab's box).")


def describe(result: Estimate) -> str:
    """A short text for the Train tab and the command line."""
    parts = ", ".join(f"{PART_NAMES[k]} {v / GIB:.2f}" for k, v in result.parts.items() if v)
    lines = [f"Memory: about {result.total / GIB:.1f} GiB ({parts} GiB); {result.trainable:,} trainable parameters."]
    if result.fits is False:
        lines.append(f"This will probably not fit: {result.available / GIB:.1f} GiB is free. Lower the batch size "
                     "or the max length, or use LoRA.")
    elif result.available is not None:
        lines.append(f"{result.available / GIB:.1f} GiB is free now.")
    if result.step_seconds is not None and result.run_seconds is not None:
        lines.append(f"Time: about {result.step_seconds:.1f} s per step, {_duration(result.run_seconds)} for "
                     f"{result.steps} steps with validation, probes not counted ({result.basis}).")
    lines += result.notes
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{rest:02d}" if hours else f"{minutes}:{rest:02d}"
