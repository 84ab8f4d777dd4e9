"""Short fine-tunes (LoRA or full) with live events, validation, probes and Stop.

`train()` is the one training loop. The app runs it on a background thread owned by the model
manager; the command line runs it in the foreground, optionally under `accelerate launch` for
several GPUs. What it minimises is the run's objective (`objectives.py`): the supervised loss, whose
batches come from `batching.collate`, the function the Batch tab shows, or DPO on preference pairs
(`dpo.py`), which starts from a finished run's weights (`from_run`).
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from . import (answer_scores, batching, checkpoints, data, dpo, estimate, generation, prompts, run_data, run_files,
               runs, store)
from .errors import PlaygroundError
from .generation import GenerationSettings, Side
from .objectives import Objective, Supervised
from .settings import PRESETS, TrainConfig  # noqa: F401 (PRESETS re-exported: tests and benches read it here)
from .weights import Weights

log = logging.getLogger(__name__)


@dataclass
class Event:
    """One thing that happened in a run; the UI and the command line read these."""
    kind: str                # "start", "resume", "phase", "step", "eval", "probe", "answers", "end"
    step: int = 0
    total_steps: int = 0
    epoch: float = 0.0
    elapsed: float = 0.0
    values: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {"kind": self.kind, "step": self.step, "epoch": round(self.epoch, 4),
                "elapsed": round(self.elapsed, 2), **self.values}

    @classmethod
    def from_row(cls, row: dict[str, Any], total_steps: int) -> "Event":
        """An event back from its metric row (a resumed run's curve so far)."""
        values = {k: v for k, v in row.items() if k not in ("kind", "step", "epoch", "elapsed")}
        return cls(row.get("kind", ""), row.get("step", 0), total_steps, row.get("epoch", 0.0),
                   row.get("elapsed", 0.0), values)


class StopTraining(Exception):
    pass


class StopRequest(threading.Event):
    """Set: the run stops after its current optimizer step, then validates, probes and keeps a
    checkpoint. `hurry` set as well (Stop pressed again): the last validation and probes not yet
    begun are skipped, and only the checkpoint is kept."""

    def __init__(self) -> None:
        super().__init__()
        self.hurry = threading.Event()


def lora_config(config: TrainConfig) -> Any:
    from peft import LoraConfig

    targets: Any = config.target_modules
    if targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM")


def probe_records(dataset: data.Dataset, splits: data.Splits, count: int) -> list[data.Record]:
    """A few fixed validation instructions whose answers are shown as the model learns."""
    pool = splits.validation or splits.test or splits.train
    return [dataset.records[i] for i in pool[:count]]


def answer_records(dataset: data.Dataset, splits: data.Splits, config: TrainConfig) -> list[data.Record]:
    """The validation records whose answers are scored while training (whole blocks: see
    `answer_scores`); none when scoring is off."""
    if not config.score_answers_every:
        return []
    return answer_scores.pool([dataset.records[i] for i in splits.validation], config.score_answers_sample)


def batches_per_epoch(config: TrainConfig, train_size: int) -> int:
    """Training batches in one epoch: the last, smaller one is left out with drop_last."""
    return train_size // config.batch_size if config.drop_last else math.ceil(train_size / config.batch_size)


def total_steps_for(config: TrainConfig, train_size: int) -> int:
    per_epoch = math.ceil(batches_per_epoch(config, train_size) / config.grad_accum)
    if config.max_steps:
        return config.max_steps
    return max(1, math.ceil(per_epoch * config.epochs))


def planned_steps(config: TrainConfig, tokenizer: Any, dataset: data.Dataset, train_indices: Sequence[int]) -> int:
    """The optimizer steps a run of `config` takes: its max steps, or its epochs over the training rows,
    which are packed rows when it packs (counted from the samples' lengths, nothing tokenised twice)."""
    rows = len(train_indices)
    if config.pack and config.objective == "sft" and not config.max_steps:
        lengths = batching.dataset_lengths(dataset, config.style, tokenizer, config.template)
        rows = len(batching.pack_layout([lengths[i] - 1 for i in train_indices], config.max_length))
    return total_steps_for(config, rows)


def lr_factor(step: int, warmup_steps: int, total: int, schedule: str = "linear") -> float:
    """The learning rate's multiplier at `step` (from 0): a linear warmup, then `schedule` (an
    LR_SCHEDULES name): down to a tenth by the last step, or constant."""
    warmup = min(1.0, (step + 1) / max(1, warmup_steps))
    done = min(1.0, step / max(1, total))
    if schedule == "constant":
        return warmup
    if schedule == "cosine":
        return warmup * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done)))
    return warmup * max(0.1, 1 - done)


