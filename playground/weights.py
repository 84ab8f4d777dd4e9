"""The one owner of a model's weights in memory: its lock, its adapters and its train/eval mode.

Training steps, probes, chat and grading all share the same weights. Each of them asks for them
through `Weights.use()`, which takes the lock, puts the model in the mode the caller needs and
restores the previous state afterwards, so that no caller leaves a mark on another:
- at rest the model is in eval mode (no dropout);
- `use(train=True, adapter=RUN)` is a training step of that run: train mode, that adapter the one
  the forward pass updates;
- `use()` is generation or evaluation: eval mode. Which adapter applies is named per row of the
  batch (peft's `adapter_names`, `"__base__"` for none), so a base row never goes through a LoRA
  layer that some run injected, and nothing is switched on the model itself.
A LoRA adapter is added to the one copy of the base weights; a full fine-tune has its own copy,
and so its own `Weights`, sharing the manager's lock.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from typing import Any, Iterator

import torch

BASE = "__base__"  # peft's name for "no adapter" in a mixed batch
# Saved adapters loaded for answering (runs and their checkpoints) kept at once; the least recently
# asked for is unloaded first. Each is small beside the base, but every one adds to each forward pass
# through peft's per-row routing, and a user stepping through checkpoints would otherwise pile them up.
MAX_LOADED_ADAPTERS = 6


class Weights:
    def __init__(self, model: Any, lock: threading.RLock | None = None):
        model.eval()
        self.model = model  # a transformers causal LM, or a peft wrapper once it carries an adapter
        self.lock = lock or threading.RLock()
        self.loaded: OrderedDict[str, None] = OrderedDict()  # adapters loaded to answer, oldest first

    @property
    def is_peft(self) -> bool:
        from peft import PeftModel

        return isinstance(self.model, PeftModel)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def has_adapter(self, name: str) -> bool:
        return self.is_peft and name in self.model.peft_config

    def adapter_names(self, adapters: list[str | None]) -> dict[str, Any]:
        """Forward-pass arguments that apply `adapters[i]` (None: none) to row i of a batch."""
        if not self.is_peft:
            if any(adapters):
                raise ValueError("these weights carry no LoRA adapter")
            return {}
        return {"adapter_names": [name or BASE for name in adapters]}

    @contextlib.contextmanager
    def use(self, train: bool = False, adapter: str | None = None) -> Iterator[Any]:
        """The model, locked, in train mode (a training step) or eval mode, with `adapter` the active
        one for forward passes that name no adapter per row (the training run's loss)."""
        with self.lock:
            model = self.model
            was_training = model.training
            if adapter is not None and self.is_peft and model.active_adapter != adapter:
                model.set_adapter(adapter)  # also makes that adapter the trainable one
            model.train(train)
            try:
                yield model
            finally:
                model.train(was_training)

    # ------------------------------------------------------------ adapters

    def add_trainable_adapter(self, name: str, config: Any) -> Any:
        """A new LoRA adapter on these weights, active and trainable; returns the peft model."""
        from peft import get_peft_model

        with self.lock:
            if self.is_peft:
                self.model.add_adapter(name, config)
                self.model.set_adapter(name)
            else:
                self.model = get_peft_model(self.model, config, adapter_name=name)
            self.model.eval()
            return self.model

    def remove_adapter(self, name: str) -> None:
        """Drop a loaded adapter (a resumed run trains a fresh one in its place)."""
        with self.lock:
            if self.has_adapter(name):
                self.model.delete_adapter(name)
            self.loaded.pop(name, None)

    def load_adapter(self, name: str, folder: str) -> None:
        """A saved LoRA adapter, loaded once for inference; the active (trained) adapter is unchanged.
        Past MAX_LOADED_ADAPTERS, the least recently asked-for one is unloaded."""
        from peft import PeftModel

        with self.lock:
            if self.has_adapter(name):
                if name in self.loaded:
                    self.loaded.move_to_end(name)
                return
            if self.is_peft:
                self.model.load_adapter(folder, adapter_name=name)
            else:
                self.model = PeftModel.from_pretrained(self.model, folder, adapter_name=name)
            self.model.eval()
            self.loaded[name] = None
            self._unload_least_recent()

    def _unload_least_recent(self) -> None:
        """Adapters a run trains are never in `loaded`: only those loaded to answer are unloaded."""
        while len(self.loaded) > MAX_LOADED_ADAPTERS:
            name, _ = self.loaded.popitem(last=False)
            self.model.delete_adapter(name)
