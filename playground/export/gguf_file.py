"""A transformers model written as a GGUF file for llama.cpp and Ollama, with the `gguf` package.

Supported: Gemma 3 (`gemma3_text`, the default model) and Llama-family models (`llama`). Tensors get
llama.cpp's names, and the weight transforms llama.cpp expects: Gemma's RMS norms store `1 + weight`
(transformers keeps the weight alone), and Llama's query and key projections are permuted from the
halves layout of transformers' rotary embedding to llama.cpp's interleaved pairs. Types: F16, BF16
and Q8_0 are written here (norms stay F32; a Q8_0 tensor whose rows are not a multiple of 32 stays
F16). Q4_0 and the K-quants (Q4_K_M, Q5_K_M, Q6_K) are made from the F16 file by llama.cpp's own
quantize function (`llama_model_quantize`, as its `llama-quantize` tool does), which picks each
tensor's type by its mix and falls back to a type that fits where a row is not a whole number of
blocks (Gemma 3 270M's 640-wide rows are 2.5 K-quant blocks).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gguf
import numpy as np
import torch

from ..errors import PlaygroundError
from . import gguf_vocab

ARCHITECTURES = {"gemma3_text": gguf.MODEL_ARCH.GEMMA3, "llama": gguf.MODEL_ARCH.LLAMA}


@dataclass(frozen=True)
class Quant:
    """A GGUF type the file can be written in: one entry in QUANTS adds it to `--quant` and the Export tab."""
    name: str
    label: str
    file_type: gguf.LlamaFileType  # what the file says it mostly holds (llama.cpp's ftype: the same numbers)
    # for the 2-D weights when written here (norms and biases stay F32); None: llama.cpp quantizes the F16 file
    tensor_type: gguf.GGMLQuantizationType | None = None

    @property
    def by_llama_cpp(self) -> bool:
        return self.tensor_type is None


QUANTS = {quant.name: quant for quant in (
    Quant("f16", "F16", gguf.LlamaFileType.MOSTLY_F16, gguf.GGMLQuantizationType.F16),
    Quant("bf16", "BF16", gguf.LlamaFileType.MOSTLY_BF16, gguf.GGMLQuantizationType.BF16),
    Quant("q8_0", "Q8_0", gguf.LlamaFileType.MOSTLY_Q8_0, gguf.GGMLQuantizationType.Q8_0),
    Quant("q6_k", "Q6_K", gguf.LlamaFileType.MOSTLY_Q6_K),
    Quant("q5_k_m", "Q5_K_M", gguf.LlamaFileType.MOSTLY_Q5_K_M),
    Quant("q4_k_m", "Q4_K_M (what Ollama pulls by default)", gguf.LlamaFileType.MOSTLY_Q4_K_M),
    Quant("q4_0", "Q4_0", gguf.LlamaFileType.MOSTLY_Q4_0),
)}

QUANT_NOTE = ("Q4_0 and the K-quants are made by llama.cpp from the F16 file; every type's cost is measured against "
              "the app on the run's own test split (Parity).")
Progress = Callable[[float, str], None]


def check_quant(quant: str) -> str:
    quant = quant.lower()
    if quant not in QUANTS:
        raise PlaygroundError(f"Unknown GGUF type {quant!r}: choose {', '.join(QUANTS)}.")
    return quant


def architecture(config: Any) -> gguf.MODEL_ARCH:
    """llama.cpp's architecture for a model config, or an error naming the unsupported one."""
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise PlaygroundError(f"GGUF export supports Gemma 3 (gemma3_text) and Llama-family (llama) models; this "
                              f"run's model is '{model_type}'. Export it as an adapter or a Hugging Face folder "
                              "instead (llama.cpp's convert_hf_to_gguf.py may convert that folder).")
    return ARCHITECTURES[model_type]