def due(every: int, step: int, total: int) -> bool:
    """Whether what is done every `every` steps (0: never) is due after `step`; never after the last
    step, after which the run validates, probes and saves anyway."""
    return bool(every) and step % every == 0 and step < total


@dataclass
class Window:
    """Trained tokens, real input tokens and compute seconds since the last logged step."""
    tokens: int = 0
    inputs: int = 0
    seconds: float = 0.0


@dataclass
class TrainingLoop:
    """One run of `train`: what its steps use, and the progress they carry from one to the next."""
    side: Side
    tokenizer: Any
    config: TrainConfig
    emit: Callable[[Event], None]
    checkpoint: Callable[[int, dict[str, Any]], None] | None
    accelerator: Any
    objective: Objective
    train_samples: list[Any]  # the objective's samples (supervised samples, or DPO's pairs)
    val_samples: list[Any]
    probes: list[data.Record]
    answer_records: list[data.Record]  # the validation records whose answers are scored (whole blocks)
    loss_module: Any          # the objective's module around the model (wrapped by accelerate)
    trainable: list[torch.nn.Parameter]
    optimizer: Any
    schedule: Any
    device: Any
    total: int
    per_epoch: int       # optimizer steps in one epoch
    rank: int = 0        # this process, of `world` processes (accelerate)
    world: int = 1
    started: float = field(default_factory=time.monotonic)
    step: int = 0        # optimizer steps done
    micro: int = 0       # batches done (grad_accum of them make a step)
    epoch: int = 0
    position: int = 0    # the epoch's next batch
    rows: int = 0        # events logged as metric rows; a checkpoint keeps the count so a resumed run drops later ones
    first_val: float | None = None
    train_loss: float | None = None
    trained_tokens: int = 0  # targets trained on so far, all processes
    stopped: bool = False
    window: Window = field(default_factory=Window)
    validated_at: int = -1   # the step of the last validation and probe, so a Stop right after them
    probed_at: int = -1      # does not repeat them
    last_val: float | None = None
    last_figures: dict[str, Any] = field(default_factory=dict)  # the last validation's figures
    step_values: dict[str, float] = field(default_factory=dict)  # the objective's figures of the last batch
    step_lr: float = 0.0  # the learning rate the last optimizer step used
    resumed_at: int | None = None  # a resumed run: the step it went on from, and when (monotonic)
    resumed_clock: float = 0.0
    scored_at: int = -1      # the step of the last answer scoring
    answer_seconds: float = 0.0  # what answer scoring has cost, in all
    best: dict[str, Any] | None = None  # the best scored checkpoint: {"step", "exact_match", "rouge_l"}
    kept: tuple[int, int] = (-1, -1)  # (step, rows) of the last checkpoint, so that one is not written twice

    # ------------------------------------------------------------ what the run reports

    def event(self, kind: str, **values: Any) -> None:
        """Tell `emit`; every kind but "phase" becomes a row of the run's metrics."""
        self.rows += kind != "phase"
        self.emit(Event(kind, self.step, self.total, self.step / self.per_epoch, time.monotonic() - self.started,
                        values))

    def phase(self, name: str) -> None:
        """What the run does now (probing, validating, training), for a progress line that says so."""
        self.event("phase", phase=name)

    def log_step(self, loss: float) -> None:
        """The step's point of the curve, with the throughput since the previous one."""
        seconds, world = max(self.window.seconds, 1e-9), self.world
        self.event("step", train_loss=round(loss, 4), **self.step_values, lr=self.step_lr,
                   trained_tokens=self.trained_tokens,
                   tokens_per_s=round(self.window.tokens * world / seconds, 1),
                   input_tokens_per_s=round(self.window.inputs * world / seconds, 1))
        self.window = Window()

    # ------------------------------------------------------------ training

    def epoch_order(self, epoch: int | None = None) -> list[list[int]]:
        """This process's share of the batches of an epoch (default: the current one)."""
        config = self.config
        order = batching.batch_order([self.objective.length(s) for s in self.train_samples], config.batch_size,
                                     config.seed, config.group_by_length, config.drop_last, config.batch_order,
                                     self.epoch if epoch is None else epoch)
        return order[self.rank::self.world]

    def planned_batches(self) -> list[list[int]]:
        """Every batch this process's steps will take, from the first step to the last."""
        batches, epoch, needed = [], 0, self.total * self.config.grad_accum
        while len(batches) < needed:
            order = self.epoch_order(epoch)
            if not order:
                break
            batches += order[:needed - len(batches)]
            epoch += 1
        return batches

    def validation_batches(self) -> list[list[int]]:
        """The validation batches every evaluation takes: the first `eval_batches` of a fixed order."""
        order = batching.batch_order([self.objective.length(s) for s in self.val_samples], self.config.batch_size,
                                     seed=0)
        return order[:self.config.eval_batches]

    def micro_step(self, indices: list[int]) -> float:
        """Forward and backward on one batch, and the optimizer's step once `grad_accum` batches are in;
        returns the batch's loss."""
        config, accelerator = self.config, self.accelerator
        samples = [self.train_samples[i] for i in indices]
        started = time.monotonic()
        with self.side.weights.use(train=True, adapter=self.side.adapter):
            result = self.objective.batch_loss(self.loss_module, samples, self.device)
            loss = result.loss
            value = loss.detach().item()
            if not math.isfinite(value):
                raise PlaygroundError(
                    f"The loss became {value} at step {self.step + 1}: training diverged. Lower the "
                    "learning rate (for example by 10x), or check the data for empty answers.")
            (accelerator.backward if accelerator else torch.Tensor.backward)(loss / config.grad_accum)
            self.micro += 1
            self.window.tokens += result.tokens
            self.window.inputs += result.inputs
            self.trained_tokens += result.tokens * self.world
            self.step_values = result.values
            if self.micro % config.grad_accum == 0:
                torch.nn.utils.clip_grad_norm_(self.trainable, 1.0)
                self.optimizer.step()
                self.step_lr = self.schedule.get_last_lr()[0]  # the one this step used, logged with it
                self.schedule.step()
                self.optimizer.zero_grad(set_to_none=True)
        self.window.seconds += time.monotonic() - started
        return value

    def end_of_step(self, loss: float) -> None:
        """Count an optimizer step; log it, and validate, probe, score answers and keep a checkpoint
        when they are due."""
        config = self.config
        self.step += 1
        self.train_loss = loss
        if self.step % config.log_every == 0 or self.step == self.total:
            self.log_step(loss)
        validate_now = due(config.eval_every, self.step, self.total)
        probe_now = due(config.probe_every, self.step, self.total)
        score_now = due(config.score_answers_every, self.step, self.total)
        keep_now = due(config.checkpoint_every, self.step, self.total)
        if validate_now:
            self.validate()
        if probe_now:
            self.probe()
        if score_now:
            self.score_answers()
        if keep_now:
            self.keep()
        if validate_now or probe_now or score_now or keep_now:
            self.phase("training")

    # ------------------------------------------------------------ evaluation, probes, checkpoints

    def validate(self) -> float | None:
        """The validation loss (and the objective's other figures) now, logged as the curve's point at this step."""
        figures = self.evaluate()
        self.event("eval", **figures)
        self.validated_at, self.last_val, self.last_figures = self.step, figures["val_loss"], figures
        return figures["val_loss"]

    def evaluate(self) -> dict[str, Any]:
        """The objective's validation figures over the first `eval_batches` batches ("val_loss": per
        trained target, for the supervised loss)."""
        if not self.val_samples:
            return {"val_loss": None}
        self.phase("validating")
        batches = [[self.val_samples[i] for i in indices] for indices in self.validation_batches()]
        with self.side.weights.use(adapter=self.side.adapter), torch.no_grad():
            return self.objective.evaluate(self.loss_module, batches, self.device)

    def probe(self) -> None:
        """The probe instructions' answers now (on the main process)."""
        self.probed_at = self.step
        if not self.probes or self.rank != 0:
            return
        self.phase("probing")
        style, template = self.config.style, self.config.template
        rendered = [prompts.render(record, style, self.tokenizer, template) for record in self.probes]
        answers = generation.generate([(self.side, r.inference) for r in rendered], self.tokenizer, style,
                                      GenerationSettings(max_new_tokens=self.config.probe_tokens))
        self.event("probe", probes=[{"instruction": record.instruction, "input": record.input,
                                     "reference": record.output, "answer": answer}
                                    for record, answer in zip(self.probes, answers)])

    def score_answers(self) -> None:
        """The validation sample's answers scored now (on the main process), logged as an "answers"
        event, then a checkpoint kept; the best scoring so far names its checkpoint (`best`)."""
        self.scored_at = self.step
        if self.answer_records and self.rank == 0 and self.step > 0:
            self.phase("scoring answers")
            started = time.monotonic()
            config = self.config
            figures = answer_scores.score(self.side, self.tokenizer, self.answer_records, config.score_answers_sample,
                                          config.style, config.template, config.probe_tokens)
            seconds = time.monotonic() - started
            self.answer_seconds += seconds
            scores = {"exact_match": figures["val_exact_match"], "rouge_l": figures["val_rouge_l"]}
            if self.checkpoint is not None and answer_scores.better(scores, self.best):
                self.best = {"step": self.step, **scores}
            self.event("answers", **figures, seconds=round(seconds, 2), answer_seconds=round(self.answer_seconds, 2),
                       best_checkpoint=self.best)
        self.keep()

    def trainer_state(self) -> dict[str, Any]:
        """What a checkpoint keeps besides the weights."""
        return {"step": self.step, "epoch": self.epoch, "position": self.position, "total_steps": self.total,
                "rows": self.rows, "elapsed": time.monotonic() - self.started, "first_val_loss": self.first_val,
                "train_loss": self.train_loss, "trained_tokens": self.trained_tokens,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.schedule.state_dict(),
                "rng": torch.get_rng_state(), "objective": self.objective.state(),
                "best_checkpoint": self.best, "answer_seconds": self.answer_seconds}

    def keep(self) -> None:
        """A checkpoint now (none before the first step: there is nothing to go on from), unless one was
        kept at this step with nothing logged since."""
        if self.checkpoint is not None and self.step > 0 and self.kept != (self.step, self.rows):
            self.phase("saving a checkpoint")
            self.kept = (self.step, self.rows)
            self.checkpoint(self.step, self.trainer_state())

    # ------------------------------------------------------------ beginning and end

    def begin(self, stop: threading.Event) -> None:
        """A new run: its figures, what the objective prepares (`stop` ends it between its parts), the
        probes' answers and the validation loss before training."""
        self.event("start", total_steps=self.total, train_examples=len(self.train_samples),
                   validation_examples=len(self.val_samples),
                   trainable_parameters=sum(p.numel() for p in self.trainable), objective=self.objective.name)
        for _ in self.objective.prepare(self):
            if stop.is_set():
                raise StopTraining
        self.probe()
        self.first_val = self.validate()

    def restore(self, state: dict[str, Any]) -> None:
        """A resumed run: the progress, optimizer, schedule and random numbers of its checkpoint."""
        self.step, self.epoch, self.position = state["step"], state["epoch"], state["position"]
        self.rows = state["rows"]
        self.micro = self.step * self.config.grad_accum
        self.first_val, self.train_loss = state["first_val_loss"], state["train_loss"]
        self.trained_tokens = state.get("trained_tokens", 0)
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        self.objective.restore(state.get("objective", {}))
        self.best, self.answer_seconds = state.get("best_checkpoint"), state.get("answer_seconds", 0.0)
        self.started -= state["elapsed"]  # the curve against wall time goes on from where it stopped
        self.resumed_at, self.resumed_clock = self.step, time.monotonic()
        self.event("resume", from_step=self.step)

    def finish(self, hurry: threading.Event | None = None) -> dict[str, Any]:
        """The validation loss, the probes' answers and the answers' scores at the end, and the run's
        figures. A stopped run keeps its checkpoint after them, so a resumed run's curve keeps this last
        point and probe column; once `hurry` is set, what has not begun of them is skipped (the curve
        ends at its last point)."""
        def hurried() -> bool:
            return hurry is not None and hurry.is_set()

        final_val = self.last_val if self.validated_at == self.step or hurried() else self.validate()
        if self.probed_at != self.step and not hurried():
            self.probe()
        if self.config.score_answers_every and self.scored_at != self.step and not hurried():
            self.score_answers()
        if self.stopped:
            self.keep()
        result = {"steps": self.step, "total_steps": self.total, "stopped": self.stopped, "train_loss": self.train_loss,
                  "val_loss": final_val, "validated_at": self.validated_at, "first_val_loss": self.first_val,
                  "elapsed": time.monotonic() - self.started,
                  **{k: v for k, v in self.last_figures.items() if k != "val_loss"}, **self.answer_facts()}
        if self.resumed_at is not None:
            result.update(resumed_at=self.resumed_at, since_resume=time.monotonic() - self.resumed_clock)
        return result

    def answer_facts(self) -> dict[str, Any]:
        """What a run with answer scoring records in its status: its best checkpoint and what scoring cost."""
        return answer_facts(self.config, {"best_checkpoint": self.best, "answer_seconds": self.answer_seconds})


