"""Which model answers: the base model, a run's final weights, or one of a run's checkpoints.

Chat, grading and Inspect compare two such models; each is named by one short text, the same in
the UI, on the command line and in the files a comparison writes:
- `base`: the base model with every adapter off;
- `RUN`: the run's final weights (or, while it trains, its latest step);
- `RUN@STEP`: the run's checkpoint at step STEP;
- `RUN@best`: the run's checkpoint whose answers scored best while it trained (`best_checkpoint` in
  its status.json; see `answer_scores`), resolved to `RUN@STEP` when it is loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from .errors import PlaygroundError

BASE = "base"
BEST = "best"
_REF = re.compile(r"^(?P<run>[A-Za-z0-9][A-Za-z0-9._-]*?)(?:@(?P<step>\d+|best))?$")


def best_step(run_id: str, status: dict[str, Any]) -> int:
    """The step of the run's best scored checkpoint, from its status; an error when it has none."""
    best = status.get("best_checkpoint")
    if not best:
        raise PlaygroundError(f"Run {run_id} has no best checkpoint: its answers were not scored while it trained "
                              "(the setting 'Score answers every N steps', --score-answers-every).")
    return best["step"]


@dataclass(frozen=True)
class ModelRef:
    run_id: str | None = None  # None: the base model
    step: int | None = None    # a checkpoint's step; None: the run's final weights
    best: bool = False         # the run's best scored checkpoint (`RUN@best`), its step read from the run's status

    @classmethod
    def parse(cls, text: str | None) -> "ModelRef":
        """`base`, `RUN`, `RUN@STEP` or `RUN@best`; anything else is refused with the text and the forms."""
        text = (text or "").strip()
        if text.lower() == BASE:
            return cls()
        match = _REF.match(text)
        if not match:
            raise PlaygroundError(f"{text!r} names no model: use {BASE!r}, a run id, RUN@STEP for a checkpoint "
                                  f"or RUN@{BEST} for the best scored one.")
        step = match.group("step")
        if step == BEST:
            return cls(match.group("run"), best=True)
        return cls(match.group("run"), int(step) if step is not None else None)

    def resolved(self, status: dict[str, Any]) -> "ModelRef":
        """`RUN@best` as `RUN@STEP`, its step read from the run's status; any other reference as it is."""
        return replace(self, step=best_step(self.run_id, status), best=False) if self.best else self

    @classmethod
    def of_run(cls, run_id: str, step: int | None = None) -> "ModelRef":
        return cls(run_id, step)

    @property
    def is_base(self) -> bool:
        return self.run_id is None

    def __str__(self) -> str:
        if self.run_id is None:
            return BASE
        if self.best:
            return f"{self.run_id}@{BEST}"
        return self.run_id if self.step is None else f"{self.run_id}@{self.step}"

    @property
    def label(self) -> str:
        """How a page names it: "base model", "run X", "run X at step N", "run X at its best checkpoint"."""
        if self.run_id is None:
            return "base model"
        if self.best:
            return f"run {self.run_id} at its best checkpoint"
        return f"run {self.run_id}" + (f" at step {self.step}" if self.step is not None else "")


def side_name(against: str | None) -> str:
    """How pages and reports name the model a run is compared with: "base", or its label ("run X",
    "run X at step N")."""
    ref = ModelRef.parse(against or BASE)
    return "base" if ref.is_base else ref.label
