"""What a fine-tune changed, token by token: the base and the tuned model read the same text.

For one record, both sides read the training text (prompt + reference response + end-of-text) with
teacher forcing: one forward pass per set of weights, the base and the tuned row in one batch when
the tuned model is a LoRA adapter on the shared weights. Per token of the reference response this
gives each side's probability of that token and its loss (-log p), the KL divergence between the
two next-token distributions, KL(tuned || base), and each side's top 5 next tokens. Over a split,
`family_losses` gives the mean response loss of each side per task family.

The "base" side is the model the run is compared with: the base model by default, or any other
`model_refs` text (`against`): the run it started from, another run on the same base model, or a
checkpoint. Its figures keep the `base_` names; `Inspection.against` says which model gave them,
and the KL is then KL(tuned || that model).
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import torch

from . import batching, data
from .errors import PlaygroundError
from .generation import Side
from .model_refs import BASE, ModelRef, side_name
from .settings import TrainConfig

TOP_K = 5
MAX_TOKENS = 512  # longest text read when the run has no max length: the logits grow with it
NO_FAMILY = "(no task)"


@dataclass
class TokenRow:
    position: int  # the token's place in the text's ids
    token: str     # its text, whitespace made visible
    part: str      # "response" or "eos"
    base_prob: float
    tuned_prob: float
    base_loss: float
    tuned_loss: float
    kl: float      # KL(tuned || base) of the next-token distributions that predicted it
    base_top: list[tuple[str, float]] = field(default_factory=list)
    tuned_top: list[tuple[str, float]] = field(default_factory=list)

    def as_row(self) -> dict[str, Any]:
        """The command line's row: the token and the five figures."""
        return {"position": self.position, "token": self.token, "base_prob": self.base_prob,
                "tuned_prob": self.tuned_prob, "base_loss": self.base_loss, "tuned_loss": self.tuned_loss,
                "kl": self.kl}


@dataclass
class Inspection:
    run_id: str
    source: str             # "test record 12", or "typed text"
    prompt: str             # the prompt's text as the models read it
    prompt_tokens: list[str]
    tokens: list[TokenRow]  # one per token of the reference response, its end-of-text token last
    totals: dict[str, dict[str, float | None]]  # side -> mean loss of prompt and of response tokens
    truncated: bool = False  # the text was cut at the run's max length
    against: str = BASE      # the model whose figures are the "base" side's (`model_refs` text)

    @property
    def against_label(self) -> str:
        """How a page names the "base" side (`model_refs.side_name`)."""
        return side_name(self.against)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FamilyLoss:
    family: str
    records: int
    tokens: int
    base_loss: float   # mean over the family's response tokens
    tuned_loss: float


def _text_ids(record: data.Record, style: str, tokenizer: Any, template: str | None,
              max_length: int | None) -> tuple[list[int], int, bool]:
    """(ids of prompt + response + end-of-text, prompt length, cut or not), as training reads them."""
    sample = batching.encode(record, style, tokenizer, template)
    limit = (max_length or MAX_TOKENS) + 1  # training reads max_length inputs, so max_length + 1 ids
    if sample.prompt_len >= limit - 1:
        raise PlaygroundError(f"The prompt alone is {sample.prompt_len} tokens, so the run's max length "
                              f"({limit - 1}) leaves no response token to inspect.")
    return sample.ids[:limit], sample.prompt_len, len(sample.ids) > limit


def next_token_logprobs(sides: Sequence[Side], ids: list[int], keep: slice) -> list[torch.Tensor]:
    """Per side, float32 log-probabilities of the next token at positions `keep` of `ids`.

    Sides on the same weights read the text in one batch, each row through its own adapter."""
    groups: dict[int, list[int]] = {}
    for n, side in enumerate(sides):
        groups.setdefault(id(side.weights), []).append(n)
    result: list[torch.Tensor | None] = [None] * len(sides)
    for members in groups.values():
        weights = sides[members[0]].weights
        inputs = torch.tensor([ids] * len(members), device=weights.device)
        with weights.use() as model, torch.no_grad():
            routing = weights.adapter_names([sides[n].adapter for n in members])
            logits = model(input_ids=inputs, use_cache=False, **routing).logits
        for row, n in enumerate(members):
            result[n] = torch.log_softmax(logits[row, keep].float(), dim=-1).cpu()
    return result  # type: ignore[return-value]


def kl_divergence(p_log: torch.Tensor, q_log: torch.Tensor, rows: int = 64) -> torch.Tensor:
    """KL(p || q) per row of log-probabilities, a few rows at a time (a row is the whole vocabulary)."""
    parts = [(p.exp() * (p - q)).sum(-1) for p, q in zip(p_log.split(rows), q_log.split(rows))]
    return torch.cat(parts).clamp_min(0) if parts else torch.zeros(0)


def _mean(values: torch.Tensor) -> float | None:
    return float(values.mean()) if values.numel() else None


def _top(tokenizer: Any, logprobs: torch.Tensor) -> list[tuple[str, float]]:
    values, ids = torch.topk(logprobs, TOP_K)
    texts = batching.token_text(tokenizer, ids.tolist())
    return [(text, round(float(v.exp()), 6)) for text, v in zip(texts, values)]


