"""What training does differently on a GPU, run here on the CPU at tiny size (no GPU in CI).

On CUDA, training uses AdamW's fused kernel and a full fine-tune keeps the model's bf16 weights
(off the GPU it trains a float32 copy). Both choices are run on the CPU below, on the tiny model,
so that their code paths are exercised and compared with the CPU's own path.
"""

import pytest
import torch

from playground import store
from playground.generation import Side
from playground.training import TrainConfig, full_fine_tune_dtype, prepare_model, train
from playground.weights import Weights
from tests_helpers import small_dataset


def losses(model_dir, tmp_path, method, fused, dtype=torch.float32, steps=6):
    config = TrainConfig(model=str(model_dir), method=method, max_steps=steps, batch_size=4, lr=5e-3,
                         warmup_steps=1, lora_r=4, lora_alpha=8, lora_dropout=0.0, probes=0, eval_every=0,
                         fused_adamw=fused)
    model = store.load_model(str(model_dir), dtype=dtype)
    if method == "lora":
        side = prepare_model(Weights(model), config, "run", tmp_path, dtype, "cpu")
    else:  # the GPU's full fine-tune: the weights train in the dtype they were loaded in
        side = Side("tuned", Weights(model))
        model.requires_grad_(True)
    values = []
    dataset = small_dataset()
    train(side, store.load_tokenizer(str(model_dir)), dataset, dataset.splits(), config,
          lambda e: values.append(e.values["train_loss"]) if e.kind == "step" else None)
    return values


@pytest.mark.parametrize("method", ["lora", "full"])
def test_fused_adamw_takes_the_same_steps_as_the_default_one(tiny_model_dir, tmp_path, method):
    fused = losses(tiny_model_dir, tmp_path, method, fused=True)
    default = losses(tiny_model_dir, tmp_path, method, fused=False)
    assert fused == pytest.approx(default, rel=1e-4, abs=1e-4)
    assert fused[-1] < fused[0]


def test_full_fine_tune_in_bf16_weights_learns(tiny_model_dir, tmp_path):
    """The GPU's full fine-tune: bf16 weights, bf16 AdamW states, the fused kernel."""
    values = losses(tiny_model_dir, tmp_path, "full", fused=True, dtype=torch.bfloat16, steps=20)
    assert all(v == v for v in values)  # no NaN
    assert sum(values[-4:]) / 4 < 0.8 * sum(values[:4]) / 4


def test_full_fine_tune_dtype_is_bf16_only_on_a_gpu():
    assert full_fine_tune_dtype(torch.bfloat16, "cuda") == torch.bfloat16
    assert full_fine_tune_dtype(torch.bfloat16, "cpu") == torch.float32
    assert full_fine_tune_dtype(None, "cuda") == torch.float32
