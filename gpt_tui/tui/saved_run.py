"""A run directory as the app reads it back: its history, its state, the checkpoint it can continue from.

Functions here read files and import the engine (torch among it), so the
app calls them on worker threads; importing this module stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt_tui.errors import UserError

@dataclass(frozen=True)
class SavedRun:
    """A run directory as read from disk, for showing it and offering to continue it."""

    path: Path
    state: str  # as gpt-tui runs says: stopped, stale, failed, finished...
    events: list[Any]
    checkpoint_step: int | None  # the newest checkpoint's step; None: nothing to continue from


def _train_state(path: str | Path) -> dict[str, Any]:
    from gpt_tui.engine.checkpoint import read_header

    try:
        state = read_header(path).get("train_state")
    except UserError:
        return {}
    return state if isinstance(state, dict) else {}


def checkpoint_step(path: str | Path) -> int | None:
    """The step a checkpoint was saved at, from its header; None for weights without one."""
    step = _train_state(path).get("step")
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def read_saved_run(run_dir: str | Path) -> SavedRun:
    """Read a run's metrics, state and newest checkpoint (on a worker thread: it imports the engine)."""
    from gpt_tui.engine.runs import read_metrics, read_run

    folder = Path(run_dir)
    info = read_run(folder)
    events, _ = read_metrics(folder)
    step = checkpoint_step(info.latest_checkpoint) if info.latest_checkpoint is not None else None
    return SavedRun(folder, info.status, events, step)


def resumable_source(path: str | Path) -> tuple[Path, int] | None:
    """(run dir, step) when ``path`` is a full checkpoint inside a run directory, else None (weights only)."""
    from gpt_tui.engine.checkpoint import CHECKPOINTS_SUBDIR

    file = Path(path)
    if file.parent.name != CHECKPOINTS_SUBDIR or "train_config" not in _train_state(file):
        return None
    step = checkpoint_step(file)
    return (file.parent.parent, step) if step is not None else None


def resumable_run_dir(source: str) -> Path:
    """The run directory a continue plan trains in: the run dir itself, or a checkpoint's run."""
    path = Path(source)
    return path.parent.parent if path.suffix == ".safetensors" else path


def has_checkpoint(run_dir: str | Path) -> bool:
    from gpt_tui.engine.checkpoint import list_checkpoints

    return bool(list_checkpoints(run_dir))
