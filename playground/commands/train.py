"""`train`: one run in the foreground, one JSON line per logged step; `--resume` goes on with a run,
`--estimate` only says what the settings would cost. Under `accelerate launch` each process trains
its share of the batches."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .. import data, data_checks, prompts, runs, store
from ..settings import LR_SCHEDULES, PRESETS, TrainConfig
from .options import (add_batch_order, add_file_options, add_mask, add_skip_bad_rows, load_dataset,
                      SPLIT_ORDER_HELP)

# Options that set a TrainConfig field of the same name when given (None: the preset's or the default).
OVERRIDES = ("model", "style", "template", "batch_size", "lr", "lr_schedule", "warmup_steps", "weight_decay",
             "max_length", "grad_accum", "seed", "split_seed", "split_order", "batch_order", "mask", "drop_last",
             "group_by_length", "pack", "gradient_checkpointing", "eval_every", "target_modules",
             "checkpoint_every", "keep_checkpoints", "probe_every", "probes", "score_answers_every",
             "score_answers_sample", "beta", "from_run", "lora_r", "lora_alpha", "ignore_memory_estimate")
METHODS = {"lora": "a LoRA adapter", "full": "a full fine-tune",
           "dpo": "DPO on preference pairs, by the method of --from-run (or the preset's, on the base model)"}


def train(args: argparse.Namespace) -> int:
    if args.resume:
        return resume(args)
    config = settings_from(args)
    if args.out:
        print("warning: --out is deprecated; use --models-dir", file=sys.stderr)
        args.models_dir = args.out
    dataset = load_dataset(args.data, args)
    if args.estimate:
        return print_estimate(args, dataset, config)
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=args.device == "cpu")
    run_id = runs.new_run_id(args.models_dir, config.run_kind) if accelerator.is_main_process else "worker"
    return train_in_foreground(args, accelerator, dataset, config, broadcast_text(accelerator, run_id))


def settings_from(args: argparse.Namespace) -> TrainConfig:
    """The preset's settings (or the defaults) with every option given on the command line, checked.

    `--method dpo` sets the DPO objective; a DPO run from another run takes that run's model, method,
    prompt style and LoRA shape (`dpo.settings_from_run`), and masks the prompt unless told otherwise."""
    config = TrainConfig(**PRESETS[args.preset]) if args.preset else TrainConfig()
    for name in OVERRIDES:
        if getattr(args, name) is not None:
            setattr(config, name, getattr(args, name))
    if args.method == "dpo":
        config.objective = "dpo"
    elif args.method is not None:
        config.method = args.method
    if config.objective == "dpo" and args.mask is None and not (args.preset and "mask" in PRESETS[args.preset]):
        config.mask = "prompt"  # the book scores the responses only
    if args.max_steps is not None or args.epochs is not None:
        config.max_steps, config.epochs = args.max_steps, args.epochs or 1.0
    if config.from_run:
        from ..dpo import settings_from_run

        config.check()
        config = settings_from_run(config, args.models_dir)
    config.check()
    return config


def resume(args: argparse.Namespace) -> int:
    """`train --resume RUN`: the run goes on from its latest checkpoint with its own settings and data."""
    from accelerate import Accelerator

    from .. import run_data
    from ..manager import resume_checkpoint

    record = runs.read(args.models_dir, args.resume)
    checkpoint = resume_checkpoint(record)
    found = run_data.load(args.models_dir, record)
    if found.note:
        print(f"note: {found.note}", file=sys.stderr)
    print(f"resuming {args.resume} at step {checkpoint.step} with its own settings and data", file=sys.stderr)
    return train_in_foreground(args, Accelerator(cpu=args.device == "cpu"), found.dataset,
                               record.config, record.run_id, checkpoint)


def train_in_foreground(args: argparse.Namespace, accelerator: Any, dataset: data.Dataset, config: TrainConfig,
                        run_id: str, resume_from: Any = None) -> int:
    from .. import training
    from ..modeling import pick_dtype
    from ..weights import Weights

    dtype = pick_dtype(accelerator.device, args.dtype, store.model_type(config.model, args.models_dir))
    tokenizer = store.load_tokenizer(config.model, args.models_dir)
    base = Weights(store.load_model(config.model, args.models_dir, dtype=dtype).to(accelerator.device))
    training.refuse_before_start(base.model, tokenizer, dataset, config, accelerator.device)
    side = training.prepare_model(base, config, run_id, args.models_dir, dtype, accelerator.device, resume_from)
    on_event = (lambda event: print_event(event, args.show_probes)) if accelerator.is_main_process else None
    state, message, _ = training.run_training(side, tokenizer, dataset, config, args.models_dir, run_id,
                                              on_event=on_event, accelerator=accelerator, resume=resume_from)
    if accelerator.is_main_process:
        print(f"error: {message}" if state == "failed" else message, file=sys.stderr)
        if (runs.runs_dir(args.models_dir) / run_id).is_dir():
            print(runs.runs_dir(args.models_dir) / run_id)
    return 0 if state in ("finished", "stopped") else 2


def print_event(event: Any, show_probes: bool) -> None:
    """A training event as JSON lines on stdout: steps (with DPO's rewards), validations, answer scores
    and, when asked, probe answers."""
    if event.kind == "step":
        rewards = {k: v for k, v in event.values.items() if "reward" in k}
        print(json.dumps({"step": event.step, "train_loss": event.values["train_loss"], **rewards,
                          "tokens_per_s": event.values["tokens_per_s"]}), flush=True)
    elif event.kind == "eval" and event.values.get("val_loss") is not None:
        figures = {k: v for k, v in event.values.items() if k != "val_loss" and v is not None}
        print(json.dumps({"step": event.step, "val_loss": round(event.values["val_loss"], 4), **figures}), flush=True)
    elif event.kind == "answers":
        print(json.dumps(answers_line(event)), flush=True)
    elif event.kind == "probe" and show_probes:
        for probe in event.values["probes"]:
            print(json.dumps({"step": event.step, "probe": probe["instruction"], "answer": probe["answer"]}),
                  flush=True)


def answers_line(event: Any) -> dict[str, Any]:
    """An "answers" event's JSON line: the scores, how many answers, the seconds and the best step so far."""
    values = event.values
    exact, best = values["val_exact_match"], values["best_checkpoint"]
    return {"step": event.step, "val_exact_match": None if exact is None else round(exact, 4),
            "val_rouge_l": round(values["val_rouge_l"], 4), "answers": values["examples"],
            "answers_s": values["seconds"], "best_step": best["step"] if best else None}


def print_estimate(args: argparse.Namespace, dataset: data.Dataset, config: TrainConfig) -> int:
    """`train --estimate`: memory, time and the data's problems for these settings; nothing is trained."""
    from .. import estimate
    from ..manager import ModelManager
    manager = ModelManager(args.models_dir, device=args.device, dtype=args.dtype)
    splits = dataset.splits(seed=config.split_seed, order=config.split_order)
    print(estimate.describe(estimate.for_settings(manager, dataset, config, splits.train)))
    report = data_checks.check(dataset, manager.tokenizer(config.model), data_checks.CheckSettings.for_training(config))
    problems = report.problems()
    print(f"Data check: {len(problems)} kind{'s' * (len(problems) != 1)} of problem with these settings.")
    for finding in problems:
        print(f"  {finding.title}: {finding.count:,} ({finding.advice})")
    return 0


def broadcast_text(accelerator: Any, text: str) -> str:
    """The main process's run id for every process (they share one run folder)."""
    from accelerate.utils import broadcast_object_list

    if getattr(accelerator, "num_processes", 1) == 1:
        return text
    values = [text]
    broadcast_object_list(values, from_process=0)
    return values[0]


def add_parser(commands: Any) -> None:
    train_parser = commands.add_parser("train", help="fine-tune a model; one JSON line per logged step")
    train_parser.add_argument("--data", default="builtin", help="dataset file, URL, hub id, or 'builtin'")
    add_file_options(train_parser)
    add_skip_bad_rows(train_parser)
    add_setting_options(train_parser)
    add_run_options(train_parser)
    train_parser.set_defaults(func=train)


def add_setting_options(parser: argparse.ArgumentParser) -> None:
    """The training settings; each one not given is the preset's (or TrainConfig's default)."""
    parser.add_argument("--model", help="'default', a Hugging Face id or a folder")
    parser.add_argument("--method", choices=list(METHODS),
                        help="; ".join(f"{name}: {what}" for name, what in METHODS.items()))
    parser.add_argument("--from-run", metavar="RUN",
                        help="DPO: the finished run to start from, also the frozen reference (default: the base model)")
    parser.add_argument("--beta", type=float,
                        help=f"DPO: how far the policy may move from the reference (default {TrainConfig.beta})")
    parser.add_argument("--preset", choices=list(PRESETS), help="start from a preset's settings")
    steps = parser.add_mutually_exclusive_group()
    steps.add_argument("--max-steps", type=int)
    steps.add_argument("--epochs", type=float)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--grad-accum", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--lr-schedule", choices=list(LR_SCHEDULES),
                        help="after the warmup: " + "; ".join(f"{name}: {what}" for name, what in LR_SCHEDULES.items()))
    parser.add_argument("--warmup-steps", type=int, help="steps of linear warmup (default: the preset's)")
    parser.add_argument("--weight-decay", type=float, help="AdamW's weight decay (default: the preset's)")
    parser.add_argument("--max-length", type=int)
    parser.add_argument("--style", choices=list(prompts.STYLES))
    parser.add_argument("--template", help="custom template with {instruction}, {input}, {output}")
    add_mask(parser, None, " (default: the preset's choice)")
    add_batch_order(parser, None, " (default: the preset's choice)")
    parser.add_argument("--drop-last", action=argparse.BooleanOptionalAction,
                        help="leave out the last, smaller training batch of each epoch, as the book does")
    parser.add_argument("--group-by-length", action=argparse.BooleanOptionalAction,
                        help="batch samples of similar length together (default: the preset's choice)")
    parser.add_argument("--pack", action=argparse.BooleanOptionalAction,
                        help="pack several samples into each row of --max-length tokens, each with position ids "
                             "from 0 and attending only to itself (supervised runs; the batch size counts rows)")
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction,
                        help="keep less for the backward pass: each layer's activations and the LM head's logits "
                             "are computed again there (about a third more compute; see the estimate)")
    parser.add_argument("--seed", type=int, help="initialisation and batch order seed")
    parser.add_argument("--split-seed", type=int,
                        help=f"which records are train, validation and test (default {TrainConfig.split_seed})")
    parser.add_argument("--split-order", choices=list(data.SPLIT_ORDERS),
                        help=SPLIT_ORDER_HELP + " (default: the preset's choice)")
    parser.add_argument("--eval-every", type=int)
    parser.add_argument("--checkpoint-every", type=int,
                        help="keep a checkpoint every N steps (0: only when stopped; default: the preset's)")
    parser.add_argument("--keep-checkpoints", type=int, help="keep the newest N checkpoints (0: all)")
    parser.add_argument("--probe-every", type=int)
    parser.add_argument("--probes", type=int)
    parser.add_argument("--score-answers-every", type=int, metavar="N",
                        help="every N steps and at the end, score the answers to a sample of the validation split "
                             "(exact match, ROUGE-L) and keep a checkpoint; the best is kept and named RUN@best "
                             "(0: off; default: the preset's)")
    parser.add_argument("--score-answers-sample", type=int, metavar="N",
                        help=f"how many validation records answer (default {TrainConfig.score_answers_sample})")
    parser.add_argument("--lora-r", type=int, help="LoRA rank (default: the preset's)")
    parser.add_argument("--lora-alpha", type=int, help="LoRA alpha (default: the preset's)")
    parser.add_argument("--target-modules", help="LoRA: 'all-linear' or module names, comma-separated (for example "
                                                 "q_proj,k_proj,v_proj,o_proj: attention only)")
    parser.add_argument("--ignore-memory-estimate", action="store_true", default=None,
                        help="start even when the memory estimate is more than the free memory")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Where and how the run trains, and what it prints."""
    parser.add_argument("--resume", metavar="RUN",
                        help="go on with a stopped or interrupted run from its latest checkpoint, with its own "
                             "settings and data (the other settings are ignored)")
    parser.add_argument("--show-probes", action="store_true", help="print the probe answers too")
    parser.add_argument("--device", choices=["auto", "cpu"], default="auto")
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto")
    parser.add_argument("--models-dir", type=Path, default=store.MODELS_DIR,
                        help="model store; the run goes in MODELS_DIR/runs/")
    parser.add_argument("--estimate", action="store_true",
                        help="print the memory and time estimate and the data check for these settings; train nothing")
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)  # the old name of --models-dir
