"""A run's peft LoRA adapter written as a llama.cpp LoRA adapter GGUF file.

The file goes on top of the base model's GGUF (written by `gguf_file.write_gguf`):
`llama-server -m base.gguf --lora adapter.gguf`, Ollama's `ADAPTER ./adapter.gguf`, or
`llama_cpp.Llama(model_path=base, lora_path=adapter)`. It holds no vocabulary and no base weights.

The format, as llama.cpp's `convert_lora_to_gguf.py` writes it and `src/llama-adapter.cpp` loads it:

- KV: `general.architecture` = the base model's (llama.cpp refuses a mismatch), `general.type` =
  "adapter", `adapter.type` = "lora", `adapter.lora.alpha` = lora_alpha as float32.
- Tensors: for every adapted base weight `W` named `blk.N.attn_q.weight` in the base file, the pair
  `blk.N.attn_q.weight.lora_a` and `blk.N.attn_q.weight.lora_b`, here in F32. Their numpy shapes are
  peft's own: lora_a [rank, in], lora_b [out, rank] (ggml's ne order reversed: a.ne = [in, rank],
  b.ne = [rank, out]; the loader checks W.ne[0] == a.ne[0], W.ne[1] == b.ne[1], a.ne[1] == b.ne[0]).
- llama.cpp computes `W x + scale * B (A x)` with scale = alpha / rank (rank read from lora_b), or 1
  when alpha is 0. peft's scale is lora_alpha / r, or lora_alpha / sqrt(r) with rslora, and
  `alpha_pattern` / `rank_pattern` can give each module its own. Wherever peft's scale differs from
  what llama.cpp will compute from the file's one alpha, the ratio is folded into that lora_b, so
  rslora and per-module patterns export exactly; the file's alpha stays the config's lora_alpha.

The base file's weight transforms apply to the adapter where they touch an adapted matrix: Llama's
q_proj and k_proj rows are permuted to llama.cpp's interleaved rotary layout, so their lora_b rows
(the output dimension) get the same permutation. Gemma's `1 + weight` norms are not adapted by LoRA.

Refused, before anything is written: architectures `gguf_file` does not write, LoRA on the embeddings
or lm_head, DoRA and other variants that change the forward pass beyond `W + scale * B A`, modules
whose weights would not be plain LoRA A/B matrices, and modules llama.cpp's tensor map does not know.
"""

from __future__ import annotations

import json
import math
import re
import threading
from pathlib import Path
from typing import Any, Callable

import gguf
import numpy as np
import torch

from ..errors import PlaygroundError
from .gguf_file import architecture, interleave_rotary

Progress = Callable[[float, str], None]
PREFIX = "base_model.model."
# peft settings that make the adapted layer something other than W + scale * B A, or that change the
# base model itself: llama.cpp's adapter format has no place for them.
UNSUPPORTED = {
    "use_dora": "DoRA (use_dora) rescales every adapted weight by a learned magnitude",
    "use_qalora": "QA-LoRA (use_qalora) pools the inputs of the adapted layers",
    "lora_bias": "lora_bias adds a trained bias to lora_B",
    "layer_replication": "layer_replication repeats base layers",
    "modules_to_save": "modules_to_save trains full copies of some modules",
    "trainable_token_indices": "trainable_token_indices trains some rows of the embeddings",
    "alora_invocation_tokens": "activated LoRA (alora_invocation_tokens) switches on partway through a prompt",
    "target_parameters": "target_parameters adapts raw parameters rather than linear layers",
    "use_bdlora": "block-diagonal LoRA (use_bdlora) stores its matrices in blocks",
    "arrow_config": "Arrow routing mixes several adapters per token",
}
# Initialisations that subtract the first B A from the base weights: the adapter only fits that changed base.
CHANGED_BASE = ("pissa", "olora", "corda", "loftq")


def write_lora_gguf(adapter_folder: Path, base_config: Any, path: Path, name: str,
                    on_progress: Callable[[float, str], None] | None = None,
                    stop: threading.Event | None = None) -> None:
    """Write the peft LoRA adapter in `adapter_folder`, trained on a model with `base_config`, as the
    llama.cpp LoRA adapter GGUF file `path`."""
    arch = architecture(base_config)
    settings = read_settings(adapter_folder)
    pairs = lora_pairs(read_weights(adapter_folder))
    names = gguf.get_tensor_name_map(arch, base_config.num_hidden_layers)
    alpha = float(settings.get("lora_alpha", 8))
    tensors: list[tuple[str, np.ndarray]] = []
    for number, (module, (lora_a, lora_b)) in enumerate(sorted(pairs.items())):
        _check_stop(stop)
        target = _gguf_name(names, module, arch)
        lora_b = _permute_rows(module, lora_b, base_config, arch) * _fold(settings, module, lora_a.shape[0], alpha)
        tensors += [(f"{target}.lora_a", lora_a.numpy()), (f"{target}.lora_b", lora_b.numpy())]
        if on_progress:
            on_progress(0.9 * (number + 1) / len(pairs), f"Converting LoRA pairs: {number + 1} of {len(pairs)}")
    _check_stop(stop)
    if on_progress:
        on_progress(0.95, f"Writing {path.name}")
    _write(path, arch, name, alpha, tensors)


