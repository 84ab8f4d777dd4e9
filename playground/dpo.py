"""Direct preference optimization (the book's chapter 7 bonus, `dpo-from-scratch.ipynb`) as an
objective of the one training loop (`objectives.Objective`).

- A pair's chosen and rejected responses are two samples of the same prompt (`encode_pairs`),
  collated in one batch, the chosen rows first, then the rejected ones (`collate_pairs`), masked as
  the run's `mask` says (the book masks the prompt).
- A response's log-probability is the mean over its trained targets, the book's `compute_logprobs`
  with its selection mask; the LM head runs on those positions only (`modeling.RowLogProbs`).
- The loss is the book's `compute_dpo_loss`: -log sigmoid(beta * ((policy chosen - policy rejected)
  - (reference chosen - reference rejected))), averaged over the pairs. The rewards are each side's
  log-ratio, policy - reference (the book's, without beta); the margin is chosen - rejected, the
  accuracy the share of pairs whose chosen reward is the larger.
- The reference is the model the run starts from, frozen: the supervised run in `from_run` (its
  adapter, or its full weights), or the base model. The policy starts equal to it, so the
  reference's log-probabilities are computed with the run's own weights before its first step, for
  every pair its steps and validations will use, batch for batch as they will be collated, and a
  checkpoint keeps them. No second model or adapter is ever held in memory, for LoRA or a full
  fine-tune alike.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import batching, run_files, runs
from .errors import PlaygroundError
from .modeling import RowLogProbs
from .objectives import BatchLoss, Objective, Supervised
from .settings import TrainConfig

NOT_PAIRS = ("DPO trains on preference pairs, and this dataset has no 'chosen' and 'rejected' responses. Load a "
             "preference file (the book's instruction-data-with-preference.json, or prompt/chosen/rejected "
             "records), or make one from a run's votes or pairwise verdicts with `data pairs`.")


@dataclass(frozen=True)
class PairSample:
    chosen: batching.Sample
    rejected: batching.Sample
    index: int  # the record it came from

    @property
    def length(self) -> int:
        return max(len(self.chosen.ids), len(self.rejected.ids))


def encode_pairs(records: Sequence[Any], style: str, tokenizer: Any, template: str | None = None,
                 indices: Sequence[int] | None = None) -> list[PairSample]:
    """Both responses of each record of `indices` (default: all) as samples of the record's prompt."""
    indices = list(range(len(records)) if indices is None else indices)
    if any(not records[i].is_pair for i in indices):
        raise PlaygroundError(NOT_PAIRS)
    pairs = []
    for start in range(0, len(indices), batching.CHUNK):
        part = indices[start:start + batching.CHUNK]
        chosen, rejected = (batching.encode_many([replace(records[i], output=getattr(records[i], side)) for i in part],
                                                 style, tokenizer, template) for side in ("chosen", "rejected"))
        pairs += [PairSample(replace(c, index=i), replace(r, index=i), i) for c, r, i in zip(chosen, rejected, part)]
    return pairs


def collate_pairs(pairs: Sequence[PairSample], pad_id: int, max_length: int | None = None,
                  mask: str = "prompt") -> batching.Batch:
    """A batch of pairs as DPO trains on it: rows 0..n-1 the chosen responses, rows n..2n-1 the rejected
    ones in the same order, all padded to one width, with `batching.collate`'s targets (-100 where
    nothing is scored)."""
    return batching.collate([p.chosen for p in pairs] + [p.rejected for p in pairs], pad_id, max_length, mask)


# ---------------------------------------------------------------- one batch of pairs, shown


def pair_lengths(records: Sequence[Any], style: str, tokenizer: Any, template: str | None = None,
                 indices: Sequence[int] | None = None) -> np.ndarray:
    """`PairSample.length` of each pair of `indices` (default: all), the numbers only: the longer side."""
    indices = list(range(len(records)) if indices is None else indices)
    if any(not records[i].is_pair for i in indices):
        raise PlaygroundError(NOT_PAIRS)
    sides = [batching.sample_lengths([replace(records[i], output=getattr(records[i], side)) for i in indices],
                                     style, tokenizer, template) for side in ("chosen", "rejected")]
    return np.maximum(*sides)


def dataset_pair_lengths(dataset: Any, style: str, tokenizer: Any, template: str | None = None) -> np.ndarray:
    """Every pair's length, computed once per dataset, tokenizer, style and template."""
    key = ("pair_lengths", id(tokenizer), getattr(tokenizer, "name_or_path", ""), style, template)
    return dataset.remember(key, lambda: pair_lengths(dataset.records, style, tokenizer, template))