def write_gguf(model: Any, tokenizer: Any, path: Path, quant: str, chat_template: str, adds_bos: bool,
               stops: list[int], name: str, on_progress: Progress | None = None,
               stop: threading.Event | None = None) -> None:
    """Write `model` (float weights) with its tokenizer into the GGUF file `path`; for a type llama.cpp
    makes, an F16 file beside it first, quantized into `path` and then removed."""
    chosen = QUANTS[check_quant(quant)]
    if not chosen.by_llama_cpp:
        _write_float_or_q8(model, tokenizer, path, chosen, chat_template, adds_bos, stops, name, on_progress, stop)
        return
    source = path.with_name(path.stem + ".f16.gguf")
    try:
        _write_float_or_q8(model, tokenizer, source, QUANTS["f16"], chat_template, adds_bos, stops, name,
                           lambda f, text: on_progress(0.8 * f, text) if on_progress else None, stop)
        if on_progress:
            on_progress(0.85, f"Quantizing to {chosen.name.upper()} with llama.cpp")
        quantize(source, path, chosen)
    finally:
        source.unlink(missing_ok=True)


def quantize(source: Path, path: Path, chosen: Quant) -> None:
    """`source` (an F16 GGUF file) quantized by llama.cpp into `path`, as `llama-quantize` would."""
    try:
        import llama_cpp
    except ImportError:
        from .parity import INSTALL_LLAMA

        raise PlaygroundError(f"{chosen.name.upper()} is made by llama.cpp, whose Python package (llama-cpp-python) "
                              f"is not installed: install it with `{INSTALL_LLAMA}` (a C/C++ compiler and cmake, "
                              "several minutes the first time), or export F16, BF16 or Q8_0.") from None
    from .parity import threads

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(chosen.file_type)
    params.nthread = threads() or 0  # 0: llama.cpp's own choice
    failed = llama_cpp.llama_model_quantize(str(source).encode(), str(path).encode(), params)
    if failed or not path.is_file():
        raise PlaygroundError(f"llama.cpp could not quantize the F16 file to {chosen.name.upper()} (code {failed}).")


def _write_float_or_q8(model: Any, tokenizer: Any, path: Path, chosen: Quant, chat_template: str, adds_bos: bool,
                       stops: list[int], name: str, on_progress: Progress | None,
                       stop: threading.Event | None) -> None:
    config = model.config
    arch = architecture(config)
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_name(name)
    writer.add_file_type(chosen.file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    (_gemma3_parameters if arch == gguf.MODEL_ARCH.GEMMA3 else _llama_parameters)(writer, config)
    state = model.state_dict()
    n_vocab = state["model.embed_tokens.weight"].shape[0]
    gguf_vocab.add_vocab(writer, tokenizer, n_vocab, adds_bos)
    for token in stops:
        if token != tokenizer.eos_token_id:
            writer.add_eot_token_id(int(token))
    if chat_template:
        writer.add_chat_template(chat_template)
    _add_tensors(writer, state, config, arch, chosen.tensor_type, on_progress, stop)
    if on_progress:
        on_progress(0.95, f"Writing {path.name}")
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


def _rope_theta(config: Any, kind: str | None = None) -> float:
    rope = getattr(config, "rope_parameters", None) or {}
    if kind and kind in rope:
        rope = rope[kind]
    return float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def _rope_type(config: Any, kind: str | None = None) -> str:
    rope = getattr(config, "rope_parameters", None) or {}
    if kind and kind in rope:
        rope = rope[kind]
    return rope.get("rope_type", "default")


def _common_parameters(writer: gguf.GGUFWriter, config: Any, head_dim: int) -> None:
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)


