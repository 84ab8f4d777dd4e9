"""Short supervised fine-tunes (LoRA or full) with live events, validation, probes and Stop.

`train()` is the one training loop. The app runs it on a background thread owned by the model
manager; the command line runs it in the foreground, optionally under `accelerate launch` for
several GPUs. Batches come from `batching.collate`, the function the Batch tab shows.
"""

from __future__ import annotations

import math
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from . import batching, checkpoints, data, generation, prompts, run_data, runs, store
from .errors import PlaygroundError
from .generation import GenerationSettings, Side
from .modeling import CausalLMLoss
from .settings import PRESETS, TrainConfig  # noqa: F401 (PRESETS re-exported: tests and benches read it here)
from .weights import Weights


@dataclass
class Event:
    """One thing that happened in a run; the UI and the command line read these."""
    kind: str                # "start", "resume", "phase", "step", "eval", "probe", "end"
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


def batches_per_epoch(config: TrainConfig, train_size: int) -> int:
    """Training batches in one epoch: the last, smaller one is left out with drop_last."""
    return train_size // config.batch_size if config.drop_last else math.ceil(train_size / config.batch_size)


def total_steps_for(config: TrainConfig, train_size: int) -> int:
    per_epoch = math.ceil(batches_per_epoch(config, train_size) / config.grad_accum)
    if config.max_steps:
        return config.max_steps
    return max(1, math.ceil(per_epoch * config.epochs))