def training_pairs(records: Sequence[Any], indices: Sequence[int], tokenizer: Any, style: str, batch_size: int,
                   number: int = 0, max_length: int | None = None, mask: str = "prompt",
                   group_by_length: bool = False, seed: int = 123, template: str | None = None,
                   lengths: Sequence[int] | None = None, drop_last: bool = False,
                   order: str = "shuffled") -> batching.Batch:
    """Batch `number` of a DPO run's first epoch over `indices`, collated as the run collates it
    (`collate_pairs`), in the batch order of `batching.training_batch` on each pair's length;
    `lengths` (by record number, as `dataset_pair_lengths` gives them) saves computing them."""
    if not group_by_length:
        order_lengths: Sequence[int] = np.zeros(len(indices), dtype=np.int32)
    elif lengths is None:
        order_lengths = pair_lengths(records, style, tokenizer, template, indices)
    else:
        order_lengths = [lengths[i] for i in indices]
    picked = batching.batch_records(indices, order_lengths, batch_size, number, seed, group_by_length, drop_last,
                                    order)
    _, pad = batching.special_ids(tokenizer)
    return collate_pairs(encode_pairs(records, style, tokenizer, template, picked), pad, max_length, mask)


def pair_rows(view: batching.BatchView) -> list[tuple[batching.RowView, batching.RowView]]:
    """A described `collate_pairs` batch as (chosen row, rejected row) per pair, in the pairs' order."""
    n = len(view.rows) // 2
    return list(zip(view.rows[:n], view.rows[n:]))


SCORED = {"prompt": "its response and end-of-text targets (the whole prompt is masked, -100)",
          "instruction": "its response header, response and end-of-text targets (the instruction and input are "
                         "masked, -100)",
          "none": "all its targets: nothing is masked, so the prompt's tokens count too (DPO usually masks the "
                  "prompt, as the book does)"}


def computes(mask: str) -> str:
    """What DPO computes on a batch of pairs collated with `mask`, in two sentences."""
    return (f"DPO scores each row by the mean log-probability of {SCORED[mask]}; padding never counts. "
            "Per pair, the loss is -log sigmoid(beta × (chosen log-ratio - rejected log-ratio)), each side's "
            "log-ratio being the policy's log-probability minus the frozen reference's.")


def mean_logprobs(module: torch.nn.Module, batch: batching.Batch, device: Any) -> torch.Tensor:
    """Each row's mean log-probability over its trained targets (0 for a row with none)."""
    sums, counts = module(batch.inputs.to(device), batch.targets.to(device))
    return sums / counts.clamp(min=1)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, reference_chosen: torch.Tensor,
             reference_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The book's `compute_dpo_loss`, per pair: (losses, chosen rewards, rejected rewards)."""
    logits = (policy_chosen - policy_rejected) - (reference_chosen - reference_rejected)
    losses = -F.logsigmoid(beta * logits)
    return losses, (policy_chosen - reference_chosen).detach(), (policy_rejected - reference_rejected).detach()


def summary(losses: torch.Tensor, chosen: torch.Tensor, rejected: torch.Tensor, prefix: str = "") -> dict[str, float]:
    """The logged figures of some pairs: loss, both rewards, their margin and the reward accuracy."""
    values = torch.stack([losses.detach().mean(), chosen.mean(), rejected.mean(), (chosen - rejected).mean(),
                          (chosen > rejected).float().mean()]).tolist()  # one device sync
    names = ("loss", "chosen_reward", "rejected_reward", "reward_margin", "reward_accuracy")
    return {f"{prefix}{name}": round(value, 6) for name, value in zip(names, values)}


