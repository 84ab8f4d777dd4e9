"""Exercises in one click: several variants of the same settings trained one after another.

Each variant is an ordinary run on the same data, split and seeds, differing only in what the variant
changes (the book's chapter 7 exercises: the Phi-3 prompt style, masking the instruction, LoRA), so
the Compare tab can set their curves and figures side by side.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import PlaygroundError
from .settings import TrainConfig

VARIANTS: dict[str, dict[str, Any]] = {
    "the settings above": {},
    "exercise 7.1: the Phi-3 prompt style": {"style": "phi3"},
    "exercise 7.2: mask the instruction and input": {"mask": "instruction"},
    "mask the whole prompt": {"mask": "prompt"},
    "nothing masked": {"mask": "none"},
    "exercise 7.4: LoRA, rank 16, alpha 16": {"method": "lora", "lora_r": 16, "lora_alpha": 16},
    "full fine-tune": {"method": "full"},
}


def variant_configs(base: TrainConfig, names: list[str]) -> list[tuple[str, TrainConfig]]:
    """(name, settings) of each variant of `base`, all checked before any of them runs."""
    if not names:
        raise PlaygroundError("Tick at least one variant to run.")
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise PlaygroundError(f"Unknown variant {unknown[0]!r}: choose from {', '.join(VARIANTS)}.")
    variants = []
    for name in dict.fromkeys(names):
        config = TrainConfig.from_dict({**asdict(base), **VARIANTS[name], "label": name})
        try:
            config.check()
        except PlaygroundError as exc:
            raise PlaygroundError(f"Variant '{name}': {exc}") from None
        variants.append((name, config))
    return variants


@dataclass
class Experiment:
    variants: list[tuple[str, TrainConfig]]
    run_ids: list[str | None] = field(default_factory=list)  # per variant started; None: it could not start
    outcomes: list[str] = field(default_factory=list)  # per variant ended: its run's state, or why it did not start
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


def run(manager: Any, dataset: Any, experiment: Experiment) -> None:
    """The experiment's thread: each variant as a run of the manager, the next when one has ended."""
    for name, config in experiment.variants:
        if experiment.stop.is_set():
            break
        try:
            job = manager.start_training(dataset, config)
        except PlaygroundError as exc:
            experiment.run_ids.append(None)
            experiment.outcomes.append(f"did not start: {exc}")
            continue
        experiment.run_ids.append(job.run_id)
        job.thread.join()
        experiment.outcomes.append(job.state)


def status_lines(experiment: Experiment | None) -> list[str]:
    """Where the experiment stands: each variant, its run and how it ended, or what waits."""
    if experiment is None:
        return []
    lines = []
    for n, (name, _) in enumerate(experiment.variants):
        if n < len(experiment.outcomes):
            run_id = experiment.run_ids[n]
            state = f"run {run_id}, {experiment.outcomes[n]}" if run_id else experiment.outcomes[n]
        elif n < len(experiment.run_ids):
            state = f"run {experiment.run_ids[n]}, training now"
        else:
            state = "not run (stopped)" if experiment.stop.is_set() else "waiting"
        lines.append(f"{n + 1}. {name}: {state}")
    return lines