def train(side: Side, tokenizer: Any, dataset: data.Dataset, splits: data.Splits, config: TrainConfig,
          emit: Callable[[Event], None], stop: threading.Event | None = None,
          accelerator: Any = None, checkpoint: Callable[[int, dict[str, Any]], None] | None = None,
          resume: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fine-tune the side's weights in place (their trainable parameters) and return the final figures.

    Every step, evaluation and probe takes the weights through `Weights.use()`, so generation from
    another thread happens only between steps and never changes the mode a step runs in. `stop`
    ends the run after the current optimizer step. `checkpoint(step, state)` keeps the trainer's
    state every `config.checkpoint_every` steps and when stopped; `resume` is such a state, from
    which the run goes on as if it had never stopped (the side's weights already those of the
    checkpoint).
    """
    config.check()
    stop = stop or threading.Event()
    weights = side.weights
    torch.manual_seed(config.seed)
    if not splits.train:
        raise PlaygroundError("The training split is empty: the dataset needs more records.")
    if batches_per_epoch(config, len(splits.train)) == 0:
        raise PlaygroundError(f"The training split has {len(splits.train)} records, fewer than one batch of "
                              f"{config.batch_size}, and drop_last leaves that batch out: lower the batch size.")
    encode = lambda indices: batching.encode_all(dataset.records, config.style, tokenizer, config.template, indices)
    train_samples, val_samples = encode(splits.train), encode(splits.validation)
    _, pad_id = batching.special_ids(tokenizer)
    collate = lambda samples: batching.collate(samples, pad_id, config.max_length, config.mask)

    loss_module = CausalLMLoss(weights.model)
    trainable = [p for p in weights.model.parameters() if p.requires_grad]
    if not trainable:
        raise PlaygroundError("The model has no trainable parameters.")
    device = weights.device
    fused = device.type == "cuda" if config.fused_adamw is None else config.fused_adamw
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    total = total_steps_for(config, len(train_samples))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / max(1, config.warmup_steps)) * max(0.1, 1 - s / max(1, total)))
    if accelerator is not None:
        loss_module, optimizer = accelerator.prepare(loss_module, optimizer)
        device = accelerator.device
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    probes = probe_records(dataset, splits, config.probes)
    started = time.monotonic()
    per_epoch = math.ceil(batches_per_epoch(config, len(train_samples)) / config.grad_accum)
    rows = 0  # events logged as metric rows; a checkpoint keeps the count so a resumed run drops later ones

    def event(kind: str, step: int, **values: Any) -> None:
        nonlocal rows
        rows += kind != "phase"
        emit(Event(kind, step, total, step / per_epoch, time.monotonic() - started, values))

    def phase(name: str, step: int) -> None:
        """What the run does now (probing, validating, training), for a progress line that says so."""
        event("phase", step, phase=name)

    def evaluate(step: int) -> float | None:
        if not val_samples:
            return None
        phase("validating", step)
        order = batching.batch_order([len(s.ids) for s in val_samples], config.batch_size, seed=0)
        loss_sum, count = 0.0, 0
        with weights.use(adapter=side.adapter), torch.no_grad():
            for indices in order[:config.eval_batches]:
                batch = collate([val_samples[i] for i in indices])
                loss, n = loss_module(batch.inputs.to(device), batch.targets.to(device))
                loss_sum, count = loss_sum + float(loss), count + int(n)
        return loss_sum / count if count else None

    def probe(step: int) -> None:
        if not probes or rank != 0:
            return
        phase("probing", step)
        rendered = [prompts.render(record, config.style, tokenizer, config.template) for record in probes]
        answers = generation.generate([(side, r.inference) for r in rendered], tokenizer, config.style,
                                      GenerationSettings(max_new_tokens=config.probe_tokens))
        event("probe", step, probes=[{"instruction": record.instruction, "input": record.input,
                                      "reference": record.output, "answer": answer}
                                     for record, answer in zip(probes, answers)])

    def trainer_state(step: int, epoch: int, position: int) -> dict[str, Any]:
        """What a checkpoint keeps besides the weights; `position` is the epoch's next batch."""
        return {"step": step, "epoch": epoch, "position": position, "total_steps": total, "rows": rows,
                "elapsed": time.monotonic() - started, "first_val_loss": first_val, "train_loss": last_train_loss,
                "trained_tokens": trained_tokens,
                "optimizer": optimizer.state_dict(), "scheduler": schedule.state_dict(),
                "rng": torch.get_rng_state()}

    def keep(step: int, epoch: int, position: int) -> None:
        if checkpoint is not None and step > 0:
            phase("saving a checkpoint", step)
            checkpoint(step, trainer_state(step, epoch, position))

    step, micro, epoch, start_at = 0, 0, 0, 0
    last_train_loss, stopped_by_user, trained_tokens = None, False, 0  # targets trained on so far, all processes
    if resume is None:
        event("start", 0, total_steps=total, train_examples=len(train_samples),
              validation_examples=len(val_samples), trainable_parameters=sum(p.numel() for p in trainable))
        probe(0)
        first_val = evaluate(0)
        event("eval", 0, val_loss=first_val)
    else:
        step, epoch, start_at, rows = resume["step"], resume["epoch"], resume["position"], resume["rows"]
        micro = step * config.grad_accum
        first_val, last_train_loss = resume["first_val_loss"], resume["train_loss"]
        trained_tokens = resume.get("trained_tokens", 0)
        optimizer.load_state_dict(resume["optimizer"])
        schedule.load_state_dict(resume["scheduler"])
        torch.set_rng_state(resume["rng"])
        started -= resume["elapsed"]  # the curve against wall time goes on from where it stopped
        event("resume", step, from_step=step)
    phase("training", step)
    position = start_at
    # trained tokens, real input tokens and compute time since the last log line
    window_tokens, window_inputs, window_seconds = 0, 0, 0.0
    try:
        while step < total:
            order = batching.batch_order([len(s.ids) for s in train_samples], config.batch_size, config.seed,
                                         config.group_by_length, config.drop_last, config.batch_order, epoch)
            order = order[rank::world]  # each process its own share of the batches
            for position in range(start_at, len(order)):
                if micro % config.grad_accum == 0 and stop.is_set():  # only between optimizer steps
                    raise StopTraining
                batch = collate([train_samples[i] for i in order[position]])
                step_started = time.monotonic()
                with weights.use(train=True, adapter=side.adapter):
                    loss_sum, count = loss_module(batch.inputs.to(device), batch.targets.to(device))
                    loss = loss_sum / count.clamp(min=1)
                    value = loss.detach().item()
                    if not math.isfinite(value):
                        raise PlaygroundError(
                            f"The loss became {value} at step {step + 1}: training diverged. Lower the "
                            "learning rate (for example by 10x), or check the data for empty answers.")
                    (accelerator.backward if accelerator else torch.Tensor.backward)(loss / config.grad_accum)
                    micro += 1
                    window_tokens += int(count)
                    trained_tokens += int(count) * world
                    window_inputs += batch.real_tokens
                    if micro % config.grad_accum == 0:
                        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                        optimizer.step()
                        schedule.step()
                        optimizer.zero_grad(set_to_none=True)
                window_seconds += time.monotonic() - step_started
                if micro % config.grad_accum:
                    continue
                step += 1
                last_train_loss = value
                if step % config.log_every == 0 or step == total:
                    event("step", step, train_loss=round(value, 4), lr=schedule.get_last_lr()[0],
                          trained_tokens=trained_tokens,
                          tokens_per_s=round(window_tokens * world / max(window_seconds, 1e-9), 1),
                          input_tokens_per_s=round(window_inputs * world / max(window_seconds, 1e-9), 1))
                    window_tokens, window_inputs, window_seconds = 0, 0, 0.0
                validate_now = config.eval_every and step % config.eval_every == 0 and step < total
                probe_now = config.probe_every and step % config.probe_every == 0 and step < total
                if validate_now:
                    event("eval", step, val_loss=evaluate(step))
                if probe_now:
                    probe(step)
                if config.checkpoint_every and step % config.checkpoint_every == 0 and step < total:
                    keep(step, epoch, position + 1)
                    phase("training", step)
                elif validate_now or probe_now:
                    phase("training", step)
                if step >= total:
                    break
            epoch, start_at, position = epoch + 1, 0, 0
    except StopTraining:
        stopped_by_user = True
        keep(step, epoch, position)
    final_val = evaluate(step)
    event("eval", step, val_loss=final_val)
    probe(step)
    return {"steps": step, "total_steps": total, "stopped": stopped_by_user, "train_loss": last_train_loss,
            "val_loss": final_val, "first_val_loss": first_val, "elapsed": time.monotonic() - started}


def prepare_model(weights: Weights, config: TrainConfig, run_id: str, models_dir: Path, dtype: Any,
                  device: Any, resume: checkpoints.Checkpoint | None = None) -> Side:
    """What a run trains: a new LoRA adapter on the shared weights, or a fresh copy for a full
    fine-tune; with `resume`, the weights of that checkpoint.

    LoRA weights train in float32 whatever the frozen base's dtype. A full fine-tune keeps float32
    weights off the GPU, where bf16 updates of small learning rates would round away.
    """
    torch.manual_seed(config.seed)  # the adapter's initial weights, so that a run can be reproduced
    if config.method == "lora":
        weights.remove_adapter(run_id)  # a resumed run's adapter, loaded earlier to chat with
        try:
            model = weights.add_trainable_adapter(run_id, lora_config(config))
        except ValueError as exc:  # e.g. target modules that do not exist in this model
            raise PlaygroundError(f"LoRA settings: {exc}") from None
        for parameter in model.parameters():
            if parameter.requires_grad and parameter.dtype != torch.float32:
                parameter.data = parameter.data.float()
        if resume is not None:
            load_adapter_weights(weights, run_id, resume.weights)
        return Side("tuned", weights, run_id)
    source = str(resume.weights) if resume is not None else config.model
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
    target = folder / ("adapter" if config.method == "lora" else "weights")
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
    """The weights as `save_trained` keeps them, and the trainer's state, under checkpoints/."""
    temporary = checkpoints.temporary_folder(folder, step)
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    save_trained(side, temporary, config, run_id)
    return checkpoints.finish(temporary, state, step, config.keep_checkpoints)


def start_run(side: Side, tokenizer: Any, dataset: data.Dataset, splits: data.Splits, config: TrainConfig,
              models_dir: Path, run_id: str) -> runs.RunWriter:
    """Create the run folder with its settings, status and data record."""
    writer = runs.RunWriter(models_dir, run_id, {
        "settings": vars(config), "dataset": dataset.source, "dataset_origin": dataset.origin,
        "dataset_records": len(dataset), "device": str(side.weights.device),
        "dtype": str(next(side.weights.model.parameters()).dtype).replace("torch.", ""),
        "tokenizer": {"name": getattr(tokenizer, "name_or_path", ""), "eos_token": tokenizer.eos_token,
                      "pad_token": tokenizer.pad_token, "vocab_size": len(tokenizer)},
    })
    try:
        runs.write_json(writer.folder / run_data.FILE, run_data.describe(dataset, splits, config.split_seed, models_dir,
                                                                         config.split_order))
    except OSError as exc:
        raise PlaygroundError(f"Cannot keep the run's data record ({exc.strerror or exc}): check that "
                              f"{models_dir} is a folder you can write to.") from None
    return writer


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
    writer = None
    state_at = None

    def keep(step: int, state: dict[str, Any]) -> None:
        if writer is not None:
            save_checkpoint(side, writer.folder, config, run_id, step, state)

    def emit(event: Event) -> None:
        if writer is not None and event.kind == "phase":
            writer.status("running", event.values["phase"], step=event.step, total_steps=event.total_steps)
        elif writer is not None:
            writer.log(event.row())
            if event.kind == "step":
                writer.status("running", "training", step=event.step, total_steps=event.total_steps)
        if on_event is not None:
            on_event(event)

    runs.ACTIVE.add(run_id)
    result: dict[str, Any] = {}
    try:
        if resume is not None:
            state_at = resume.state()
        if main and resume is not None:
            writer = runs.RunWriter.reopen(models_dir, run_id, rows=state_at["rows"], step=state_at["step"])
        elif main:  # an unwritable runs folder fails here, like any other failure of the run
            writer = start_run(side, tokenizer, dataset, splits, config, models_dir, run_id)
        result = train(side, tokenizer, dataset, splits, config, emit, stop, accelerator, keep, state_at)
        if writer is not None:
            emit(Event("phase", result["steps"], result["total_steps"], values={"phase": "saving"}))
            save_trained(side, writer.folder, config, run_id)
        state = "stopped" if result["stopped"] else "finished"
        message = (f"{state.capitalize()} after {result['steps']} of {result['total_steps']} steps in "
                   f"{result['elapsed']:.0f} s; saved in {runs.runs_dir(models_dir) / run_id}.")
    except PlaygroundError as exc:
        state, message = "failed", str(exc)
    except torch.OutOfMemoryError:
        state, message = "failed", ("Out of memory. Try a smaller batch size or max length, gradient "
                                    "accumulation, or LoRA instead of a full fine-tune.")
    except Exception as exc:  # anything else ends the run, never the app
        state, message = "failed", f"Training failed: {type(exc).__name__}: {exc}"
    finally:
        runs.ACTIVE.discard(run_id)
    if writer is not None:
        try:
            writer.status(state, message, **result)
        except OSError as exc:
            message += f" (its status could not be written in {writer.folder}: {exc.strerror or exc})"
    return state, message, result
