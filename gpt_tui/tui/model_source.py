"""Which weights the REPL talks to: a training snapshot, a loaded file, or a fresh model.

The last thing the user did wins: starting training switches the REPL to
snapshots of the live weights, loading a checkpoint switches it to that file.
``acquire`` runs on a generation worker thread, so building a model or taking
a snapshot never blocks the UI. Everything here imports torch lazily.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt_tui import paths

SNAPSHOT_MAX_AGE_S = 3.0  # a reply reuses a snapshot younger than this
# Below this size a decoding step is too small to gain from a second intra-op
# thread, and when the CPU is shared a second thread that waits on a busy core
# makes each step many times slower (measured here: 9 vs 500 tokens/s for tiny).
SMALL_MODEL_PARAMETERS = 50_000_000


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


def reply_threads(model: Any, training_active: bool) -> int | None:
    """Intra-op threads to decode a reply with on the CPU, or None to keep torch's setting.

    One thread while training runs (the trainer's threads own the cores) or for a
    small model; a large model alone on the machine keeps every core.
    """
    device = next(model.parameters()).device
    if device.type != "cpu":
        return None
    if training_active or sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMETERS:
        return 1
    return None


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

    @property
    def loaded(self) -> LoadedModel | None:
        return self._loaded

    def describe(self) -> str:
        with self._lock:
            if self.kind == "training" and self._trainer is not None:
                if self._snapshot is not None:
                    return f"training weights (step {self._snapshot_step})"
                return "training weights"
            if self.kind == "loaded" and self._loaded is not None:
                return self._loaded.label
            return f"untrained {self._preset}"

    # ----- on a worker thread -----
    def acquire(self) -> tuple[Any, str]:
        """The model to generate with now, and its description."""
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
        import torch

        from gpt_tui.engine.device import resolve_device
        from gpt_tui.engine.model import GPTModel, get_preset

        key = (self._preset, self._seed, self._device)
        with self._lock:
            if self._fresh is not None and self._fresh_key == key:
                return self._fresh
        device = resolve_device(self._device)
        # A private RNG scope: a run training at the same time keeps its random stream.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self._seed)
            model = GPTModel(get_preset(self._preset)).to(device).eval()
        with self._lock:
            self._fresh, self._fresh_key = model, key
        return model
