"""The LM head's cross-entropy without the logits of the whole batch.

The default model's vocabulary has 262,144 entries: the logits of a few hundred trained positions,
with their float32 copy, the log-softmax kept for the backward pass and its gradient, are larger than
the model. `losses` projects the hidden states through the head one tile of vocabulary columns at a
time, folds each tile into a running log-sum-exp, and keeps only that and the hidden states; the
backward pass projects each tile again and turns it into its share of the gradients. Memory is one
tile (TILE_BYTES) whatever the batch, for one more pass of the head's matmul in the backward pass.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

TILE_BYTES = 64 * 2**20  # float32 logits per tile
TOKENS_PER_TILE = 2048  # positions per tile: the head's weights are read once per this many positions
MIN_COLUMNS = 1024


def losses(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, softcap: float | None = None) -> torch.Tensor:
    """Float32 cross-entropy of each target given the hidden state at its position (`hidden`: [N, H],
    `targets`: [N]), through `head` and the model's final logit soft-capping (`softcap`, if any).
    A head that is not a plain linear layer (one with a LoRA adapter on it) runs whole."""
    if type(head) is not nn.Linear:
        return F.cross_entropy(soft_capped(head(hidden).float(), softcap), targets, reduction="none")
    return TiledCrossEntropy.apply(hidden, head.weight, head.bias, targets, softcap)


def soft_capped(logits: torch.Tensor, softcap: float | None) -> torch.Tensor:
    """The model's final logit soft-capping, `softcap * tanh(logits / softcap)`, where it has one."""
    return torch.tanh(logits / softcap) * softcap if softcap else logits


def tiles(positions: int, vocab: int):
    """(first position, last position + 1, first column, last column + 1) of each tile."""
    for first in range(0, positions, TOKENS_PER_TILE):
        last = min(first + TOKENS_PER_TILE, positions)
        columns = min(vocab, max(MIN_COLUMNS, TILE_BYTES // (4 * (last - first))))
        for start in range(0, vocab, columns):
            yield first, last, start, min(start + columns, vocab)


def largest_tile(positions: int, vocab: int) -> int:
    """Elements of the largest tile `positions` trained positions make (0 without any)."""
    return max(((last - first) * (end - start) for first, last, start, end in tiles(positions, vocab)), default=0)


def project(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, softcap: float | None,
            start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(the tile's float32 logits before soft-capping, after it)."""
    raw = (hidden @ weight[start:end].t()).float()
    if bias is not None:
        raw += bias[start:end].float()
    return raw, soft_capped(raw, softcap)


def target_columns(targets: torch.Tensor, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(each target's column in the tile, clamped into it; whether the target is in the tile)."""
    local = targets - start
    inside = (local >= 0) & (local < end - start)
    return local.clamp(0, end - start - 1).unsqueeze(1), inside


class TiledCrossEntropy(torch.autograd.Function):
    """When all the positions fit in one tile (and there is no soft-capping), the forward pass keeps that
    tile's probabilities for the backward pass instead of projecting it again: the same bound on memory,
    and no second pass over the head's weights for the short responses of a small batch."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, softcap):
        count = hidden.shape[0]
        running_max = hidden.new_full((count,), float("-inf"), dtype=torch.float32)
        sum_exp = hidden.new_zeros(count, dtype=torch.float32)
        target_logit = hidden.new_zeros(count, dtype=torch.float32)
        layout = list(tiles(count, weight.shape[0]))
        ctx.probabilities = None
        for first, last, start, end in layout:
            logits = project(hidden[first:last], weight, bias, softcap, start, end)[1]
            column, inside = target_columns(targets[first:last], start, end)
            picked = logits.gather(1, column).squeeze(1)
            target_logit[first:last] = torch.where(inside, picked, target_logit[first:last])
            new_max = torch.maximum(running_max[first:last], logits.amax(dim=1))
            sum_exp[first:last] = (sum_exp[first:last] * torch.exp(running_max[first:last] - new_max)
                                   + logits.sub_(new_max.unsqueeze(1)).exp_().sum(dim=1))
            running_max[first:last] = new_max
            if len(layout) == 1 and not softcap and any(ctx.needs_input_grad[:3]):
                ctx.probabilities = logits.div_(sum_exp.unsqueeze(1))
            del logits  # before the next tile is made
        log_z = running_max + torch.log(sum_exp)
        ctx.save_for_backward(hidden, weight, bias, targets, log_z)
        ctx.softcap = softcap
        return log_z - target_logit

    @staticmethod
    def backward(ctx, grad_losses):
        hidden, weight, bias, targets, log_z = ctx.saved_tensors
        softcap = ctx.softcap
        want_hidden, want_weight, want_bias = ctx.needs_input_grad[:3]
        grad_hidden = torch.zeros_like(hidden, dtype=torch.float32) if want_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if want_weight else None
        grad_bias = torch.zeros_like(bias, dtype=torch.float32) if want_bias else None
        grad_losses = grad_losses.float()
        for first, last, start, end in tiles(hidden.shape[0], weight.shape[0]):
            part = hidden[first:last]
            if ctx.probabilities is not None:
                raw, grad = None, ctx.probabilities.clone()
            else:
                raw, grad = project(part, weight, bias, softcap, start, end)
                grad.sub_(log_z[first:last].unsqueeze(1)).exp_()
            # d loss / d logit = softmax - one-hot of the target, times the loss's incoming gradient
            column, inside = target_columns(targets[first:last], start, end)
            grad.scatter_add_(1, column, -inside.float().unsqueeze(1))
            grad.mul_(grad_losses[first:last].unsqueeze(1))
            if softcap:  # d softcap(x) / dx = 1 - tanh(x / cap)^2
                grad.mul_(1 - torch.tanh(raw / softcap).square())
            del raw
            grad = grad.to(hidden.dtype)
            if grad_hidden is not None:
                grad_hidden[first:last] += (grad @ weight[start:end]).float()
            if grad_weight is not None:
                grad_weight[start:end] += (grad.t() @ part).float()
            if grad_bias is not None:
                grad_bias[start:end] += grad.float().sum(dim=0)
            del grad
        ctx.probabilities = None
        cast = lambda grad, like: None if grad is None else grad.to(like.dtype)  # noqa: E731
        return cast(grad_hidden, hidden), cast(grad_weight, weight), cast(grad_bias, bias), None, None