def answer_facts(config: TrainConfig, state: dict[str, Any] | None) -> dict[str, Any]:
    """`best_checkpoint` and `answer_seconds` (what answer scoring cost in all) from a trainer state,
    for the run's status; nothing when the run scores no answers."""
    if not config.score_answers_every or state is None:
        return {}
    return {"best_checkpoint": state.get("best_checkpoint"),
            "answer_seconds": round(state.get("answer_seconds", 0.0), 2)}


def objective_for(config: TrainConfig, tokenizer: Any) -> Objective:
    """What the run minimises: `config.objective`'s objective."""
    return dpo.Preference(config, tokenizer) if config.objective == "dpo" else Supervised(config, tokenizer)


def refuse_before_start(model: Any, tokenizer: Any, dataset: data.Dataset, config: TrainConfig, device: Any) -> None:
    """What is checked before a run's folder, adapter or optimizer is made: that the memory estimate
    fits what is free, and that the run trains something (max length 16 with the prompt masked
    trains no target and would show a loss of 0.0)."""
    estimate.refuse_beyond_memory(model, tokenizer, dataset, config, device)
    objective = objective_for(config, tokenizer)
    train = dataset.splits(seed=config.split_seed, order=config.split_order).train
    key = encoded_key(objective, train)
    reason = objective.nothing_trained(dataset.remember(key, lambda: objective.encode(dataset.records, train)))
    if reason:
        dataset.derived.pop(key, None)
        raise PlaygroundError(f"Not started: {reason}.")


