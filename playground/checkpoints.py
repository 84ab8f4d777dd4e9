"""A run's checkpoints: `models/runs/<run>/checkpoints/step-NNNNNN/`.

Each holds the trained weights as the run saves them at its end (`adapter/` for LoRA, `weights/`
for a full fine-tune) and `trainer.pt`: the optimizer's and the scheduler's state, the data
position (epoch and batch within it), the random number generator and the number of metric rows
written so far. From it a stopped or interrupted run resumes on the same curve, and the Chat tab
can answer with the weights of any checkpoint.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import PlaygroundError
from .run_files import SavedWeights, saved_weights

FOLDER = "checkpoints"
STATE = "trainer.pt"
PREFIX = "step-"
REMOVING = ".removing-"  # an old checkpoint being deleted


@dataclass(frozen=True)
class Checkpoint:
    step: int
    folder: Path

    @property
    def weights(self) -> SavedWeights:
        """The `adapter/` or `weights/` folder, loadable like a finished run's."""
        saved = saved_weights(self.folder)
        if saved is None:
            raise PlaygroundError(f"Checkpoint {self.folder} holds no adapter/ or weights/ folder.")
        return saved

    def state(self) -> dict[str, Any]:
        import torch  # here, so that the store's housekeeping (runs.remove_leftovers) needs no torch

        try:
            return torch.load(self.folder / STATE, map_location="cpu", weights_only=True)
        except Exception as exc:  # a damaged or foreign file: say which
            raise PlaygroundError(f"Checkpoint {self.folder} cannot be read ({type(exc).__name__}: {exc}).") from None


def folder_for(run_folder: Path, step: int) -> Path:
    return run_folder / FOLDER / f"{PREFIX}{step:06d}"


def temporary_folder(run_folder: Path, step: int) -> Path:
    """Where a checkpoint is written before it is moved into place (a killed save leaves no checkpoint)."""
    return run_folder / FOLDER / f".saving-{step:06d}"


def complete(folder: Path) -> bool:
    return (folder / STATE).is_file() and saved_weights(folder) is not None


def list_checkpoints(run_folder: Path) -> list[Checkpoint]:
    """The run's complete checkpoints, oldest first."""
    root = run_folder / FOLDER
    found = []
    for child in root.iterdir() if root.is_dir() else []:
        number = child.name[len(PREFIX):]
        if child.name.startswith(PREFIX) and number.isdigit() and complete(child):
            found.append(Checkpoint(int(number), child))
    return sorted(found, key=lambda c: c.step)


def find(run_folder: Path, step: int) -> Checkpoint:
    for checkpoint in list_checkpoints(run_folder):
        if checkpoint.step == step:
            return checkpoint
    steps = ", ".join(str(c.step) for c in list_checkpoints(run_folder)) or "none"
    raise PlaygroundError(f"Run {run_folder.name} has no checkpoint at step {step} (checkpoints: {steps}).")


def latest(run_folder: Path) -> Checkpoint | None:
    found = list_checkpoints(run_folder)
    return found[-1] if found else None


def finish(temporary: Path, state: dict[str, Any], step: int, keep: int, spare: int | None = None) -> Checkpoint:
    """Write the trainer state beside the saved weights, move the checkpoint into place and drop
    the oldest ones beyond `keep` (0 keeps them all), never the one at step `spare` (the run's best)."""
    import torch

    torch.save(state, temporary / STATE)
    target = folder_for(temporary.parent.parent, step)
    if target.exists():  # the same step saved again (a resumed run stopped where it started)
        shutil.rmtree(target)
    temporary.rename(target)
    kept = list_checkpoints(target.parent.parent)
    for old in [c for c in kept[:-keep] if c.step != spare] if keep else []:
        removing = old.folder.with_name(f"{REMOVING}{old.folder.name}")  # a kill meanwhile leaves no half checkpoint
        old.folder.rename(removing)
        shutil.rmtree(removing, ignore_errors=True)
    return Checkpoint(step, target)


def remove_leftovers(run_folder: Path) -> list[Path]:
    """Half-written or half-deleted checkpoints of a process killed while saving or pruning."""
    root = run_folder / FOLDER
    removed = []
    for child in root.iterdir() if root.is_dir() and not root.is_symlink() else []:
        if child.name.startswith((".saving-", REMOVING)):
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child)
    return removed
