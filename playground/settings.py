"""Training settings and their named choices, importable without torch.

The command line builds its options from these, the Train tab its form, and a run's config.json
holds them (`TrainConfig.from_dict` reads older runs' files too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from .data import SPLIT_ORDERS
from .errors import PlaygroundError
from .prompts import STYLES

# Which prompt targets are -100 (see batching's docstring).
MASKS = {
    "none": "nothing masked: the prompt is trained too (the book's main chapter)",
    "prompt": "the whole prompt masked, response header included",
    "instruction": "instruction and input masked, the response header trained (the book's exercise 7.2)",
}

# The order of an epoch's training batches.
BATCH_ORDERS = {
    "shuffled": "a seeded shuffle, each epoch its own (optionally grouped by length)",
    "book": "the book's loader: torch.manual_seed(seed), then a DataLoader with shuffle=True, a new pass each epoch",
}


# How the learning rate moves after its linear warmup (each ends at a tenth of the peak, or stays).
LR_SCHEDULES = {
    "linear": "a straight line down, no lower than a tenth of the peak (from 90% of the steps on)",
    "cosine": "half a cosine down to a tenth of the peak at the last step",
    "constant": "the peak until the last step (the book's loop has no schedule)",
}


# What a run minimises.
OBJECTIVES = {
    "sft": "supervised fine-tuning: the next-token loss on the responses",
    "dpo": "direct preference optimization (the book's chapter 7 bonus): preferred over rejected responses",
}


# How messages name a setting: the Train tab's label and the command line's option.
LABELS = {"max_steps": "Max steps", "epochs": "Epochs", "batch_size": "Batch size", "grad_accum": "Gradient accumulation",
          "lr": "Learning rate", "lr_schedule": "Learning-rate schedule", "weight_decay": "Weight decay", "warmup_steps": "Warmup steps",
          "max_length": "Max length", "seed": "Seed", "split_seed": "Split seed", "eval_every": "Validate every N steps",
          "eval_batches": "Validation batches", "probe_every": "Probe answers every N steps",
          "probes": "Probe instructions", "probe_tokens": "Probe tokens", "log_every": "Log every N steps",
          "score_answers_every": "Score answers every N steps", "score_answers_sample": "Answers scored",
          "checkpoint_every": "Checkpoint every N steps", "keep_checkpoints": "Checkpoints kept", "lora_r": "LoRA rank r",
          "lora_alpha": "LoRA alpha", "lora_dropout": "LoRA dropout", "beta": "DPO beta"}


def setting_name(name: str) -> str:
    """'Validate every N steps (--eval-every)': a setting as the Train tab and the command line name it."""
    return f"{LABELS.get(name, name)} (--{name.replace('_', '-')})"


def _finite(value: Any) -> bool:
    """A real, finite number (a bool is not one here); NaN and infinity are refused."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def checked_mask(mask: str) -> str:
    """`mask` when it is a MASKS name; otherwise an error naming the choices."""
    if mask not in MASKS:
        raise PlaygroundError(f"Unknown masking {mask!r}: use one of {', '.join(MASKS)}.")
    return mask