def encoded_key(objective: Objective, indices: list[int]) -> tuple[Any, ...]:
    """What a split's encoded samples depend on besides the records: the objective, the tokenizer, the
    prompt style, the split, and the rows they are packed into."""
    config = objective.config
    return ("encoded split", objective.name, id(objective.tokenizer), config.style, config.template, tuple(indices),
            config.pack and config.max_length)


def encoded_once(objective: Objective, dataset: data.Dataset, indices: list[int]) -> list[Any]:
    """A split's samples: those `refuse_before_start` encoded for this run (taken from the dataset, so
    that they do not outlive the run), else encoded now."""
    found = dataset.derived.pop(encoded_key(objective, indices), None)
    return found if found is not None else objective.encode(dataset.records, indices)


def prepare_loop(side: Side, tokenizer: Any, dataset: data.Dataset, splits: data.Splits, config: TrainConfig,
                 emit: Callable[[Event], None], accelerator: Any = None,
                 checkpoint: Callable[[int, dict[str, Any]], None] | None = None) -> TrainingLoop:
    """A run before its first step: the data encoded, the optimizer and its schedule made, the seed set."""
    torch.manual_seed(config.seed)
    if not splits.train:
        raise PlaygroundError("The training split is empty: the dataset needs more records.")
    if batches_per_epoch(config, len(splits.train)) == 0:
        raise PlaygroundError(f"The training split has {len(splits.train)} records, fewer than one batch of "
                              f"{config.batch_size}, and drop_last leaves that batch out: lower the batch size.")
    objective = objective_for(config, tokenizer)
    train_samples = encoded_once(objective, dataset, splits.train)
    val_samples = objective.encode(dataset.records, splits.validation)
    loss_module = objective.module(side.weights.model)
    trainable = [p for p in side.weights.model.parameters() if p.requires_grad]
    if not trainable:
        raise PlaygroundError("The model has no trainable parameters.")
    device = side.weights.device
    fused = device.type == "cuda" if config.fused_adamw is None else config.fused_adamw
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    total = total_steps_for(config, len(train_samples))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, config.warmup_steps, total, config.lr_schedule))
    if accelerator is not None:
        loss_module, optimizer = accelerator.prepare(loss_module, optimizer)
        device = accelerator.device
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    return TrainingLoop(
        side=side, tokenizer=tokenizer, config=config, emit=emit, checkpoint=checkpoint, accelerator=accelerator,
        objective=objective, train_samples=train_samples, val_samples=val_samples,
        probes=probe_records(dataset, splits, config.probes), answer_records=answer_records(dataset, splits, config),
        loss_module=loss_module, trainable=trainable,
        optimizer=optimizer, schedule=schedule, device=device, total=total,
        per_epoch=math.ceil(batches_per_epoch(config, len(train_samples)) / config.grad_accum), rank=rank, world=world)


