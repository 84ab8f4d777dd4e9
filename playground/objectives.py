"""What a run minimises, plugged into the one training loop (`training.py`).

An objective says how a split's records become samples, how long a sample is (batches grouped by
length), the module whose forward pass the loop runs (wrapped by accelerate for several GPUs), the
loss of a batch with the figures logged beside it, and the validation figures. `Supervised` is the
next-token loss on the responses; DPO's is `dpo.Preference`. An objective may keep state that a
checkpoint must hold (DPO's reference log-probabilities) and may need a pass before the first step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch

from . import batching
from .modeling import CausalLMLoss
from .settings import TrainConfig


@dataclass
class BatchLoss:
    """One batch's loss (what is back-propagated), the figures logged with it, trained targets and
    real input tokens (for the throughput)."""
    loss: torch.Tensor
    tokens: int
    inputs: int
    values: dict[str, float] = field(default_factory=dict)


class Objective:
    """The supervised objective's interface; see the module docstring."""
    name = ""

    def __init__(self, config: TrainConfig, tokenizer: Any):
        self.config = config
        self.tokenizer = tokenizer
        self.pad_id = batching.special_ids(tokenizer)[1]

    def encode(self, records: Sequence[Any], indices: Sequence[int]) -> list[Any]:
        raise NotImplementedError

    def length(self, sample: Any) -> int:
        raise NotImplementedError

    def module(self, model: torch.nn.Module) -> torch.nn.Module:
        raise NotImplementedError

    def batch_loss(self, module: torch.nn.Module, samples: Sequence[Any], device: Any) -> BatchLoss:
        raise NotImplementedError

    def evaluate(self, module: torch.nn.Module, batches: Sequence[Sequence[Any]], device: Any) -> dict[str, Any]:
        """The validation figures over `batches` (under no_grad, eval mode); "val_loss" first."""
        raise NotImplementedError

    def prepare(self, loop: Any) -> Iterator[None]:
        """Anything the objective needs before the first step of a new run, yielding between its parts
        so that the loop can stop there."""
        return iter(())

    def nothing_trained(self, samples: Sequence[Any]) -> str | None:
        """Why these training samples would train no target at all, or None: a run that would only
        show a loss of 0.0 is refused before it starts."""
        return None

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the objective, so that a resumed run goes on as it would have."""
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        pass


class Supervised(Objective):
    """The next-token cross-entropy on trained targets (`config.mask` decides which)."""
    name = "sft"

    def encode(self, records: Sequence[Any], indices: Sequence[int]) -> list[batching.Sample | batching.PackedRow]:
        """The samples of `indices`; with `config.pack`, packed into rows of the max length."""
        samples = batching.encode_all(records, self.config.style, self.tokenizer, self.config.template, indices)
        return batching.pack(samples, self.config.max_length) if self.config.pack else samples

    def length(self, sample: batching.Sample | batching.PackedRow) -> int:
        return sample.input_len + 1

    def module(self, model: torch.nn.Module) -> torch.nn.Module:
        return CausalLMLoss(model, self.config.gradient_checkpointing)

    def collate(self, samples: Sequence[batching.Sample]) -> batching.Batch:
        return batching.collate(samples, self.pad_id, self.config.max_length, self.config.mask)

    def batch_loss(self, module: torch.nn.Module, samples: Sequence[batching.Sample], device: Any) -> BatchLoss:
        batch = self.collate(samples)
        loss_sum, count = module(batch.inputs.to(device), batch.targets.to(device), _on(batch.positions, device))
        return BatchLoss(loss_sum / count.clamp(min=1), int(count), batch.real_tokens)

    def nothing_trained(self, samples: Sequence[batching.Sample]) -> str | None:
        for start in range(0, len(samples), 256):  # collated in slices: bounded memory
            _, targets = batching.collate_arrays(samples[start:start + 256], self.pad_id, self.config.max_length,
                                                 self.config.mask)
            if (targets != batching.IGNORE_INDEX).any():
                return None
        return (f"with max length {self.config.max_length} and masking {self.config.mask!r}, none of the "
                f"{len(samples)} training records keeps a trained target (each response is cut away or "
                "masked), so the loss would read 0.0 and nothing would change: raise the max length or mask less")

    def evaluate(self, module: torch.nn.Module, batches: Sequence[Sequence[batching.Sample]],
                 device: Any) -> dict[str, Any]:
        """The validation loss per trained target."""
        loss_sum, count = 0.0, 0
        for samples in batches:
            batch = self.collate(samples)
            loss, n = module(batch.inputs.to(device), batch.targets.to(device), _on(batch.positions, device))
            loss_sum, count = loss_sum + float(loss), count + int(n)
        return {"val_loss": loss_sum / count if count else None}


def _on(tensor: torch.Tensor | None, device: Any) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(device)
