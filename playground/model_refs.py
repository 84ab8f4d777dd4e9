"""Which model answers: the base model, a run's final weights, or one of a run's checkpoints.

Chat, grading and Inspect compare two such models; each is named by one short text, the same in
the UI, on the command line and in the files a comparison writes:
- `base`: the base model with every adapter off;
- `RUN`: the run's final weights (or, while it trains, its latest step);
- `RUN@STEP`: the run's checkpoint at step STEP.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import PlaygroundError

BASE = "base"
_REF = re.compile(r"^(?P<run>[A-Za-z0-9][A-Za-z0-9._-]*?)(?:@(?P<step>\d+))?$")


@dataclass(frozen=True)
class ModelRef:
    run_id: str | None = None  # None: the base model
    step: int | None = None    # a checkpoint's step; None: the run's final weights

    @classmethod
    def parse(cls, text: str | None) -> "ModelRef":
        """`base`, `RUN` or `RUN@STEP`; anything else is refused with the text and the forms."""
        text = (text or "").strip()
        if text.lower() == BASE:
            return cls()
        match = _REF.match(text)
        if not match:
            raise PlaygroundError(f"{text!r} names no model: use {BASE!r}, a run id, or RUN@STEP for a checkpoint.")
        step = match.group("step")
        return cls(match.group("run"), int(step) if step is not None else None)

    @classmethod
    def of_run(cls, run_id: str, step: int | None = None) -> "ModelRef":
        return cls(run_id, step)

    @property
    def is_base(self) -> bool:
        return self.run_id is None

    def __str__(self) -> str:
        if self.run_id is None:
            return BASE
        return self.run_id if self.step is None else f"{self.run_id}@{self.step}"

    @property
    def label(self) -> str:
        """How a page names it: "base model", "run X", "run X at step N"."""
        if self.run_id is None:
            return "base model"
        return f"run {self.run_id}" + (f" at step {self.step}" if self.step is not None else "")