def train(side: Side, tokenizer: Any, dataset: data.Dataset, splits: data.Splits, config: TrainConfig,
          emit: Callable[[Event], None], stop: threading.Event | None = None,
          accelerator: Any = None, checkpoint: Callable[[int, dict[str, Any]], None] | None = None,
          resume: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fine-tune the side's weights in place (their trainable parameters) and return the final figures.

    Every step, evaluation and probe takes the weights through `Weights.use()`, so generation from
    another thread happens only between steps and never changes the mode a step runs in. `stop`
    ends the run after the current optimizer step (a `StopRequest` can also skip the last checks). `checkpoint(step, state)` keeps the trainer's
    state every `config.checkpoint_every` steps and when stopped; `resume` is such a state, from
    which the run goes on as if it had never stopped (the side's weights already those of the
    checkpoint).
    """
    config.check()
    stop = stop or StopRequest()
    loop = prepare_loop(side, tokenizer, dataset, splits, config, emit, accelerator, checkpoint)
    try:
        if resume is None:
            loop.begin(stop)
        else:
            loop.restore(resume)
        loop.phase("training")
        while loop.step < loop.total:
            order = loop.epoch_order()
            while loop.position < len(order) and loop.step < loop.total:
                if loop.micro % config.grad_accum == 0 and stop.is_set():  # only between optimizer steps
                    raise StopTraining
                loss = loop.micro_step(order[loop.position])
                loop.position += 1
                if loop.micro % config.grad_accum == 0:
                    loop.end_of_step(loss)
            loop.epoch, loop.position = loop.epoch + 1, 0
    except StopTraining:
        loop.stopped = True
    return loop.finish(stop.hurry if isinstance(stop, StopRequest) else None)


def prepare_model(weights: Weights, config: TrainConfig, run_id: str, models_dir: Path, dtype: Any,
                  device: Any, resume: checkpoints.Checkpoint | None = None) -> Side:
    """What a run trains: a new LoRA adapter on the shared weights, or a fresh copy for a full
    fine-tune; with `resume`, the weights of that checkpoint; else, for a run from another
    (`config.from_run`, DPO), that run's adapter or weights.

    LoRA weights train in float32 whatever the frozen base's dtype. A full fine-tune keeps float32
    weights off the GPU, where bf16 updates of small learning rates would round away.
    """
    torch.manual_seed(config.seed)  # the adapter's initial weights, so that a run can be reproduced
    start = resume.weights if resume is not None else (
        dpo.starting_weights(models_dir, config) if config.from_run else None)
    if config.method == "lora":
        weights.remove_adapter(run_id)  # a resumed run's adapter, loaded earlier to chat with
        try:
            model = weights.add_trainable_adapter(run_id, lora_config(config))
        except ValueError as exc:  # e.g. target modules that do not exist in this model
            raise PlaygroundError(f"LoRA settings: {exc}") from None
        for parameter in model.parameters():
            if parameter.requires_grad and parameter.dtype != torch.float32:
                parameter.data = parameter.data.float()
        if start is not None:
            load_adapter_weights(weights, run_id, start.folder)
        return Side("tuned", weights, run_id)
    source = str(start.folder) if start is not None else config.model
    copy = store.load_model(source, models_dir, dtype=full_fine_tune_dtype(dtype, device)).to(device)
    return Side("tuned", Weights(copy, weights.lock))


def full_fine_tune_dtype(dtype: Any, device: Any) -> torch.dtype:
    """The dtype a full fine-tune's weights train in: the model's (bf16) on a GPU, float32 elsewhere."""
    return dtype if torch.device(device).type == "cuda" and dtype is not None else torch.float32


def load_adapter_weights(weights: Weights, run_id: str, folder: Path) -> None:
    """A saved adapter's tensors into the run's trainable adapter (kept in float32)."""
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    with weights.use() as model:
        result = set_peft_model_state_dict(model, load_file(str(folder / "adapter_model.safetensors")),
                                           adapter_name=run_id)
    if result.unexpected_keys:
        raise PlaygroundError(f"The checkpoint in {folder} does not fit the run's LoRA settings "
                              f"(unexpected: {', '.join(result.unexpected_keys[:3])}).")


def save_trained(side: Side, folder: Path, config: TrainConfig, run_id: str) -> Path:
    """Save the adapter (LoRA) or the weights (full) in safetensors, moved into place when complete
    (in place of what a resumed run saved when it stopped)."""
    temporary = folder / runs.SAVING
    target = run_files.weights_folder(folder, config.method)
    with side.weights.use() as model:
        if config.method == "lora":
            model.save_pretrained(str(temporary), selected_adapters=[run_id])
            nested = temporary / run_id  # peft puts a non-default adapter in a subfolder
            saved = nested if nested.is_dir() else temporary
        else:
            model.save_pretrained(str(temporary))
            saved = temporary
    if target.exists():
        old = folder / ".replaced"
        target.rename(old)
        shutil.rmtree(old)
    saved.rename(target)
    shutil.rmtree(temporary, ignore_errors=True)
    return target


def save_checkpoint(side: Side, folder: Path, config: TrainConfig, run_id: str, step: int,
                    state: dict[str, Any]) -> checkpoints.Checkpoint:
    """The weights as `save_trained` keeps them, and the trainer's state, under checkpoints/; pruning
    spares the best scored checkpoint the state names."""
    temporary = checkpoints.temporary_folder(folder, step)
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    save_trained(side, temporary, config, run_id)
    best = state.get("best_checkpoint")
    return checkpoints.finish(temporary, state, step, config.keep_checkpoints, spare=best["step"] if best else None)


def start_run(side: Side, tokenizer: Any, dataset: data.Dataset, splits: data.Splits, config: TrainConfig,
              models_dir: Path, run_id: str) -> runs.RunWriter:
    """Create the run folder with its settings, status and data record."""
    writer = runs.RunWriter(models_dir, run_id, {
        "settings": vars(config), "dataset": dataset.source, "dataset_origin": dataset.origin,
        "dataset_records": len(dataset), "device": str(side.weights.device),
        "dtype": str(next(side.weights.model.parameters()).dtype).replace("torch.", ""),
        "tokenizer": {"name": getattr(tokenizer, "name_or_path", ""), "eos_token": tokenizer.eos_token,
                      "pad_token": tokenizer.pad_token, "vocab_size": len(tokenizer)},
        **({"from_run": dpo.describe_start(models_dir, config)} if config.from_run else {}),
    })
    try:
        runs.write_json(writer.folder / run_data.FILE, run_data.describe(dataset, splits, config.split_seed, models_dir,
                                                                         config.split_order), inside=writer.inside)
    except OSError as exc:
        raise PlaygroundError(f"Cannot keep the run's data record ({exc.strerror or exc}): check that "
                              f"{models_dir} is a folder you can write to.") from None
    return writer


@dataclass
class RunOutput:
    """Where a run's events and checkpoints go: the caller's `on_event`, and the run's folder once it
    is open (on the main process only)."""
    side: Side
    config: TrainConfig
    run_id: str
    on_event: Callable[[Event], None] | None = None
    writer: runs.RunWriter | None = None
    facts: dict[str, Any] = field(default_factory=dict)  # in every status: the last checkpoint's `answer_facts`

    def emit(self, event: Event) -> None:
        writer = self.writer
        if writer is not None and event.kind == "phase":
            writer.status("running", event.values["phase"], step=event.step, total_steps=event.total_steps,
                          **self.facts)
        elif writer is not None:
            writer.log(event.row())
            if event.kind == "step":
                writer.status("running", "training", step=event.step, total_steps=event.total_steps, **self.facts)
        if self.on_event is not None:
            self.on_event(event)

    def keep(self, step: int, state: dict[str, Any]) -> None:
        """A checkpoint in the run's folder; the status names the best one once it is on disk."""
        if self.writer is not None:
            save_checkpoint(self.side, self.writer.folder, self.config, self.run_id, step, state)
            self.facts = answer_facts(self.config, state)


def failure_message(run_id: str, exc: Exception) -> str:
    """What a failed run says; the traceback of an unexpected error goes to the log."""
    if isinstance(exc, PlaygroundError):
        return str(exc)
    if isinstance(exc, torch.OutOfMemoryError):
        return ("Out of memory. Try a smaller batch size or max length, gradient accumulation, or LoRA instead "
                "of a full fine-tune.")
    log.exception("Run %s failed", run_id, exc_info=exc)
    return f"Training failed: {type(exc).__name__}: {exc}"


def end_message(state: str, result: dict[str, Any], folder: Path) -> str:
    """How a run ended; a resumed run's time counts every part of it, and says how much came after Resume."""
    text = f"{state.capitalize()} after {result['steps']} of {result['total_steps']} steps in {result['elapsed']:.0f} s"
    if result.get("resumed_at") is not None:
        text += f" ({result['since_resume']:.0f} s of them since it resumed at step {result['resumed_at']})"
    if result.get("validated_at") not in (None, result["steps"]):
        text += f"; its last validation is that of step {result['validated_at']} (the one at the end was skipped)"
    best = result.get("best_checkpoint")
    if best:
        exact = "n/a" if best["exact_match"] is None else f"{best['exact_match']:.0%}"
        text += (f"; best answers at step {best['step']} (exact match {exact}, ROUGE-L {best['rouge_l']:.3f}; "
                 f"scoring took {result['answer_seconds']:.0f} s in all)")
    return f"{text}; saved in {folder}."


def run_training(side: Side, tokenizer: Any, dataset: data.Dataset, config: TrainConfig, models_dir: Path,
                 run_id: str, on_event: Callable[[Event], None] | None = None,
                 stop: threading.Event | None = None, accelerator: Any = None,
                 resume: checkpoints.Checkpoint | None = None) -> tuple[str, str, dict[str, Any]]:
    """Train and keep the run under models/runs/<run_id>/; return (state, message, result).

    The run folder records everything needed to evaluate and reproduce it, its data and splits
    included (`run_data`), and its checkpoints. With `resume` (a checkpoint of this run, whose
    weights `prepare_model` loaded), the run goes on in its folder from that step: the metric
    rows written after the checkpoint are dropped, so the curve continues. Errors a user can
    cause end the run with a message that says what to try; the caller goes on.
    """
    main = accelerator is None or accelerator.is_main_process
    splits = dataset.splits(seed=config.split_seed, order=config.split_order)
    output = RunOutput(side, config, run_id, on_event)
    runs.ACTIVE.add(run_id)
    result: dict[str, Any] = {}
    try:
        state_at = resume.state() if resume is not None else None
        if main and state_at is not None:
            output.writer = runs.RunWriter.reopen(models_dir, run_id, rows=state_at["rows"], step=state_at["step"])
            output.facts = answer_facts(config, state_at)
        elif main:  # an unwritable runs folder fails here, like any other failure of the run
            output.writer = start_run(side, tokenizer, dataset, splits, config, models_dir, run_id)
        result = train(side, tokenizer, dataset, splits, config, output.emit, stop, accelerator, output.keep, state_at)
        if output.writer is not None:
            output.emit(Event("phase", result["steps"], result["total_steps"], values={"phase": "saving"}))
            save_trained(side, output.writer.folder, config, run_id)
        state = "stopped" if result["stopped"] else "finished"
        message = end_message(state, result, runs.runs_dir(models_dir) / run_id)
    except Exception as exc:  # anything ends the run, never the app
        state, message = "failed", failure_message(run_id, exc)
    finally:
        runs.ACTIVE.discard(run_id)
    if output.writer is not None:
        try:
            output.writer.status(state, message, **{**output.facts, **result})
        except OSError as exc:
            message += f" (its status could not be written in {output.writer.folder}: {exc.strerror or exc})"
    return state, message, result