def _check_stop(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise PlaygroundError("Export stopped: nothing was written.")


def read_settings(folder: Path) -> dict[str, Any]:
    """adapter_config.json, refused when llama.cpp could not apply the adapter it describes."""
    file = Path(folder) / "adapter_config.json"
    if not file.is_file():
        raise PlaygroundError(f"{folder} holds no adapter_config.json: it is not a peft adapter folder.")
    settings = json.loads(file.read_text(encoding="utf-8"))
    if settings.get("peft_type", "LORA") != "LORA":
        raise PlaygroundError(f"The adapter is {settings['peft_type']}, not LoRA: llama.cpp's adapter GGUF "
                              "holds LoRA adapters only.")
    for key, what in UNSUPPORTED.items():
        if settings.get(key):
            raise PlaygroundError(f"This adapter cannot be written as a llama.cpp LoRA GGUF: {what}, which "
                                  "llama.cpp's adapters cannot do. Export a merged model (GGUF) instead.")
    init = str(settings.get("init_lora_weights", "")).lower()
    if any(init.startswith(kind) for kind in CHANGED_BASE):
        raise PlaygroundError(f"This adapter was initialised with {init}, which changes the base weights: it "
                              "fits only that changed base, not the base GGUF. Export a merged model instead.")
    if settings.get("bias", "none") != "none":
        raise PlaygroundError(f"This adapter trains biases (bias={settings['bias']!r}): llama.cpp's LoRA "
                              "adapters hold A and B matrices only. Export a merged model instead.")
    return settings


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    file = Path(folder) / "adapter_model.safetensors"
    if not file.is_file():
        raise PlaygroundError(f"{folder} holds no adapter_model.safetensors: save the adapter with "
                              "safetensors (peft's default).")
    return load_file(str(file), device="cpu")


def lora_pairs(weights: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{module name (as in the base model): (lora_A [r, in], lora_B [out, r])} in float32."""
    found: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in weights.items():
        module = key[len(PREFIX):] if key.startswith(PREFIX) else key
        if "lora_embedding_" in module or {"embed_tokens", "lm_head"} & set(module.split(".")):
            raise PlaygroundError(f"The adapter has LoRA on the embeddings or the output layer ({key}): "
                                  "llama.cpp cannot apply it on top of the base GGUF. Train without "
                                  "embed_tokens and lm_head in target_modules, or export a merged model.")
        match = re.fullmatch(r"(.+)\.lora_([AB])\.weight", module)
        if match is None:
            raise PlaygroundError(f"The adapter holds {key}, which is not a LoRA A or B matrix: llama.cpp's "
                                  "LoRA adapters hold nothing else. Export a merged model instead.")
        found.setdefault(match[1], {})[match[2]] = value.detach().float()
    pairs = {}
    for module, parts in found.items():
        if set(parts) != {"A", "B"} or parts["A"].ndim != 2 or parts["B"].ndim != 2 \
                or parts["A"].shape[0] != parts["B"].shape[1]:
            raise PlaygroundError(f"The adapter's {module} is not a LoRA pair of matrices A [r, in] and "
                                  "B [out, r]: the adapter is damaged or not a plain LoRA.")
        pairs[module] = (parts["A"], parts["B"])
    if not pairs:
        raise PlaygroundError("The adapter holds no LoRA matrices: nothing to write.")
    return pairs


def _gguf_name(names: gguf.TensorNameMap, module: str, arch: gguf.MODEL_ARCH) -> str:
    target = names.get_name(f"{module}.weight", try_suffixes=(".weight",))
    if target is None:
        raise PlaygroundError(f"The adapter adapts {module}, which has no llama.cpp tensor name for "
                              f"{gguf.MODEL_ARCH_NAMES[arch]}: llama.cpp could not apply it.")
    return target


def _permute_rows(module: str, lora_b: torch.Tensor, config: Any, arch: gguf.MODEL_ARCH) -> torch.Tensor:
    """lora_B's rows are W's output rows: they move as the base file moved W's (see gguf_file._transform)."""
    if arch == gguf.MODEL_ARCH.LLAMA and module.endswith("self_attn.q_proj"):
        return interleave_rotary(lora_b, config.num_attention_heads)
    if arch == gguf.MODEL_ARCH.LLAMA and module.endswith("self_attn.k_proj"):
        return interleave_rotary(lora_b, config.num_key_value_heads)
    return lora_b


def _pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    """A per-module setting of peft's rank_pattern / alpha_pattern: a key matches the module's full
    name or its trailing dotted part, as a regular expression."""
    for pattern, value in (patterns or {}).items():
        if re.fullmatch(rf"(.*\.)?(?:{pattern})", module):
            return value
    return default


def _fold(settings: dict[str, Any], module: str, rank: int, alpha: float) -> float:
    """The factor for lora_B that turns llama.cpp's scale (alpha / rank, or 1 when alpha is 0) into
    the scale peft applies to this module; 1.0 for a plain LoRA."""
    module_alpha = float(_pattern_value(settings.get("alpha_pattern"), module, alpha))
    peft_scale = module_alpha / (math.sqrt(rank) if settings.get("use_rslora") else rank)
    llama_scale = alpha / rank if alpha else 1.0
    return peft_scale / llama_scale


def _write(path: Path, arch: gguf.MODEL_ARCH, name: str, alpha: float,
           tensors: list[tuple[str, np.ndarray]]) -> None:
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[arch])
    try:
        writer.add_name(name)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        writer.add_file_type(gguf.LlamaFileType.ALL_F32)
        for tensor_name, data in tensors:
            writer.add_tensor(tensor_name, np.ascontiguousarray(data, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
