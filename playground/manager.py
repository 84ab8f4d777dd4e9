"""The one process-wide model manager shared by every tab.

It loads tokenizers and the base model on a background thread, so the UI appears at once and can
say what is loading, and it owns training runs, so closing the page does not stop them. There is one
copy of the base weights, owned by a `Weights` object: a LoRA run adds an adapter to it; a full
fine-tune gets its own copy (and its own `Weights`), which doubles memory. Every user of the weights
(training steps, probes, chat, grading) goes through `Weights.use()`, under one lock.

Every job the manager runs (a load, a training run) ends with a state and a message whatever it
raises: the traceback goes to the log, and the manager takes the next job.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from . import checkpoints, experiments, run_data, runs, store
from .data import Dataset
from .errors import PlaygroundError
from .generation import Side
from .model_refs import ModelRef
from .modeling import pick_device, pick_dtype
from .settings import TrainConfig
from .training import Event, StopRequest, prepare_model, refuse_before_start, run_training
from .weights import Weights

log = logging.getLogger(__name__)
RUN_DATA_KEPT = 3  # runs whose datasets stay in memory (chat examples, gradings)
FULL_COPIES_KEPT = 2  # full fine-tunes' own weights kept loaded to answer


@dataclass(frozen=True)
class Status:
    state: str  # "loading", "ready" or "error"
    message: str


@dataclass
class LoadedModel:
    spec: str
    weights: Weights    # the one copy of the base weights, with any LoRA adapters on it
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype
    seconds: float      # load time


RUNNING_STATES = ("starting", "running")
STOPPING = ("Stopping after the current step, then a last validation, the probes' answers and a checkpoint to resume "
            "from (press Stop again to skip the validation and probes)…")
HURRYING = "Stopping after the current step with a checkpoint to resume from; the last validation and probes are skipped…"


@dataclass(frozen=True)
class JobSnapshot:
    """A training job at one moment, every field read together."""
    run_id: str
    state: str
    message: str
    phase: str
    step: int            # of the latest event
    events: tuple[Event, ...]
    result: dict[str, Any]
    elapsed: float
    stopping: bool       # Stop was pressed
    resumed: bool        # it goes on from a checkpoint of a stopped or interrupted run
    config: TrainConfig  # the run's settings (set when it starts, never changed)

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES


class TrainingJob:
    """A run the manager trains on its own thread. That thread writes the job's progress, other threads
    read it: both through `lock`, one field at a time through the properties, or all of them
    together through `snapshot()`."""

    def __init__(self, run_id: str, config: TrainConfig, folder: Path, events: list[Event] | None = None,
                 resume: checkpoints.Checkpoint | None = None):
        self.run_id, self.config, self.folder = run_id, config, folder
        self.resume = resume  # the checkpoint a resumed run goes on from
        self.stop = StopRequest()
        self.thread: threading.Thread | None = None
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self._events = list(events or [])  # a resumed run's events begin with its curve so far
        self._step = self._events[-1].step if self._events else 0
        self._state = "starting"  # starting, running, finished, stopped, failed
        self._message = "Loading the model…"
        self._phase = "loading the model"  # what it does now: loading, probing, validating, training, saving
        self._result: dict[str, Any] = {}
        self._side: Side | None = None  # an adapter on the shared weights, or a full fine-tune's copy
        self._ended: float | None = None

    def snapshot(self) -> JobSnapshot:
        with self.lock:
            return JobSnapshot(self.run_id, self._state, self._message, self._phase, self._step, tuple(self._events),
                               dict(self._result), (self._ended or time.monotonic()) - self.started,
                               self.stop.is_set(), self.resume is not None, self.config)

    # ------------------------------------------------------------ read by any thread

    @property
    def events(self) -> tuple[Event, ...]:
        with self.lock:
            return tuple(self._events)

    @property
    def state(self) -> str:
        with self.lock:
            return self._state

    @property
    def message(self) -> str:
        with self.lock:
            return self._message

    @property
    def phase(self) -> str:
        with self.lock:
            return self._phase

    @property
    def step(self) -> int:
        with self.lock:
            return self._step

    @property
    def result(self) -> dict[str, Any]:
        with self.lock:
            return dict(self._result)

    @property
    def side(self) -> Side | None:
        with self.lock:
            return self._side

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES

    @property
    def elapsed(self) -> float:
        with self.lock:
            return (self._ended or time.monotonic()) - self.started

    # ------------------------------------------------------------ written by the run's thread

    def record(self, event: Event) -> None:
        with self.lock:
            if event.kind == "phase":
                self._phase = event.values["phase"]
            self._step = event.step
            self._events.append(event)

    def set_phase(self, phase: str) -> None:
        with self.lock:
            self._phase = phase

    def begin(self, side: Side) -> None:
        """The model is ready: training starts."""
        with self.lock:
            self._side, self._state = side, "running"
            if not self.stop.is_set():
                self._message = "Training…"

    def end(self, state: str, message: str, result: dict[str, Any] | None = None) -> None:
        with self.lock:
            self._state, self._message, self._ended = state, message, time.monotonic()
            if result is not None:
                self._result = result

    def request_stop(self) -> None:
        """Stop after the current step; asked again, skip the last validation and probes too (a job
        that has ended keeps its message)."""
        with self.lock:
            if self._state in RUNNING_STATES:
                if self.stop.is_set():
                    self.stop.hurry.set()
                self.stop.set()
                self._message = HURRYING if self.stop.hurry.is_set() else STOPPING


def parameter_bytes(model: Any) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


RESUMABLE_STATES = ("stopped", "interrupted", "failed")


def resume_checkpoint(record: runs.RunRecord, training_now: bool = False) -> checkpoints.Checkpoint:
    """The checkpoint a run goes on from: the latest of a stopped, interrupted or failed run.

    The app and the command line both ask here; a run training now (`training_now`: in this
    process), a finished run and a run without a checkpoint are refused, saying why."""
    if training_now or record.state == "running":
        raise PlaygroundError(f"Run {record.run_id} is training now.")
    if record.state not in RESUMABLE_STATES:
        total = record.status.get("total_steps", "")
        raise PlaygroundError(f"Run {record.run_id} finished all its {total} steps; there is nothing to resume. "
                              "Start a new run to train longer." if record.state == "finished" else
                              f"Run {record.run_id} is {record.state}; only a stopped, interrupted or failed run "
                              "can be resumed.")
    checkpoint = checkpoints.latest(record.folder)
    if checkpoint is None:
        raise PlaygroundError(f"Run {record.run_id} has no checkpoint to resume from (it was {record.state} before "
                              "its first one; runs keep one when stopped and every 'checkpoint every' steps).")
    return checkpoint


def failure_message(what: str, exc: BaseException) -> str:
    """A user's error as it is; anything else with its type, and the traceback in the log."""
    if isinstance(exc, PlaygroundError):
        return str(exc)
    log.exception("%s failed", what, exc_info=exc)
    if isinstance(exc, torch.OutOfMemoryError):
        return f"{what} ran out of memory. Try a smaller model, batch size or max length."
    return f"{what} failed: {type(exc).__name__}: {exc}"


