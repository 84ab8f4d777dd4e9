"""A run's tuned model as one standalone model: the LoRA adapter merged into a fresh copy of the base,
or the full fine-tune's own weights. The app's shared weights are never touched."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import checkpoints, runs, store
from ..errors import PlaygroundError
from ..generation import stop_ids
from ..model_refs import ModelRef
from ..run_files import SavedWeights


@dataclass
class RunFacts:
    """What an export needs to know about a run, and which of its weights go out."""
    record: runs.RunRecord
    spec: str          # the base model: "default", a hub id or a folder
    style: str
    template: str | None
    weights: SavedWeights      # the run's final weights, or those of one of its checkpoints
    step: int | None = None    # the checkpoint's step; None: the final weights

    @property
    def is_lora(self) -> bool:
        return self.weights.is_adapter

    @property
    def ref(self) -> ModelRef:
        return ModelRef.of_run(self.record.run_id, self.step)

    @property
    def name(self) -> str:
        """How files and models name what is exported: the run, or "RUN-stepN" for a checkpoint."""
        return self.record.run_id + (f"-step{self.step}" if self.step is not None else "")


def run_facts(models_dir: Path, run_id: str, checkpoint: int | str | None = None) -> RunFacts:
    """The run's facts, with its final weights or those of its checkpoint `checkpoint` (a step, or
    "best": the one whose answers scored best while it trained)."""
    record = runs.read(models_dir, run_id)
    if record.state == "running":
        raise PlaygroundError(f"Run {run_id} is still training; export it when it has ended.")
    config = record.config
    if checkpoint is not None:
        step = ModelRef.parse(f"{run_id}@{checkpoint}").resolved(record.status).step
        return RunFacts(record, config.model, config.style, config.template,
                        checkpoints.find(record.folder, step).weights, step)
    if not record.has_weights:
        raise PlaygroundError(f"Run {run_id} has no saved adapter or weights ({record.state}): nothing to export.")
    return RunFacts(record, config.model, config.style, config.template, record.weights)


def merged_model(facts: RunFacts, models_dir: Path) -> Any:
    """The tuned model in float32, as a plain transformers model (no peft layers)."""
    folder = facts.weights.folder
    try:
        if not facts.is_lora:
            return store.load_model(str(folder), models_dir, dtype=torch.float32).eval()
        from peft import PeftModel

        base = store.load_model(facts.spec, models_dir, dtype=torch.float32)
        return PeftModel.from_pretrained(base, str(folder)).merge_and_unload().eval()
    except PlaygroundError:
        raise
    except Exception as exc:
        raise PlaygroundError(f"Could not load the tuned model of {facts.ref.label} "
                              f"({type(exc).__name__}: {exc}).") from None


def stop_tokens(facts: RunFacts, tokenizer: Any) -> list[int]:
    """The tokens that end an answer in the app, for this run's style."""
    return stop_ids(tokenizer, facts.style)