@dataclass
class TrainConfig:
    label: str = ""                  # a name for the run (an experiment's variant), shown beside its id
    model: str = "default"
    method: str = "lora"             # "lora" or "full"
    style: str = "alpaca"
    template: str | None = None      # for the custom style
    mask: str = "none"               # MASKS: "none", "prompt" or "instruction"
    max_length: int | None = 256
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup_steps: int = 5
    lr_schedule: str = "linear"      # LR_SCHEDULES: "linear", "cosine" or "constant", after the warmup
    epochs: float = 1.0
    max_steps: int | None = None     # wins over epochs when set
    seed: int = 123                  # initialisation, batch order, dropout
    split_seed: int = 123            # which records are train, validation and test
    split_order: str = "shuffled"    # data.SPLIT_ORDERS: "shuffled", or "book" (file order)
    batch_order: str = "shuffled"    # BATCH_ORDERS: "shuffled", or "book" (torch's RandomSampler, as the book's loader)
    group_by_length: bool = True
    pack: bool = False               # several samples per row of max length, each attending to itself
    gradient_checkpointing: bool = False  # recompute layers and logits in the backward pass: less memory
    drop_last: bool = False          # leave out the last, smaller training batch of an epoch (the book does)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: str = "all-linear"  # or a comma-separated list of module names
    eval_every: int = 10             # validation loss every N optimizer steps (0: only at the end)
    eval_batches: int = 4            # validation batches per evaluation
    probe_every: int = 10            # probe answers every N steps (0: only before and after)
    probes: int = 3                  # how many validation instructions to probe
    probe_tokens: int = 40
    log_every: int = 1
    score_answers_every: int = 0     # validation answers scored every N steps and at the end (0: off)
    score_answers_sample: int = 16   # how many validation records answer (in blocks of 8)
    checkpoint_every: int = 0        # a checkpoint every N optimizer steps (0: only when stopped)
    keep_checkpoints: int = 0        # the newest N checkpoints are kept, and the best scored one (0: all of them)
    fused_adamw: bool | None = None  # AdamW's fused kernel; None: on CUDA only (it runs on the CPU too)
    ignore_memory_estimate: bool = False  # start even when the memory estimate exceeds the free memory
    objective: str = "sft"           # OBJECTIVES: "sft", or "dpo" on preference pairs
    beta: float = 0.1                # DPO: how far the policy may move from the reference (the book's 0.1)
    from_run: str | None = None      # DPO: the supervised run it starts from, also its reference (None: the base)

    @property
    def run_kind(self) -> str:
        """What a new run's id ends with: "dpo" for preference tuning, else the method (lora, full)."""
        return "dpo" if self.objective == "dpo" else self.method

    def check(self) -> None:
        """Every problem of these settings in one error, or nothing."""
        problems = self._choice_problems() + self._number_problems() + self._objective_problems()
        if problems:
            raise PlaygroundError("Training settings: " + "; ".join(problems) + ".")

    def _choice_problems(self) -> list[str]:
        problems = []
        if self.mask not in MASKS:
            problems.append(f"mask must be one of {', '.join(MASKS)}, not {self.mask!r}")
        if self.split_order not in SPLIT_ORDERS:
            problems.append(f"split order must be one of {', '.join(SPLIT_ORDERS)}")
        if self.batch_order not in BATCH_ORDERS:
            problems.append(f"batch order must be one of {', '.join(BATCH_ORDERS)}, not {self.batch_order!r}")
        elif self.batch_order == "book" and self.group_by_length:
            problems.append("the book's batch order does not group batches by length: turn group by length off")
        if self.lr_schedule not in LR_SCHEDULES:
            problems.append(f"learning-rate schedule must be one of {', '.join(LR_SCHEDULES)}, not {self.lr_schedule!r}")
        if self.method not in ("lora", "full"):
            problems.append(f"method must be 'lora' or 'full', not {self.method!r}")
        if self.style not in STYLES:
            problems.append(f"style must be one of {', '.join(STYLES)}")
        return problems

    def _number_problems(self) -> list[str]:
        problems = [f"{setting_name(name)} must be a finite number, not {value!r}" for name, value in self._numbers()
                    if not _finite(value)]
        if problems:  # the range checks below compare numbers
            return problems
        for name in ("batch_size", "grad_accum", "lora_r", "lora_alpha", "log_every", "eval_batches",
                     "score_answers_sample"):
            if getattr(self, name) < 1:
                problems.append(f"{setting_name(name)} must be at least 1, not {getattr(self, name)}")
        for name in ("checkpoint_every", "keep_checkpoints", "eval_every", "probe_every", "probes", "warmup_steps",
                     "weight_decay", "score_answers_every"):
            if getattr(self, name) < 0:
                problems.append(f"{setting_name(name)} must be 0 or more, not {getattr(self, name)}")
        if self.probe_tokens < 1:
            problems.append("probe tokens must be at least 1")
        if not (0 < self.lr < 1):
            problems.append(f"learning rate {self.lr} must lie between 0 and 1")
        if self.max_steps is None and self.epochs <= 0:
            problems.append("give a positive number of epochs or max steps")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append("max steps must be at least 1")
        if self.max_length is not None and self.max_length < 8:
            problems.append("max length must be at least 8 tokens")
        if not 0 <= self.lora_dropout < 1:
            problems.append("LoRA dropout must lie in [0, 1)")
        return problems

    def _numbers(self) -> list[tuple[str, Any]]:
        """The numeric settings and their values (None where a setting is optional and unset)."""
        numeric = [f.name for f in fields(self) if f.type in ("int", "float", "int | None", "float | None")]
        return [(name, getattr(self, name)) for name in numeric if getattr(self, name) is not None]

    def _objective_problems(self) -> list[str]:
        if self.objective not in OBJECTIVES:
            return [f"objective must be one of {', '.join(OBJECTIVES)}, not {self.objective!r}"]
        problems = []
        if self.objective == "dpo" and not (isinstance(self.beta, (int, float)) and 0 < self.beta < float("inf")):
            problems.append(f"DPO's beta must be a positive number, not {self.beta!r}")
        if self.from_run and self.objective != "dpo":
            problems.append("a run to start from is for DPO only")
        if self.pack and self.objective != "sft":
            problems.append("packing is for supervised runs: a preference pair's two rows are compared whole")
        if self.pack and self.max_length is None:
            problems.append("packing fills rows of the max length: give a max length")
        return problems

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Settings from a form or a run's config.json; a run saved before masks had names holds
        `mask_instruction` (True: the whole prompt was masked) instead of `mask`."""
        values = dict(values)
        if "mask" not in values and "mask_instruction" in values:
            values["mask"] = "prompt" if values["mask_instruction"] else "none"
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


PRESETS: dict[str, dict[str, Any]] = {
    # About 2 minutes of training on 2 idle CPU cores with the default model (bf16; about 5 in float32):
    # the best schedule measured by bench/quality_per_minute.py, 240 steps at 3e-4 with a cosine decay
    # (58.6% exact match on the single-answer test records at 5 minutes, 0% before training; every other
    # lever measured landed within 53-58%, about one binomial standard error apart, bench/RESULTS.md).
    # Probes and validation add about half a minute; scoring 16 validation answers every 60 steps cost 9%
    # of the training steps' time (docs/command-line.md).
    "Quick CPU demo": dict(method="lora", max_steps=240, batch_size=4, lr=3e-4, lr_schedule="cosine",
                           max_length=128, warmup_steps=3, mask="prompt", eval_every=20, eval_batches=2,
                           probe_every=80, probes=3, probe_tokens=32, lora_r=16, lora_alpha=32, lora_dropout=0.0,
                           checkpoint_every=60, score_answers_every=60),
    # The book's workload: 2 epochs over the training split.
    "GPU": dict(method="lora", max_steps=None, epochs=2, batch_size=8, lr=2e-4, max_length=512, warmup_steps=10,
                mask="none", eval_every=25, eval_batches=8, probe_every=50, probes=3, probe_tokens=64,
                lora_r=16, lora_alpha=32, lora_dropout=0.05, checkpoint_every=50),
    # The book's chapter 7 settings (gpt_instruction_finetuning.py): a full fine-tune, AdamW at 5e-5
    # with weight decay 0.1, 2 epochs of batches of 8 in the order of the book's DataLoader (torch's
    # RandomSampler after torch.manual_seed(123)) with the last partial batch dropped, the data
    # sliced in file order, nothing masked, at most 1024 tokens; validation loss on 5 batches every
    # 5 steps. The learning rate still warms up and decays (the book's is constant). Answers scored every
    # 50 steps, each scoring keeping a checkpoint: a full fine-tune's takes several GB, so only the newest
    # and the best are kept.
    "The book (full fine-tune)": dict(
        method="full", max_steps=None, epochs=2, batch_size=8, lr=5e-5, weight_decay=0.1, max_length=1024,
        warmup_steps=1, mask="none", split_order="book", batch_order="book", drop_last=True, group_by_length=False,
        eval_every=5, eval_batches=5, probe_every=50, probes=1, probe_tokens=35, score_answers_every=50,
        keep_checkpoints=1),
    # Exercise 7.4: the same with LoRA of rank 16 and alpha 16 on the linear layers (peft scales the
    # update by alpha / rank; the book's LoRALayer multiplies by alpha alone).
    "The book, exercise 7.4 (LoRA)": dict(
        method="lora", max_steps=None, epochs=2, batch_size=8, lr=5e-5, weight_decay=0.1, max_length=1024,
        warmup_steps=1, mask="none", split_order="book", batch_order="book", drop_last=True, group_by_length=False,
        eval_every=5, eval_batches=5, probe_every=50, probes=1, probe_tokens=35,
        lora_r=16, lora_alpha=16, lora_dropout=0.0, checkpoint_every=50, score_answers_every=50),
    # DPO on preference pairs, from a finished run (--from-run, whose method, model and LoRA shape it
    # takes) or the base model. The book's settings (ch07/04_preference-tuning-with-dpo): beta 0.1,
    # AdamW at 5e-6 with weight decay 0.01, one epoch of batches of 8 in the book's loader order with
    # the last partial batch dropped, the data sliced in file order, the prompt masked but for the
    # response header (the book keeps "### Response:" scored), no dropout; validation on 5 batches
    # every 5 steps. The book's learning rate is constant; here it still warms up and decays.
    "The book, DPO": dict(
        objective="dpo", beta=0.1, max_steps=None, epochs=1, batch_size=8, lr=5e-6, weight_decay=0.01,
        max_length=1024, warmup_steps=1, mask="instruction", split_order="book", batch_order="book", drop_last=True,
        group_by_length=False, eval_every=5, eval_batches=5, probe_every=50, probes=1, probe_tokens=35,
        lora_dropout=0.0, checkpoint_every=50),
    # A DPO run of about two minutes on 2 CPU cores with the default model (119 s of training on 2
    # pinned cores of a Xeon), from a "Quick CPU demo" run, on the bundled records paired with wrong
    # answers (--data builtin-pairs): the validation reward margin rose 0, 0.79, 1.47, 2.03, 2.49,
    # 2.84, 2.99 every 10 steps, the chosen reward staying near 0 (at 1e-4 the margin rose faster
    # but the chosen responses' log-probabilities fell by 4 to 6 nats).
    "Quick CPU preference demo": dict(
        objective="dpo", beta=0.1, max_steps=60, batch_size=4, lr=2e-5, max_length=128, warmup_steps=2,
        mask="prompt", eval_every=10, eval_batches=2, probe_every=0, probes=2, probe_tokens=24, lora_dropout=0.0,
        checkpoint_every=30),
}


# The preset the Train tab picks for an objective: the one that shows learning within minutes on a CPU.
FIRST_PRESET = {"sft": "Quick CPU demo", "dpo": "Quick CPU preference demo"}


def presets_for(objective: str) -> list[str]:
    """The names of the presets of one objective ("sft" or "dpo")."""
    return [name for name, values in PRESETS.items() if values.get("objective", "sft") == objective]