def guarded(what: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """`function` for a background job: anything it raises becomes a PlaygroundError with a message."""
    def run(*args: Any) -> Any:
        try:
            return function(*args)
        except Exception as exc:
            raise PlaygroundError(failure_message(what, exc)) from exc
    return run


class ModelManager:
    def __init__(self, models_dir: Path | None = None, tokenizer_spec: str = store.DEFAULT,
                 device: str = "auto", dtype: str = "auto"):
        self.models_dir = Path(models_dir or store.MODELS_DIR)
        self.default_tokenizer = tokenizer_spec
        self.device = pick_device(device)
        self.requested_dtype = dtype  # "auto" chooses per device and architecture when a model loads
        self.lock = threading.RLock()  # every set of weights: one training step or one forward pass at a time
        # separate loaders: a model load waits for its tokenizer, which must not queue behind it
        self._tokenizer_loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenizer-loader")
        self._model_loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-loader")
        self._state_lock = threading.Lock()
        self._tokenizers: dict[str, Future] = {}
        self._started: dict[str, float] = {}
        self._model: Future | None = None
        self._model_spec: str | None = None
        self._model_started = 0.0
        self.job: TrainingJob | None = None
        self.experiment: experiments.Experiment | None = None  # variants trained one after another
        self._full_models: dict[str, Weights] = {}  # run id -> its own weights, for full fine-tunes
        self._run_data: dict[str, run_data.RunData] = {}  # the latest few, see RUN_DATA_KEPT
        self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        """Temporary folders of saves and conversions that a killed process left behind."""
        try:
            store.remove_leftovers(self.models_dir)
            runs.remove_leftovers(self.models_dir)
        except OSError as exc:  # an unreadable store is reported where it is used
            log.warning("could not look for leftover temporary folders in %s: %s", self.models_dir, exc)

    # ------------------------------------------------------------ tokenizers

    def _key(self, spec: str | None) -> str:
        return (spec or self.default_tokenizer).strip() or store.DEFAULT

    def request_tokenizer(self, spec: str | None = None) -> Future:
        """Start loading a tokenizer in the background (once per spec) and return its future."""
        key = self._key(spec)
        with self._state_lock:
            future = self._tokenizers.get(key)
            if future is None or (future.done() and future.exception() is not None):
                self._started[key] = time.monotonic()
                load = guarded(f"Loading tokenizer '{key}'", store.load_tokenizer)
                future = self._tokenizer_loader.submit(load, key, self.models_dir)
                self._tokenizers[key] = future
            return future

    def tokenizer_status(self, spec: str | None = None) -> Status:
        key = self._key(spec)
        with self._state_lock:
            future = self._tokenizers.get(key)
        if future is None:
            return Status("error", f"Tokenizer '{key}' has not been requested.")
        if not future.done():
            waited = time.monotonic() - self._started.get(key, time.monotonic())
            first = " (the first start converts it from GGUF; later starts take seconds)" if key == store.DEFAULT else ""
            return Status("loading", f"Loading tokenizer '{key}'… {waited:.0f} s{first}")
        error = future.exception()
        if error is not None:
            return Status("error", str(error))
        return Status("ready", f"Tokenizer '{key}' ready ({len(future.result()):,} tokens in its vocabulary).")

    def tokenizer(self, spec: str | None = None, timeout: float | None = None) -> Any:
        """The loaded tokenizer, waiting for it up to `timeout` seconds (None waits as long as it takes)."""
        future = self.request_tokenizer(spec)
        try:
            return future.result(timeout=timeout)
        except TimeoutError:
            raise PlaygroundError(self.tokenizer_status(spec).message) from None

    # ------------------------------------------------------------ the base model

    def _load_model(self, spec: str) -> LoadedModel:
        started = time.monotonic()
        tokenizer = self.tokenizer(spec)
        dtype = pick_dtype(self.device, self.requested_dtype, store.model_type(spec, self.models_dir))
        model = store.load_model(spec, self.models_dir, dtype=dtype).to(self.device)
        return LoadedModel(spec, Weights(model, self.lock), tokenizer, self.device, dtype,
                           time.monotonic() - started)

    def request_model(self, spec: str = store.DEFAULT) -> Future:
        """Load the base model in the background; a different spec replaces the current one."""
        spec = (spec or store.DEFAULT).strip()
        with self._state_lock:
            if self._model is not None and self._model_spec == spec and not (
                    self._model.done() and self._model.exception() is not None):
                return self._model
            if self.job is not None and self.job.running:
                raise PlaygroundError(f"A run is training on '{self._model_spec}'; stop it before switching models.")
            self._model_spec, self._model_started = spec, time.monotonic()
            self._model = self._model_loader.submit(guarded(f"Loading model '{spec}'", self._load_model), spec)
            return self._model

    def model_status(self) -> Status:
        with self._state_lock:
            future, spec = self._model, self._model_spec
        if future is None:
            return Status("error", "No model loaded yet.")
        if not future.done():
            waited = time.monotonic() - self._model_started
            return Status("loading", f"Loading model '{spec}'… {waited:.0f} s (the first use of the default "
                                     "converts it from GGUF, about a minute; later loads take seconds)")
        if future.exception() is not None:
            return Status("error", str(future.exception()))
        loaded = future.result()
        return Status("ready", f"Model '{spec}' on {loaded.device.type} in {str(loaded.dtype).replace('torch.', '')}, "
                               f"{parameter_bytes(loaded.weights.model) / 2**20:,.0f} MiB of weights.")

    def loaded_model(self, spec: str = store.DEFAULT) -> LoadedModel | None:
        """The base model when `spec` is loaded and ready; None otherwise (never waits or loads)."""
        with self._state_lock:
            future, current = self._model, self._model_spec
        if future is None or current != (spec or store.DEFAULT).strip() or not future.done():
            return None
        return None if future.exception() is not None else future.result()

    def model(self, spec: str = store.DEFAULT, timeout: float | None = None) -> LoadedModel:
        future = self.request_model(spec)
        try:
            return future.result(timeout=timeout)
        except TimeoutError:
            raise PlaygroundError(self.model_status().message) from None

    # ------------------------------------------------------------ training

    def start_training(self, dataset: Dataset, config: TrainConfig) -> TrainingJob:
        """Start a run on a background thread owned by the manager, not by a browser request."""
        return self._start(dataset, config)

    def resume_training(self, run_id: str) -> TrainingJob:
        """Go on with a stopped, interrupted or failed run from its latest checkpoint, with its own
        settings and data; the job's events begin with the run's curve up to that checkpoint."""
        record = runs.read(self.models_dir, run_id)
        job = self.job
        checkpoint = resume_checkpoint(record, training_now=job is not None and job.running and job.run_id == run_id)
        state = checkpoint.state()
        earlier = [Event.from_row(row, state["total_steps"]) for row in record.metrics()[:state["rows"]]]
        return self._start(self.run_data(run_id).dataset, record.config, run_id,
                           checkpoint, earlier)

    def _start(self, dataset: Dataset, config: TrainConfig, run_id: str | None = None,
               resume: checkpoints.Checkpoint | None = None, earlier: list[Event] | None = None) -> TrainingJob:
        config.check()
        with self._state_lock:
            if self.job is not None and self.job.running:
                raise PlaygroundError(f"Run {self.job.run_id} is still training; stop it first.")
        model = self.request_model(config.model)
        with self._state_lock:
            if self.job is not None and self.job.running:
                raise PlaygroundError(f"Run {self.job.run_id} is still training; stop it first.")
            run_id = run_id or runs.new_run_id(self.models_dir, config.run_kind)
            job = TrainingJob(run_id, config, runs.runs_dir(self.models_dir) / run_id, events=list(earlier or []),
                              resume=resume)
            if not model.done() and store.needs_conversion(config.model, self.models_dir):
                job.set_phase("converting the model the first time (about a minute)")
            self.job = job
        job.thread = threading.Thread(target=self._run, args=(job, dataset, model), name=f"train-{run_id}", daemon=True)
        job.thread.start()
        return job

    def start_experiment(self, dataset: Dataset, variants: list[tuple[str, TrainConfig]]) -> experiments.Experiment:
        """Train the variants one after another, each an ordinary run, on a thread of the manager."""
        with self._state_lock:
            if (self.job is not None and self.job.running) or (self.experiment is not None and self.experiment.running):
                raise PlaygroundError("A run is training; stop it before starting the variants.")
            experiment = experiments.Experiment(variants)
            experiment.thread = threading.Thread(target=experiments.run, args=(self, dataset, experiment),
                                                 name="experiment", daemon=True)
            self.experiment = experiment
        experiment.thread.start()
        return experiment

    def stop_training(self) -> None:
        """Stop the run after its current step, and the variants waiting after it."""
        if self.experiment is not None:
            self.experiment.stop.set()
        if self.job is not None:
            self.job.request_stop()

    def _run(self, job: TrainingJob, dataset: Dataset, model_future: Future) -> None:
        """The job's thread: whatever happens, the job ends with a state and a message."""
        try:
            loaded = model_future.result()
            job.set_phase("checking the settings against the memory and the data")
            refuse_before_start(loaded.weights.model, loaded.tokenizer, dataset, job.config, self.device)
            job.set_phase("preparing the model")
            side = prepare_model(loaded.weights, job.config, job.run_id, self.models_dir, loaded.dtype, self.device,
                                 job.resume)
            job.begin(side)
            state, message, result = run_training(side, loaded.tokenizer, dataset, job.config, self.models_dir,
                                                  job.run_id, on_event=job.record, stop=job.stop, resume=job.resume)
            job.end(state, message, result)
        except Exception as exc:
            job.end("failed", failure_message(f"Run {job.run_id}", exc))

    # ------------------------------------------------------------ sides for chat and grading

    def base_side(self, spec: str = store.DEFAULT) -> Side:
        """The base model: the shared weights with every adapter off, whatever runs injected."""
        return Side("base", self.model(spec).weights)

    def tuned_side(self, run_id: str, checkpoint: int | str | None = None) -> tuple[Side, runs.RunRecord]:
        """The tuned model of a run (or of its checkpoint at step `checkpoint`; "best": the one whose
        answers scored best, named in the run's status), sharing the base weights when it is a LoRA adapter.

        The run that is training now is served live, with the weights of its latest step.
        """
        job = self.job
        live = job is not None and job.running and job.run_id == run_id and checkpoint is None
        if live and job.side is None:
            raise PlaygroundError(f"Run {run_id} is still loading its model; try again in a moment.")
        record = runs.read(self.models_dir, run_id)
        spec = record.config.model
        if live:
            return job.side, record
        if isinstance(checkpoint, str):  # "best" (or a step as text)
            checkpoint = ModelRef.parse(f"{run_id}@{checkpoint}").resolved(record.status).step
        if checkpoint is not None:
            saved, name, what = checkpoints.find(record.folder, checkpoint).weights, f"{run_id}-step{checkpoint}", \
                f"checkpoint {checkpoint} of run {run_id}"
        elif record.weights is not None:
            saved, name, what = record.weights, run_id, f"run {run_id}"
        else:
            raise PlaygroundError(f"Run {run_id} has no saved adapter or weights ({record.state}).")
        loaded = self.model(spec)
        if not saved.is_adapter:
            return Side("tuned", self._full_copy(name, saved.folder, loaded.dtype, what)), record
        try:
            loaded.weights.load_adapter(name, str(saved.folder))
        except Exception as exc:
            raise PlaygroundError(failure_message(f"Loading the adapter of {what} from {saved.folder}", exc)) from None
        return Side("tuned", loaded.weights, name), record

    def side(self, ref: ModelRef | str, spec: str) -> Side:
        """Any model that can answer beside another on the base model `spec`: the base model, a run,
        or a run's checkpoint (`model_refs`; `RUN@best` through the run's status). A run on another base
        model is refused: both sides of a comparison read the same prompt with the same tokenizer."""
        ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
        if ref.is_base:
            return self.base_side(spec)
        record = runs.read(self.models_dir, ref.run_id)
        if record.config.model != spec:
            raise PlaygroundError(f"Run {ref.run_id} tuned {record.config.model}, not {spec}: only models on the "
                                  f"same base model can answer side by side.")
        side, _ = self.tuned_side(ref.run_id, ref.resolved(record.status).step)
        return side

    def _full_copy(self, name: str, folder: Path, dtype: torch.dtype, what: str) -> Weights:
        """A full fine-tune's own weights, loaded once; the FULL_COPIES_KEPT most recently asked for
        are kept (two: both sides of a comparison may be full fine-tunes)."""
        with self._state_lock:
            cached = self._full_models.pop(name, None)
            if cached is not None:
                self._full_models[name] = cached  # the newest last
        if cached is None:
            try:
                model = store.load_model(str(folder), self.models_dir, dtype=dtype)
            except Exception as exc:
                raise PlaygroundError(failure_message(f"Loading the weights of {what} from {folder}", exc)) from None
            cached = Weights(model.to(self.device), self.lock)
            with self._state_lock:
                self._full_models[name] = cached
                while len(self._full_models) > FULL_COPIES_KEPT:
                    self._full_models.pop(next(iter(self._full_models)))
        return cached

    def run_data(self, run_id: str) -> run_data.RunData:
        """The data and splits a run trained on (see `run_data.load`); the latest few are kept, and a
        run damaged since is refused."""
        record = runs.read(self.models_dir, run_id)
        with self._state_lock:
            cached = self._run_data.pop(run_id, None)
        if cached is None:
            cached = run_data.load(self.models_dir, record)
        with self._state_lock:
            self._run_data[run_id] = cached  # the newest last
            while len(self._run_data) > RUN_DATA_KEPT:
                self._run_data.pop(next(iter(self._run_data)))
        return cached

    def memory_report(self) -> dict[str, int]:
        """Bytes of parameters: the base alone, the LoRA adapters on it, and full fine-tune copies."""
        with self._state_lock:
            future, full = self._model, dict(self._full_models)
        report = {"base": 0, "adapters": 0, "full_copies": 0}
        if future is None or not future.done() or future.exception() is not None:
            return report
        for name, parameter in future.result().weights.model.named_parameters():
            key = "adapters" if "lora_" in name else "base"
            report[key] += parameter.numel() * parameter.element_size()
        report["full_copies"] = sum(parameter_bytes(w.model) for w in full.values())
        return report