def _gemma3_parameters(writer: gguf.GGUFWriter, config: Any) -> None:
    """Gemma 3's settings; llama.cpp fixes the rest (every 6th layer global, local rope base 10,000)."""
    head_dim = config.head_dim
    pattern = ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(config.num_hidden_layers)]
    problems = []
    if list(getattr(config, "layer_types", pattern)) != pattern:
        problems.append("its layers do not alternate five sliding-window layers and one global layer")
    if getattr(config, "query_pre_attn_scalar", head_dim) != head_dim:
        problems.append("its attention scale is not 1/sqrt(head_dim)")
    if _rope_type(config, "full_attention") != "default" or _rope_type(config, "sliding_attention") != "default" \
            or _rope_theta(config, "sliding_attention") != 10000.0:
        problems.append("its rotary embedding is scaled")
    if problems:
        raise PlaygroundError("This Gemma 3 model differs from what llama.cpp assumes for the architecture ("
                              + "; ".join(problems) + "): it cannot be written as GGUF here.")
    _common_parameters(writer, config, head_dim)
    writer.add_rope_freq_base(_rope_theta(config, "full_attention"))
    writer.add_sliding_window(config.sliding_window)
    if getattr(config, "final_logit_softcapping", None):
        writer.add_final_logit_softcapping(config.final_logit_softcapping)


def _llama_parameters(writer: gguf.GGUFWriter, config: Any) -> None:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    if _rope_type(config) != "default":
        raise PlaygroundError(f"This Llama model's rotary embedding is scaled ('{_rope_type(config)}'): only "
                              "unscaled rotary embeddings are written as GGUF here.")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise PlaygroundError("This Llama model has biases in its attention or MLP: not written as GGUF here.")
    _common_parameters(writer, config, head_dim)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(config.vocab_size)


def _add_tensors(writer: gguf.GGUFWriter, state: dict[str, torch.Tensor], config: Any, arch: gguf.MODEL_ARCH,
                 qtype: gguf.GGMLQuantizationType, on_progress: Progress | None,
                 stop: threading.Event | None) -> None:
    names = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    items = [(key, value) for key, value in state.items() if not (tied and key == "lm_head.weight")]
    for number, (key, value) in enumerate(items):
        if stop is not None and stop.is_set():
            raise PlaygroundError("Export stopped: nothing was written.")
        target = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise PlaygroundError(f"The tensor {key} has no GGUF name for {gguf.MODEL_ARCH_NAMES[arch]}: "
                                  "the model differs from the architecture llama.cpp knows.")
        data = _transform(key, value.detach().float(), config, arch).numpy()
        _add_one(writer, target, data, qtype)
        if on_progress and (number + 1) * 20 // len(items) != number * 20 // len(items):
            on_progress(0.9 * (number + 1) / len(items), f"Converting tensors: {number + 1} of {len(items)}")


def _transform(key: str, tensor: torch.Tensor, config: Any, arch: gguf.MODEL_ARCH) -> torch.Tensor:
    if arch == gguf.MODEL_ARCH.GEMMA3 and key.endswith("norm.weight"):
        return tensor + 1.0
    if arch == gguf.MODEL_ARCH.LLAMA and key.endswith("self_attn.q_proj.weight"):
        return interleave_rotary(tensor, config.num_attention_heads)
    if arch == gguf.MODEL_ARCH.LLAMA and key.endswith("self_attn.k_proj.weight"):
        return interleave_rotary(tensor, config.num_key_value_heads)
    return tensor


def interleave_rotary(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """Rows of each head reordered from [first halves..., second halves...] to [(first, second) pairs...]:
    transformers rotates dimension i with i + d/2, llama.cpp rotates 2i with 2i + 1."""
    rows = weight.shape[0]
    per_head = rows // heads
    return (weight.reshape(heads, 2, per_head // 2, *weight.shape[1:])
            .transpose(1, 2).reshape(weight.shape).contiguous())


def _add_one(writer: gguf.GGUFWriter, name: str, data: np.ndarray, qtype: gguf.GGMLQuantizationType) -> None:
    if data.ndim <= 1:
        writer.add_tensor(name, data.astype(np.float32))
        return
    if qtype == gguf.GGMLQuantizationType.Q8_0 and data.shape[-1] % gguf.GGML_QUANT_SIZES[qtype][0]:
        qtype = gguf.GGMLQuantizationType.F16
    if qtype == gguf.GGMLQuantizationType.F16:
        writer.add_tensor(name, data.astype(np.float16))
    else:
        writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
