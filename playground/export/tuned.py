"""A run's tuned model as one standalone model: the LoRA adapter merged into a fresh copy of the base,
or the full fine-tune's own weights. The app's shared weights are never touched."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import runs, store
from ..errors import PlaygroundError
from ..generation import stop_ids


@dataclass
class RunFacts:
    """What an export needs to know about a run."""
    record: runs.RunRecord
    spec: str          # the base model: "default", a hub id or a folder
    style: str
    template: str | None

    @property
    def is_lora(self) -> bool:
        return self.record.weights.is_adapter


def run_facts(models_dir: Path, run_id: str) -> RunFacts:
    record = runs.read(models_dir, run_id)
    if record.state == "running":
        raise PlaygroundError(f"Run {run_id} is still training; export it when it has ended.")
    if not record.has_weights:
        raise PlaygroundError(f"Run {run_id} has no saved adapter or weights ({record.state}): nothing to export.")
    config = record.config
    return RunFacts(record, config.model, config.style, config.template)


def merged_model(facts: RunFacts, models_dir: Path) -> Any:
    """The tuned model in float32, as a plain transformers model (no peft layers)."""
    folder = facts.record.weights.folder
    try:
        if not facts.is_lora:
            return store.load_model(str(folder), models_dir, dtype=torch.float32).eval()
        from peft import PeftModel

        base = store.load_model(facts.spec, models_dir, dtype=torch.float32)
        return PeftModel.from_pretrained(base, str(folder)).merge_and_unload().eval()
    except PlaygroundError:
        raise
    except Exception as exc:
        raise PlaygroundError(f"Could not load the tuned model of run {facts.record.run_id} "
                              f"({type(exc).__name__}: {exc}).") from None


def stop_tokens(facts: RunFacts, tokenizer: Any) -> list[int]:
    """The tokens that end an answer in the app, for this run's style."""
    return stop_ids(tokenizer, facts.style)
