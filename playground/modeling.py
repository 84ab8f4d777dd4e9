"""Model-level helpers: device and dtype choice, and losses that skip ignored positions.

The default model's vocabulary has 262,144 tokens, so its logits are larger than its weights,
gradients and optimizer state together. `CausalLMLoss` runs the decoder on every position but the
LM head only where the target is not -100 (often half the tokens or fewer, when the prompt is masked
or the batch is padded), one tile of the vocabulary at a time (`lm_head`), and returns the summed
loss, so gradient accumulation and several processes can weight every trained token equally.

With `recompute` (the setting "gradient checkpointing"), each decoder layer keeps only its input for
the backward pass and runs again there: memory no longer grows with the layers' activations, for
about one more forward pass of compute.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from typing import Iterator

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from . import lm_head
from .batching import IGNORE_INDEX

# Attention kernels for training's forward passes. cuDNN's (which PyTorch prefers on recent GPUs) builds a
# plan for every new batch shape, tens of milliseconds each: with batches of varying widths, a short run
# on a GPU spent most of its first pass over the data planning (bench/dpo_throughput.py). These need none.
TRAINING_ATTENTION = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]

def pick_device(requested: str = "auto") -> torch.device:
    """CUDA, then Apple MPS, then the CPU; or what the user asked for."""
    if requested and requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# Architectures whose linear layers run faster in bf16 than in float32 on the CPU, measured on an
# AVX2 machine (Gemma 3 270M: a LoRA step 1.75x faster, same loss to 3 digits). GPT-2's Conv1D
# layers are about 10x slower in bf16 there, so everything else stays in float32 on the CPU.
BF16_ON_CPU = {"gemma", "gemma2", "gemma3", "gemma3_text", "llama", "mistral", "qwen2", "qwen3", "phi3"}


@functools.lru_cache(maxsize=1)
def cpu_bf16_is_fast() -> bool:
    """Whether this CPU multiplies in bf16 about as fast as in float32, measured once (under a second).
    With AVX512-BF16 or AMX it is faster (training measured 1.75x faster); without them torch
    emulates it, and an AMD EPYC without AVX512-BF16 took 130x longer than in float32."""
    seconds = {torch.float32: math.inf, torch.bfloat16: math.inf}
    pairs = {dtype: (torch.ones(256, 256, dtype=dtype), torch.ones(256, 256, dtype=dtype)) for dtype in seconds}
    for dtype, (a, b) in pairs.items():
        a @ b  # warm-up
    for _ in range(5):  # the fastest of five, in turns: another process taking the CPU a moment changes no answer
        for dtype, (a, b) in pairs.items():
            start = time.perf_counter()
            a @ b
            seconds[dtype] = min(seconds[dtype], time.perf_counter() - start)
    return seconds[torch.bfloat16] <= 2 * seconds[torch.float32]


def pick_dtype(device: torch.device, requested: str = "auto", model_type: str | None = None) -> torch.dtype:
    """bf16 on GPUs that support it, and on a CPU that does bf16 fast for architectures measured
    faster there; else float32."""
    names = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if requested and requested != "auto":
        return names[requested]
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and model_type in BF16_ON_CPU and cpu_bf16_is_fast():
        return torch.bfloat16
    return torch.float32


def unwrap_causal_lm(model: nn.Module) -> nn.Module:
    """The transformers causal LM inside a peft wrapper (LoRA layers stay injected in it)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def trained_losses(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                   positions: torch.Tensor | None = None, recompute: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy of each trained target, in row-major order; the mask of trained targets):
    the decoder runs on every position, the LM head only where the target is not -100. `positions`:
    the position ids of packed rows (restarting at each sample, which keeps its attention to itself).
    `recompute`: gradient checkpointing of the decoder layers (see the module docstring)."""
    causal_lm = unwrap_causal_lm(model)
    # Right padding with a causal mask: real tokens never attend to the padding after them, so
    # no attention mask is needed for the positions that are trained. Without an attention mask,
    # transformers reads position ids that restart as packed sequences and masks across them.
    with sdpa_kernel(TRAINING_ATTENTION), recomputing(causal_lm, recompute):
        hidden = causal_lm.get_decoder()(input_ids=inputs, position_ids=positions, use_cache=False).last_hidden_state
    keep = targets != IGNORE_INDEX
    softcap = getattr(causal_lm.config, "final_logit_softcapping", None)
    return lm_head.losses(causal_lm.get_output_embeddings(), hidden[keep], targets[keep], softcap), keep


@contextlib.contextmanager
def recomputing(causal_lm: nn.Module, on: bool) -> Iterator[None]:
    """Gradient checkpointing of the decoder layers for the forward passes inside (training mode only:
    the shared weights answer in the Chat tab meanwhile, in eval mode, untouched)."""
    if not (on and causal_lm.training and torch.is_grad_enabled()):
        yield
        return
    causal_lm.activation_checkpointing_enable()
    try:
        yield
    finally:
        causal_lm.activation_checkpointing_disable()
        causal_lm.disable_input_require_grads()  # the hook enable adds, which disable leaves under peft


class CausalLMLoss(nn.Module):
    """forward(inputs, targets) -> (summed cross-entropy over trained targets, their count)."""

    def __init__(self, model: nn.Module, recompute: bool = False):
        super().__init__()
        self.model = model  # registered, so DDP and optimizers see its parameters
        self.recompute = recompute

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor,
                positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        losses, keep = trained_losses(self.model, inputs, targets, positions, self.recompute)
        return losses.sum(), keep.sum()


class RowLogProbs(nn.Module):
    """forward(inputs, targets) -> (per row: the summed log-probability of its trained targets, their
    count): what DPO compares between a chosen and a rejected response."""

    def __init__(self, model: nn.Module, recompute: bool = False):
        super().__init__()
        self.model = model
        self.recompute = recompute

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        losses, keep = trained_losses(self.model, inputs, targets, recompute=self.recompute)
        rows = keep.nonzero()[:, 0]  # the row of each trained target, in the order of `losses`
        sums = torch.zeros(len(keep), dtype=losses.dtype, device=losses.device).index_add(0, rows, -losses)
        return sums, keep.sum(dim=1)
