"""The LM head's cross-entropy by tiles of the vocabulary: the same losses and gradients as the logits of
the whole batch, for memory that does not grow with the vocabulary."""

import pytest
import torch
from torch.nn import functional as F

from bench.common import PeakTensorBytes
from playground import batching, data, lm_head, store
from playground.modeling import CausalLMLoss, unwrap_causal_lm
from playground.training import TrainConfig, prepare_model
from playground.weights import Weights


def whole_logits_losses(head, hidden, targets, softcap):
    logits = head(hidden)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits.float(), targets, reduction="none")


def losses_and_gradients(losses_of, head, hidden, targets, softcap, weights):
    hidden = hidden.detach().requires_grad_()
    head.zero_grad()
    losses = losses_of(head, hidden, targets, softcap)
    (losses * weights).sum().backward()
    gradients = [hidden.grad] + [p.grad for p in head.parameters()]
    return losses.detach(), gradients


@pytest.mark.parametrize("softcap", [None, 30.0])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("layout", ["tiles", "one tile"])
def test_tiles_give_the_losses_and_gradients_of_the_whole_logits(monkeypatch, softcap, bias, layout):
    if layout == "tiles":  # of 7 positions and about 300 columns: targets in every tile, at its edges too
        monkeypatch.setattr(lm_head, "TOKENS_PER_TILE", 7)
        monkeypatch.setattr(lm_head, "TILE_BYTES", 4 * 7 * 300)
        monkeypatch.setattr(lm_head, "MIN_COLUMNS", 100)
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 1000, bias=bias)
    hidden = torch.randn(20, 16) * 3
    targets = torch.tensor([0, 299, 300, 301, 999, 998, 600, 5, 899, 900] * 2)
    weights = torch.rand(20)  # each loss's incoming gradient differs
    # 7, 7 and 6 positions; 300, 300 and 350 columns; or all in one tile, its probabilities kept for backward
    assert len(list(lm_head.tiles(20, 1000))) == (4 + 4 + 3 if layout == "tiles" else 1)
    tiled, tiled_gradients = losses_and_gradients(lm_head.losses, head, hidden, targets, softcap, weights)
    whole, whole_gradients = losses_and_gradients(whole_logits_losses, head, hidden, targets, softcap, weights)
    assert torch.allclose(tiled, whole, atol=2e-6, rtol=1e-6)
    for tiled_gradient, whole_gradient in zip(tiled_gradients, whole_gradients, strict=True):
        assert torch.allclose(tiled_gradient, whole_gradient, atol=1e-6, rtol=1e-5)


def test_a_training_step_of_the_tiny_model_is_the_one_of_its_whole_logits(tiny_model_dir, tmp_path):
    config = TrainConfig(model=str(tiny_model_dir), batch_size=4, max_length=64, lora_r=8, mask="prompt",
                         lora_dropout=0.0)
    side = prepare_model(Weights(store.load_model(str(tiny_model_dir), dtype=torch.float32)), config, "run",
                         tmp_path, torch.float32, "cpu")
    model = side.weights.model
    batch = batching.training_batch(data.load("builtin").records, list(range(40)), store.load_tokenizer(
        str(tiny_model_dir)), "alpaca", 4, max_length=64, mask="prompt")
    trained = [p for p in model.parameters() if p.requires_grad]

    def step(loss_of):
        for p in trained:
            p.grad = None
        with side.weights.use(train=True, adapter=side.adapter):
            loss, count = loss_of()
            (loss / count).backward()
        return float(loss), [p.grad.clone() for p in trained]

    def whole():
        logits = unwrap_causal_lm(model)(input_ids=batch.inputs, use_cache=False).logits
        keep = batch.targets != batching.IGNORE_INDEX
        return F.cross_entropy(logits[keep].float(), batch.targets[keep], reduction="sum"), keep.sum()

    loss, gradients = step(lambda: CausalLMLoss(model)(batch.inputs, batch.targets))
    whole_loss, whole_gradients = step(whole)
    assert loss == pytest.approx(whole_loss, rel=1e-6)
    for gradient, whole_gradient in zip(gradients, whole_gradients, strict=True):
        assert torch.allclose(gradient, whole_gradient, atol=1e-6, rtol=1e-5)


def test_memory_stays_one_tile_however_large_the_vocabulary():
    """The peak of the tensors made in a forward and backward pass of the head: the whole logits of
    1,024 positions over 262,144 entries are 1 GiB in float32; the tiles stay near TILE_BYTES."""
    torch.manual_seed(0)
    head = torch.nn.Linear(64, 262_144, bias=False)
    hidden = torch.randn(1024, 64, requires_grad=True)
    targets = torch.randint(0, 262_144, (1024,))
    with PeakTensorBytes() as tracked:
        lm_head.losses(head, hidden, targets).sum().backward()
    whole_logits = 1024 * 262_144 * 4
    assert lm_head.largest_tile(1024, 262_144) * 4 <= lm_head.TILE_BYTES
    # the head's weight gradient (64 MiB here) and one tile of float32 at a time
    assert tracked.peak <= head.weight.numel() * 4 + lm_head.TILE_BYTES + 8 * 2**20, tracked.peak
    assert tracked.peak < whole_logits / 5
