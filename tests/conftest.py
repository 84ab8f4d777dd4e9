import json
import os
from pathlib import Path

import pytest
import torch

from playground import store

ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config):
    """With test processes (pytest-xdist): each, and the apps, commands and servers it starts, gets its
    share of the cores (torch's threads spin while they wait, so more threads than cores makes every
    process many times slower); and the default model is converted once before they start, rather
    than in each of them at the same time on a fresh clone."""
    try:
        workers = int(getattr(config.option, "numprocesses", 0) or 0)
    except ValueError:
        workers = 0
    if workers and not hasattr(config, "workerinput"):
        share = str(max(1, (os.cpu_count() or 2) // workers))
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(name, share)
        store.ensure_default_model()


@pytest.fixture(scope="session")
def default_tokenizer():
    """The embedded default model's tokenizer (converted once into models/, then cached)."""
    return store.load_tokenizer(store.DEFAULT)


@pytest.fixture
def write(tmp_path):
    """write(name, content) -> path; content is bytes, str, or a JSON-able object."""
    def _write(name, content):
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_text(json.dumps(content), encoding="utf-8")
        return path
    return _write


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny Llama-shaped model and a small byte-level BPE tokenizer, built from a config and saved
    as a local folder, so training tests run in seconds yet go through the real loading code."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from playground import data
    from playground.generation import Side
    from playground.training import TrainConfig, train
    from playground.weights import Weights

    folder = tmp_path_factory.mktemp("tiny-model")
    texts = [f"{r.instruction} {r.input} {r.output}" for r in data.load("builtin").records]
    texts += ["Below is an instruction that describes a task. Write a response that appropriately "
              "completes the request.\n\n### Instruction:\n### Input:\n### Response:\n"] * 20
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>")  # pads with eos, like GPT-2
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config)
    # A short "pretraining" on the bundled data, so that LoRA adapts a model that already knows
    # something, as it would a real base model; a random one barely moves under a low-rank update.
    settings = TrainConfig(method="full", max_steps=120, batch_size=8, lr=3e-3, max_length=64, warmup_steps=5,
                           probes=0, eval_every=0, probe_every=0)
    builtin = data.load("builtin")
    train(Side("pretraining", Weights(model)), tokenizer, builtin, builtin.splits(), settings, lambda event: None)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_run(tiny_model_dir, tmp_path_factory):
    """A models folder holding one finished LoRA run on the tiny model."""
    from tests_helpers import small_dataset, train_tiny_run

    models = tmp_path_factory.mktemp("store")
    train_tiny_run(tiny_model_dir, models, "tiny-run", small_dataset(), max_steps=40)
    return models


@pytest.fixture(scope="session")
def graded_run(tiny_model_dir, tmp_path_factory):
    """A models folder holding a short LoRA run on the bundled dataset, trained with seed 7 and
    split seed 7, so its test split is not the default seed's."""
    from playground import data
    from tests_helpers import train_tiny_run

    models = tmp_path_factory.mktemp("graded-store")
    train_tiny_run(tiny_model_dir, models, "seed-7", data.load("builtin"), max_steps=40, seed=7, split_seed=7)
    return models
