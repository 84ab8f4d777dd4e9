"""Model-level helpers: device and dtype choice, a loss that skips ignored positions, greedy probes.

The default model's vocabulary has 262,144 tokens, so its logits are larger than its weights,
gradients and optimizer state together. `CausalLMLoss` runs the decoder on every position but the
LM head only where the target is not -100 (often half the tokens or fewer, when the prompt is masked
or the batch is padded), and returns the summed loss, so gradient accumulation and several
processes can weight every trained token equally.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .batching import IGNORE_INDEX


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


def pick_dtype(device: torch.device, requested: str = "auto", model_type: str | None = None) -> torch.dtype:
    """bf16 on GPUs that support it and on the CPU for architectures measured faster; else float32."""
    names = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if requested and requested != "auto":
        return names[requested]
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and model_type in BF16_ON_CPU:
        return torch.bfloat16
    return torch.float32


def unwrap_causal_lm(model: nn.Module) -> nn.Module:
    """The transformers causal LM inside a peft wrapper (LoRA layers stay injected in it)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


class CausalLMLoss(nn.Module):
    """forward(inputs, targets) -> (summed cross-entropy over trained targets, their count)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model  # registered, so DDP and optimizers see its parameters

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        causal_lm = unwrap_causal_lm(self.model)
        # Right padding with a causal mask: real tokens never attend to the padding after them, so
        # no attention mask is needed for the positions that are trained.
        hidden = causal_lm.get_decoder()(input_ids=inputs, use_cache=False).last_hidden_state
        keep = targets != IGNORE_INDEX
        logits = causal_lm.get_output_embeddings()(hidden[keep])
        cap = getattr(causal_lm.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        loss = F.cross_entropy(logits.float(), targets[keep], reduction="sum")
        return loss, keep.sum()


def stop_ids(tokenizer: Any, style: str) -> list[int]:
    """Tokens that end an answer: end-of-text, and a chat template's end-of-turn marker."""
    ids = [tokenizer.eos_token_id]
    if style == "chat":
        for marker in ("<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|end|>"):
            token = tokenizer.convert_tokens_to_ids(marker)
            if isinstance(token, int) and token != tokenizer.unk_token_id:
                ids.append(token)
    return [i for i in ids if i is not None]


@torch.no_grad()
def greedy_answer(model: nn.Module, tokenizer: Any, prompt: str, style: str, max_new_tokens: int = 48,
                  add_special_tokens: bool = True) -> str:
    """The model's greedy continuation of `prompt`, cut at the end-of-text or end-of-turn token."""
    device = next(model.parameters()).device
    ids = tokenizer(prompt, add_special_tokens=add_special_tokens, return_tensors="pt").input_ids.to(device)
    stops = stop_ids(tokenizer, style)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    output = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                            do_sample=False, eos_token_id=stops, pad_token_id=pad)
    new = [t for t in output[0, ids.shape[1]:].tolist()]
    for position, token in enumerate(new):
        if token in stops:
            new = new[:position]
            break
    return tokenizer.decode(new, skip_special_tokens=True).strip()