class Preference(Objective):
    """DPO on preference pairs (see the module docstring); `config.beta` is the book's beta."""
    name = "dpo"

    def __init__(self, config: TrainConfig, tokenizer: Any):
        super().__init__(config, tokenizer)
        self.reference: dict[int, tuple[float, float]] = {}  # record -> the reference's (chosen, rejected)

    def encode(self, records: Sequence[Any], indices: Sequence[int]) -> list[PairSample]:
        return encode_pairs(records, self.config.style, self.tokenizer, self.config.template, indices)

    def length(self, sample: PairSample) -> int:
        return sample.length

    def module(self, model: torch.nn.Module) -> torch.nn.Module:
        return RowLogProbs(model, self.config.gradient_checkpointing)

    def collate(self, pairs: Sequence[PairSample]) -> batching.Batch:
        return collate_pairs(pairs, self.pad_id, self.config.max_length, self.config.mask)

    def losses(self, module: torch.nn.Module, pairs: Sequence[PairSample], device: Any,
               ) -> tuple[tuple[torch.Tensor, ...], batching.Batch]:
        """((losses, chosen rewards, rejected rewards) per pair, the batch) of the policy now."""
        batch = self.collate(pairs)
        logprobs = mean_logprobs(module, batch, device)
        missing = [p.index for p in pairs if p.index not in self.reference]
        if missing:
            raise PlaygroundError(f"No reference log-probabilities for record {missing[0]}: the run's reference "
                                  "pass did not reach it.")
        reference = torch.tensor([self.reference[p.index] for p in pairs], dtype=logprobs.dtype, device=logprobs.device)
        n = len(pairs)
        return dpo_loss(logprobs[:n], logprobs[n:], reference[:, 0], reference[:, 1], self.config.beta), batch

    def batch_loss(self, module: torch.nn.Module, pairs: Sequence[PairSample], device: Any) -> BatchLoss:
        (losses, chosen, rejected), batch = self.losses(module, pairs, device)
        values = summary(losses, chosen, rejected)
        values.pop("loss")  # logged as train_loss by the loop
        return BatchLoss(losses.mean(), batch.trained_tokens, batch.real_tokens, values)

    def nothing_trained(self, pairs: Sequence[PairSample]) -> str | None:
        """Why no response of these pairs keeps a scored target (cut away or masked), or None."""
        return Supervised(self.config, self.tokenizer).nothing_trained([p.chosen for p in pairs] +
                                                                      [p.rejected for p in pairs])

    def evaluate(self, module: torch.nn.Module, batches: Sequence[Sequence[PairSample]], device: Any) -> dict[str, Any]:
        """The validation loss, rewards, margin and accuracy over every pair of `batches`."""
        parts = [self.losses(module, pairs, device)[0] for pairs in batches]
        if not parts:
            return {"val_loss": None}
        return summary(*(torch.cat(column) for column in zip(*parts)), prefix="val_")

    def prepare(self, loop: Any) -> Iterator[None]:
        """The reference's log-probabilities of every pair of the run's validations and steps, computed
        with the weights the run starts from, in eval mode and batch for batch as they will be
        collated; yields after each batch, so the loop can stop between them (validation first, so
        that a stopped run can still validate)."""
        validation = [[loop.val_samples[i] for i in b] for b in loop.validation_batches()]
        steps = [[loop.train_samples[i] for i in b] for b in loop.planned_batches()]
        if any(p.index not in self.reference for pairs in validation + steps for p in pairs):
            loop.phase("reference log-probabilities")
        for pairs in validation:
            self.remember(loop, pairs)
        for pairs in steps:
            self.remember(loop, pairs)
            yield

    def remember(self, loop: Any, pairs: Sequence[PairSample]) -> None:
        """The reference's log-probabilities of the pairs not yet known, from one batch of them all."""
        if all(p.index in self.reference for p in pairs):
            return
        with loop.side.weights.use(adapter=loop.side.adapter), torch.no_grad():
            logprobs = mean_logprobs(loop.loss_module, self.collate(pairs), loop.device).tolist()
        n = len(pairs)
        for pair, chosen, rejected in zip(pairs, logprobs[:n], logprobs[n:]):
            self.reference.setdefault(pair.index, (chosen, rejected))

    def state(self) -> dict[str, Any]:
        records = sorted(self.reference)
        return {"reference_records": torch.tensor(records, dtype=torch.long),
                "reference": torch.tensor([self.reference[i] for i in records], dtype=torch.float64).reshape(-1, 2)}

    def restore(self, state: dict[str, Any]) -> None:
        self.reference = {int(i): (float(c), float(r))
                          for i, (c, r) in zip(state["reference_records"].tolist(), state["reference"].tolist())}


# ---------------------------------------------------------------- the run a DPO run starts from


def settings_from_run(config: TrainConfig, models_dir: Path) -> TrainConfig:
    """`config` with what must match the run it starts from (`config.from_run`): its base model, its
    method, prompt style and template, and for LoRA its adapter's shape."""
    start = runs.read(models_dir, config.from_run).config
    return replace(config, model=start.model, method=start.method, style=start.style, template=start.template,
                   lora_r=start.lora_r, lora_alpha=start.lora_alpha, target_modules=start.target_modules)


SHAPE = ("model", "method", "style", "template")
LORA_SHAPE = ("lora_r", "lora_alpha", "target_modules")


def starting_weights(models_dir: Path, config: TrainConfig) -> run_files.SavedWeights:
    """The trained weights of `config.from_run`, refused with the reason when they cannot start this run."""
    record = runs.read(models_dir, config.from_run)
    if record.state == "running":
        raise PlaygroundError(f"Run {record.run_id} is still training: start DPO from it when it has ended.")
    saved = record.weights
    if saved is None:
        raise PlaygroundError(f"Run {record.run_id} has no saved adapter or weights ({record.state}) to start from.")
    start = record.config
    names = SHAPE + (LORA_SHAPE if config.method == "lora" else ())
    differ = [f"{name} {getattr(config, name)!r} (its {getattr(start, name)!r})" for name in names
              if getattr(config, name) != getattr(start, name)]
    if differ:
        raise PlaygroundError(f"A DPO run from {record.run_id} takes its settings: " + ", ".join(differ) + ".")
    return saved


def describe_start(models_dir: Path, config: TrainConfig) -> dict[str, Any]:
    """What config.json records of the run a DPO run starts from: its id, state and weights' hash."""
    record = runs.read(models_dir, config.from_run)
    saved = starting_weights(models_dir, config)
    digest = hashlib.sha256()
    for path in sorted(saved.folder.glob("*.safetensors")):
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    return {"run": record.run_id, "state": record.state, "weights": saved.folder.name, "sha256": digest.hexdigest(),
            "steps": record.status.get("steps")}
