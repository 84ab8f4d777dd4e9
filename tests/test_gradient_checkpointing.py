"""Gradient checkpointing (`recompute`): the same losses and gradients for less memory kept for the backward
pass, the estimate's parts for it against the bytes a real step keeps, and the shared model left as it was."""

import pytest
import torch

from playground import batching, data, estimate, runs, store
from playground.modeling import CausalLMLoss, RowLogProbs, unwrap_causal_lm
from playground.training import TrainConfig, prepare_model
from playground.weights import Weights
from tests_helpers import saved_bytes, small_dataset, train_tiny_run


def lora_side(tiny_model_dir, tmp_path, **changes):
    config = TrainConfig(model=str(tiny_model_dir), batch_size=4, max_length=64, lora_r=8, mask="prompt",
                         lora_dropout=0.0, **changes)
    side = prepare_model(Weights(store.load_model(str(tiny_model_dir), dtype=torch.float32)), config, "run",
                         tmp_path, torch.float32, "cpu")
    return config, side


def a_batch(tiny_model_dir):
    tokenizer = store.load_tokenizer(str(tiny_model_dir))
    return batching.training_batch(data.load("builtin").records, list(range(40)), tokenizer, "alpaca", 4,
                                   max_length=64, mask="prompt")


def loss_and_grads(side, module, batch):
    trained = [p for p in side.weights.model.parameters() if p.requires_grad]
    for p in trained:
        p.grad = None
    with side.weights.use(train=True, adapter=side.adapter):
        kept, (loss, count) = saved_bytes(lambda: module(batch.inputs, batch.targets), set())
        (loss / count).backward()
    return float(loss), [p.grad.clone() for p in trained], kept


@pytest.mark.parametrize("module_class", [CausalLMLoss, RowLogProbs])
def test_recomputing_gives_the_same_losses_and_gradients_and_keeps_less(tiny_model_dir, tmp_path, module_class):
    _, side = lora_side(tiny_model_dir, tmp_path)
    batch = a_batch(tiny_model_dir)
    if module_class is RowLogProbs:  # per row; summed here to compare one number and its gradients
        module = lambda recompute: (lambda inputs, targets: tuple(  # noqa: E731
            t.sum() for t in RowLogProbs(side.weights.model, recompute)(inputs, targets)))
    else:
        module = lambda recompute: CausalLMLoss(side.weights.model, recompute)  # noqa: E731
    plain_loss, plain_grads, plain_kept = loss_and_grads(side, module(False), batch)
    loss, grads, kept = loss_and_grads(side, module(True), batch)
    assert loss == pytest.approx(plain_loss, rel=1e-6)
    for grad, plain in zip(grads, plain_grads):
        assert torch.allclose(grad, plain, atol=1e-6, rtol=1e-5)
    assert kept < plain_kept / 2, (kept, plain_kept)
    causal_lm = unwrap_causal_lm(side.weights.model)  # the shared model as it was, no hook left behind
    assert not causal_lm.is_activation_checkpointing and not getattr(causal_lm, "_require_grads_hooks", None)


def test_the_estimate_with_gradient_checkpointing_follows_what_a_step_keeps(tiny_model_dir, tmp_path):
    batch = a_batch(tiny_model_dir)
    exact = estimate.Batches(computed=batch.inputs.numel(), real=batch.real_tokens, trained=batch.trained_tokens,
                             micro_batches=1)
    figures = {}
    for on in (False, True):
        config, side = lora_side(tiny_model_dir, tmp_path / str(on), gradient_checkpointing=on)
        parts, _ = estimate.memory(estimate.shapes_of(side.weights.model), config, exact)
        parameters = {p.untyped_storage().data_ptr() for p in side.weights.model.parameters()}
        with side.weights.use(train=True, adapter=side.adapter):
            kept, _ = saved_bytes(lambda: CausalLMLoss(side.weights.model, on)(batch.inputs, batch.targets),
                                  parameters)
        figures[on] = (parts["activations"] + parts["logits"], kept)
    (estimated_plain, kept_plain), (estimated, kept) = figures[False], figures[True]
    assert estimated < estimated_plain and kept < kept_plain
    # what is kept between the forward and the backward pass; the recompute's own peak (one layer,
    # one chunk of logits) is in the estimate too, so it may only be above what is kept
    assert kept <= estimated < 4 * kept + 2**20, (estimated, kept)


def test_a_run_with_gradient_checkpointing_logs_the_same_losses(tiny_model_dir, tmp_path):
    losses = {}
    for on in (False, True):
        train_tiny_run(tiny_model_dir, tmp_path, f"ckpt-{on}", small_dataset(), max_steps=4,
                       gradient_checkpointing=on)
        losses[on] = [row["train_loss"] for row in runs.read(tmp_path, f"ckpt-{on}").metrics()
                      if row["kind"] == "step"]
    assert losses[True] == pytest.approx(losses[False], abs=2e-4)  # logged rounded to 4 places
