"""Which weights the REPL talks to: a training snapshot, a loaded file, or a fresh model.

The last thing the user did wins: starting training switches the REPL to
snapshots of the live weights, loading a checkpoint switches it to that file.
``acquire`` runs on a generation worker thread, so building a model or taking
a snapshot never blocks the UI. Models are built and read by the engine
(gpt_tui.engine.inference_session, weights), imported inside functions.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gpt_tui import paths

SNAPSHOT_MAX_AGE_S = 3.0  # a reply reuses a snapshot younger than this
LOAD_WAIT_S = 300.0  # a reply waits at most this long for weights that are being loaded for it


@dataclass(frozen=True)
class LoadedModel:
    model: Any  # GPTModel
    label: str  # what the status line says, e.g. "runs/…/step-00000120"
    path: str


def display_path(path: str | Path) -> str:
    """A path relative to the data dir when it lies inside it: short, and the same on every machine."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(paths.data_dir().resolve()))
    except (ValueError, OSError):
        return str(path)


def weights_label(path: str | Path) -> str:
    """How the REPL names loaded weights: the display path without the file suffix."""
    shown = display_path(path)
    return shown[: -len(".safetensors")] if shown.endswith(".safetensors") else shown


def load_model_file(source: str, device: str) -> LoadedModel:
    """Any weights the engine can read (checkpoint, run dir, GPT-2 folder...), in eval mode."""
    from gpt_tui.engine.device import resolve_device

    target = resolve_device(device)
    try:
        from gpt_tui.engine.weights import load_model
    except ModuleNotFoundError as exc:  # an engine without the GPT-2 importers
        if exc.name != "gpt_tui.engine.weights":
            raise
        from gpt_tui.engine.checkpoint import load_model_from_checkpoint, resolve_checkpoint_path

        path = resolve_checkpoint_path(source)
        model = load_model_from_checkpoint(path, target)
        return LoadedModel(model.eval(), weights_label(path), str(path))
    loaded = load_model(source, target)
    path = getattr(loaded, "path", None) or source
    return LoadedModel(loaded.model.eval(), weights_label(path), str(path))


class ReplModelSource:
    def __init__(self, preset: str = "tiny", seed: int = 123, device: str = "auto") -> None:
        self._lock = threading.Lock()
        self.kind = "fresh"  # "fresh", "training" or "loaded"
        self._preset = preset
        self._seed = seed
        self._device = device
        self._trainer: Any = None
        self._loaded: LoadedModel | None = None
        self._fresh: Any = None
        self._fresh_key: tuple[str, int, str] | None = None
        self._snapshot: Any = None
        self._snapshot_at = 0.0
        self._snapshot_step = 0
        self._pending: threading.Event | None = None  # set when the weights being loaded are in use
        self._refresher: Callable[[], None] | None = None

    # ----- switching, on the UI thread -----
    def use_trainer(self, trainer: Any) -> None:
        with self._lock:
            self.kind = "training"
            self._trainer = trainer
            self._snapshot = None

    def use_loaded(self, loaded: LoadedModel) -> None:
        with self._lock:
            self.kind = "loaded"
            self._loaded = loaded

    def use_fresh(self, preset: str, seed: int, device: str) -> None:
        """The settings changed: an untrained model of this preset, if nothing else is in use."""
        with self._lock:
            self._preset, self._seed, self._device = preset, seed, device

    def begin_loading(self) -> threading.Event:
        """Weights are on their way: a reply asked for from now on waits for them (see ``finish_loading``)."""
        pending = threading.Event()
        with self._lock:
            self._pending = pending
        return pending

    def finish_loading(self, pending: threading.Event, loaded: LoadedModel | None) -> None:
        """From any thread: use ``loaded`` (None when the load failed) and let waiting replies go on."""
        with self._lock:
            if loaded is not None:
                self.kind = "loaded"
                self._loaded = loaded
            if self._pending is pending:
                self._pending = None
        pending.set()

    @property
    def loading(self) -> bool:
        return self._pending is not None

    def set_refresher(self, refresher: Callable[[], None] | None) -> None:
        """A callable each reply runs first, on its worker thread (an attached live run fetches fresh weights)."""
        with self._lock:
            self._refresher = refresher

    def drop_refresher(self, refresher: Callable[[], None]) -> None:
        """Stop calling ``refresher`` (only if it is still the one in use)."""
        with self._lock:
            if self._refresher == refresher:
                self._refresher = None

    @property
    def loaded(self) -> LoadedModel | None:
        return self._loaded

    def describe(self, live_step: int | None = None) -> str:
        """What the REPL talks to; ``live_step``: the run's step now, for the status line.

        Without it the step is the snapshot's, as a reply's footer says which weights answered;
        the status line passes the live step, so it does not stay at the first reply's snapshot.
        """
        with self._lock:
            if self.kind == "training" and self._trainer is not None:
                step = live_step if live_step else (self._snapshot_step if self._snapshot is not None else 0)
                return f"training weights (step {step})" if step else "training weights"
            if self._pending is not None:
                return "loading weights…"
            if self.kind == "loaded" and self._loaded is not None:
                return self._loaded.label
            return f"untrained {self._preset}"

    # ----- on a worker thread -----
    def acquire(self) -> tuple[Any, str]:
        """The model to generate with now, and its description (after any load in progress)."""
        with self._lock:
            refresher = self._refresher
        if refresher is not None:
            refresher()
        with self._lock:
            pending = self._pending
        if pending is not None:
            pending.wait(LOAD_WAIT_S)
        with self._lock:
            kind, trainer, loaded = self.kind, self._trainer, self._loaded
        if kind == "training" and trainer is not None and getattr(trainer, "model", None) is not None:
            return self._training_snapshot(trainer), self.describe()
        if kind == "loaded" and loaded is not None:
            return loaded.model, loaded.label
        return self._fresh_model(), f"untrained {self._preset}"

    def _training_snapshot(self, trainer: Any) -> Any:
        now = time.monotonic()
        with self._lock:
            if self._snapshot is not None and now - self._snapshot_at < SNAPSHOT_MAX_AGE_S and self._trainer is trainer:
                return self._snapshot
        step = getattr(trainer, "step", 0)
        snapshot = trainer.snapshot_model()  # a consistent copy, taken between optimizer steps
        with self._lock:
            if self._trainer is trainer:
                self._snapshot, self._snapshot_at, self._snapshot_step = snapshot, now, step
        return snapshot

    def _fresh_model(self) -> Any:
        from gpt_tui.engine.inference_session import fresh_model

        key = (self._preset, self._seed, self._device)
        with self._lock:
            if self._fresh is not None and self._fresh_key == key:
                return self._fresh
        model = fresh_model(*key)
        with self._lock:
            self._fresh, self._fresh_key = model, key
        return model
