"""A peft LoRA adapter of the tiny Llama written as a llama.cpp LoRA adapter GGUF: loaded on top of the
base model's F16 GGUF in llama.cpp, it gives the merged peft model's logits; its KV says what llama.cpp
checks; adapters llama.cpp cannot apply are refused before anything is written."""

import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from playground.errors import PlaygroundError
from playground.export import gguf_file
from playground.export.gguf_lora import write_lora_gguf
from playground.export.parity import load_llama, turn_off_weight_repacking

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
TEXT = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nName three primary colours.\n\n### Response:\n")


def base_model(folder):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def base_gguf(tiny_model_dir, tokenizer, tmp_path_factory):
    path = tmp_path_factory.mktemp("base") / "base-f16.gguf"
    gguf_file.write_gguf(base_model(tiny_model_dir), tokenizer, path, "f16", "{{ messages }}", False,
                         [tokenizer.eos_token_id], "tiny base")
    return path


@pytest.fixture(scope="module")
def tiny_gemma(tiny_model_dir, tokenizer, tmp_path_factory):
    """A random six-layer Gemma 3 (five sliding-window layers, one global, as llama.cpp assumes) with the
    tiny tokenizer, and its F16 GGUF: (model folder, GGUF path)."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    folder = tmp_path_factory.mktemp("tiny-gemma")
    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=6,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16,
                              sliding_window=64, max_position_embeddings=512, eos_token_id=tokenizer.eos_token_id,
                              bos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id)
    Gemma3ForCausalLM(config).save_pretrained(folder)
    path = folder / "base-f16.gguf"
    gguf_file.write_gguf(base_model(folder), tokenizer, path, "f16", "{{ messages }}", False,
                         [tokenizer.eos_token_id], "tiny gemma")
    return folder, path


@pytest.fixture(scope="module")
def ids(tokenizer):
    found = tokenizer(TEXT).input_ids[:20]
    assert len(found) == 20
    return found


def make_adapter(tiny_model_dir, folder, seed=0, **options):
    """A peft LoRA adapter saved in `folder`, its B matrices random: peft starts them at zero, which
    would make any export look right."""
    from peft import LoraConfig, get_peft_model

    settings = {"r": 4, "lora_alpha": 8, "target_modules": TARGETS, **options}
    model = get_peft_model(base_model(tiny_model_dir), LoraConfig(**settings))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name or "lora_embedding_A" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    model.save_pretrained(folder)
    return folder


def merged_logits(tiny_model_dir, folder, ids):
    from peft import PeftModel

    merged = PeftModel.from_pretrained(base_model(tiny_model_dir), str(folder)).merge_and_unload().eval()
    with torch.no_grad():
        return merged(torch.tensor([ids])).logits[0].numpy()


def llama_logits(path, ids, **options):
    turn_off_weight_repacking()  # llama.cpp's repacked kernels crash on some CPUs
    llm = load_llama(path, n_ctx=256, logits_all=True, **options)
    try:
        llm.eval(ids)
        return np.array(llm.scores[:len(ids)])
    finally:
        llm.close()


def assert_adapter_applied(model_folder, adapter, base_path, ids, tmp_path, what):
    """The adapter written as GGUF, on the base GGUF in llama.cpp, gives the merged peft model's logits,
    and clearly not the base's; (merged logits, llama.cpp's with the adapter)."""
    path = tmp_path / "adapter.gguf"
    write_lora_gguf(adapter, base_model(model_folder).config, path, "tiny adapter")
    expected = merged_logits(model_folder, adapter, ids)
    with_adapter = llama_logits(base_path, ids, lora_path=str(path))
    without = llama_logits(base_path, ids)
    spread = expected.max() - expected.min()
    error = np.abs(with_adapter - expected).max()
    change = np.abs(without - expected).max()
    print(f"{what}: logit spread {spread:.3f}, max |llama.cpp+adapter - merged| {error:.5f}, "
          f"max |llama.cpp base - merged| {change:.3f}")
    assert error < 0.01 * spread
    assert change > 0.2 * spread and change > 20 * error  # the adapter really was applied
    return expected, with_adapter


@pytest.mark.parametrize("options", [{}, {"use_rslora": True, "alpha_pattern": {"v_proj": 16},
                                          "rank_pattern": {"o_proj": 2}}], ids=["plain", "rslora-patterns"])
def test_adapter_gguf_gives_the_merged_model_in_llama_cpp(tiny_model_dir, base_gguf, ids, tmp_path, options):
    folder = make_adapter(tiny_model_dir, tmp_path / "adapter", **options)
    expected, with_adapter = assert_adapter_applied(tiny_model_dir, folder, base_gguf, ids, tmp_path, str(options))
    assert (with_adapter.argmax(-1) == expected.argmax(-1)).mean() >= 0.9


def test_gemma3_adapter_gguf_gives_the_merged_model_in_llama_cpp(tiny_gemma, ids, tmp_path):
    folder, base_path = tiny_gemma
    adapter = make_adapter(folder, tmp_path / "adapter")
    assert_adapter_applied(folder, adapter, base_path, ids, tmp_path, "gemma3")


def test_adapter_gguf_metadata_and_tensors(tiny_model_dir, tmp_path):
    import gguf

    folder = make_adapter(tiny_model_dir, tmp_path / "adapter")
    path = tmp_path / "adapter.gguf"
    progress = []
    write_lora_gguf(folder, base_model(tiny_model_dir).config, path, "tiny adapter",
                    on_progress=lambda f, text: progress.append(f))
    reader = gguf.GGUFReader(path)
    kv = {name: field.contents() for name, field in reader.fields.items()}
    assert kv["general.type"] == "adapter" and kv["adapter.type"] == "lora"
    assert kv["adapter.lora.alpha"] == 8.0 and kv["general.architecture"] == "llama"
    assert kv["general.name"] == "tiny adapter"
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == 2 * 7 * 2  # A and B, seven modules, two layers
    a, b = tensors["blk.0.attn_q.weight.lora_a"], tensors["blk.1.ffn_down.weight.lora_b"]
    assert list(a.shape) == [64, 4] and list(b.shape) == [4, 64]  # ggml's ne: a [in, r], b [r, out]
    assert list(tensors["blk.0.attn_k.weight.lora_b"].shape) == [4, 32]  # two KV heads of 16
    assert all(t.tensor_type == gguf.GGMLQuantizationType.F32 for t in reader.tensors)
    assert progress and progress == sorted(progress)


@pytest.mark.parametrize("options,message", [
    ({"use_dora": True}, "DoRA"),
    ({"target_modules": ["embed_tokens", "q_proj"]}, "embeddings"),
    ({"target_modules": ["lm_head", "q_proj"]}, "output layer"),
    ({"bias": "lora_only"}, "biases"),
], ids=["dora", "embeddings", "lm_head", "bias"])
def test_adapters_llama_cpp_cannot_apply_are_refused(tiny_model_dir, tmp_path, options, message):
    folder = make_adapter(tiny_model_dir, tmp_path / "adapter", **options)
    path = tmp_path / "adapter.gguf"
    with pytest.raises(PlaygroundError, match=message) as raised:
        write_lora_gguf(folder, base_model(tiny_model_dir).config, path, "refused")
    assert "llama.cpp" in str(raised.value)
    assert not path.exists()


def test_other_architectures_unknown_modules_and_stop_write_nothing(tiny_model_dir, tmp_path):
    folder = make_adapter(tiny_model_dir, tmp_path / "adapter")
    path = tmp_path / "adapter.gguf"
    with pytest.raises(PlaygroundError, match="'gpt2'"):
        write_lora_gguf(folder, SimpleNamespace(model_type="gpt2", num_hidden_layers=2), path, "x")
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "adapter_model.safetensors")
    renamed = {key.replace("layers.0.self_attn.q_proj", "layers.0.self_attn.x_proj"): value
               for key, value in weights.items()}
    save_file(renamed, tmp_path / "adapter_model.safetensors")
    (tmp_path / "adapter_config.json").write_bytes((folder / "adapter_config.json").read_bytes())
    with pytest.raises(PlaygroundError, match="x_proj, which has no llama.cpp tensor name"):
        write_lora_gguf(tmp_path, base_model(tiny_model_dir).config, path, "x")
    stop = threading.Event()
    stop.set()
    with pytest.raises(PlaygroundError, match="Export stopped: nothing was written."):
        write_lora_gguf(folder, base_model(tiny_model_dir).config, path, "x", stop=stop)
    assert not path.exists()