def compare(base: Side, tuned: Side, tokenizer: Any, record: data.Record, style: str,
            template: str | None = None, max_length: int | None = None, run_id: str = "",
            source: str = "typed text", against: str = BASE) -> Inspection:
    """Base (or the compared model `against` names) and tuned side reading `record`'s training text:
    per-token figures and totals."""
    ids, prompt_len, truncated = _text_ids(record, style, tokenizer, template, max_length)
    base_lp, tuned_lp = next_token_logprobs([base, tuned], ids, slice(0, len(ids) - 1))
    targets = torch.tensor(ids[1:])
    base_loss = -base_lp.gather(1, targets[:, None])[:, 0]
    tuned_loss = -tuned_lp.gather(1, targets[:, None])[:, 0]
    kl = kl_divergence(tuned_lp, base_lp)
    first = prompt_len - 1  # the position whose next token is the response's first
    texts = batching.token_text(tokenizer, ids)
    eos, _ = batching.special_ids(tokenizer)
    rows = [TokenRow(position=p + 1, token=texts[p + 1], part="eos" if ids[p + 1] == eos and p == len(ids) - 2
                     else "response",
                     base_prob=float((-base_loss[p]).exp()), tuned_prob=float((-tuned_loss[p]).exp()),
                     base_loss=float(base_loss[p]), tuned_loss=float(tuned_loss[p]), kl=float(kl[p]),
                     base_top=_top(tokenizer, base_lp[p]), tuned_top=_top(tokenizer, tuned_lp[p]))
            for p in range(first, len(ids) - 1)]
    totals = {name: {"prompt_loss": _mean(loss[:first]), "response_loss": _mean(loss[first:])}
              for name, loss in (("base", base_loss), ("tuned", tuned_loss))}
    prompt = tokenizer.decode(ids[:prompt_len], skip_special_tokens=True)
    return Inspection(run_id, source, prompt, texts[:prompt_len], rows, totals, truncated, against)


def _run_sides(manager: Any, run_id: str, against: str = BASE) -> tuple[Side, Side, Any, TrainConfig]:
    """(the compared model's side, the run's side, the tokenizer, the run's settings); a model on
    another base model than the run's is refused (`ModelManager.side`)."""
    ref = ModelRef.parse(against)
    tuned, record = manager.tuned_side(run_id)
    config = record.config
    return manager.side(ref, config.model), tuned, manager.tokenizer(config.model), config


def inspect_record(manager: Any, run_id: str, record: data.Record, source: str = "typed text",
                   against: str = BASE) -> Inspection:
    """A record (typed, or one of the run's data) read by the run's tuned model and by the model it is
    compared with (`against`, a `model_refs` text: the base model by default)."""
    base, tuned, tokenizer, config = _run_sides(manager, run_id, against)
    return compare(base, tuned, tokenizer, record, config.style, config.template, config.max_length, run_id, source,
                   str(ModelRef.parse(against)))


def split_record(manager: Any, run_id: str, split: str, position: int) -> tuple[int, data.Record]:
    """(record number in the dataset, record) of the `position`-th example of the run's own split."""
    found = manager.run_data(run_id)
    indices = found.indices(split)
    if not 0 <= position < len(indices):
        raise PlaygroundError(f"Run {run_id}'s {split} split has {len(indices)} examples: "
                              f"there is no example {position}.")
    return indices[position], found.dataset.records[indices[position]]


def inspect_example(manager: Any, run_id: str, split: str, position: int, against: str = BASE) -> Inspection:
    """The `position`-th example of the run's own split (0: the first), against `against`."""
    number, record = split_record(manager, run_id, split, position)
    return inspect_record(manager, run_id, record, f"{split} example {position} (record {number})", against)


def family_losses(manager: Any, run_id: str, split: str = "validation", limit: int | None = None,
                  on_progress: Callable[[int, int], None] | None = None,
                  stop: threading.Event | None = None, against: str = BASE) -> list[FamilyLoss]:
    """Mean response loss of the compared model (`against`: the base model by default; `base_loss`)
    and of the tuned one per task family on the run's own split (the first `limit` examples), each
    family's loss averaged over its response tokens."""
    base, tuned, tokenizer, config = _run_sides(manager, run_id, against)
    found = manager.run_data(run_id)
    indices = found.indices(split)[:limit]
    if not indices:
        raise PlaygroundError(f"Run {run_id}'s {split} split is empty.")
    sums: dict[str, list[float]] = {}  # family -> [records, tokens, base loss sum, tuned loss sum]
    for done, index in enumerate(indices):
        if stop is not None and stop.is_set():
            break
        record = found.dataset.records[index]
        ids, prompt_len, _ = _text_ids(record, config.style, tokenizer, config.template, config.max_length)
        keep = slice(prompt_len - 1, len(ids) - 1)
        targets = torch.tensor(ids[prompt_len:])[:, None]
        base_lp, tuned_lp = next_token_logprobs([base, tuned], ids, keep)
        entry = sums.setdefault(record.task or NO_FAMILY, [0, 0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += len(targets)
        entry[2] -= float(base_lp.gather(1, targets).sum())
        entry[3] -= float(tuned_lp.gather(1, targets).sum())
        if on_progress:
            on_progress(done + 1, len(indices))
    return [FamilyLoss(name, int(n), int(tokens), b / tokens, t / tokens)
            for name, (n, tokens, b, t) in sorted(sums.items())]
