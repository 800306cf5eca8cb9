"""The checkpoint of a run's best evaluation, ``checkpoints/best.safetensors``, kept beside the last few.

Pruning removes only ``step-*`` files, so this one stays whatever it removes.
It holds the weights of the evaluation with the lowest validation loss so far,
so it is written before the weights change again: at the start of the next
step, or, when the run saves a step checkpoint at that very step, as a hard
link to that file (no second write). Either way it is a full checkpoint whose
training state names its step and loss (``best_step``, ``best_val_loss``): it
loads like any checkpoint and resumes like one. ``RUN@best`` names it wherever
a checkpoint is asked for. Nothing here imports torch: ``gpt-tui runs`` and
the app's lists read the mark from the file's header alone.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gpt_tui import fileio, paths
from gpt_tui.engine.checkpoint_header import read_header_json
from gpt_tui.engine.checkpoint_names import best_checkpoint_path
from gpt_tui.engine.early_stop import early_stop_reason
from gpt_tui.engine.train_progress import TrainProgress
from gpt_tui.errors import UserError

BEST_TAG = "@best"  # RUN@best: that run's best checkpoint


@dataclass(frozen=True)
class BestMark:
    """Where a run's best checkpoint is, and the evaluation it keeps."""

    path: Path
    step: int
    val_loss: float


def read_best(run_dir: str | Path) -> BestMark | None:
    """The run's best checkpoint and its evaluation; None when it has none, or the file does not say."""
    path = best_checkpoint_path(run_dir)
    header = read_header_json(path)
    state = header.get("train_state") if header else None
    if not isinstance(state, dict):
        return None
    step, loss = state.get("best_step"), state.get("best_val_loss")
    if not isinstance(step, int) or isinstance(step, bool) or not isinstance(loss, (int, float)) or isinstance(loss, bool):
        return None
    return BestMark(path, step, float(loss)) if math.isfinite(loss) else None


def best_reference(source: str | Path) -> Path | None:
    """The best checkpoint ``source`` names as ``RUN@best`` (a run directory or a run's name); None for anything else.

    A file or folder that really is called ``...@best`` keeps its meaning.
    """
    text = str(source)
    if not text.endswith(BEST_TAG) or paths.expand_user(text).exists():
        return None
    base = text[: -len(BEST_TAG)]
    run = paths.expand_user(base) if base else None
    if run is not None and not run.is_dir() and re.fullmatch(r"[A-Za-z0-9._-]+", base):
        run = paths.runs_dir() / base
    if run is None or not run.is_dir():
        raise UserError(f"No run {base!r} for {text!r}; give a run directory or a name `gpt-tui runs` lists, then @best.")
    path = best_checkpoint_path(run)
    if not path.is_file():
        raise UserError(
            f"Run {run.name} has no best checkpoint yet (one is kept from its first evaluation on); "
            f"use {base} for its newest checkpoint."
        )
    return path


def _link(source: Path, target: Path) -> bool:
    """Replace ``target`` atomically by a hard link to ``source``; False where the filesystem cannot link."""
    def link(tmp: Path) -> None:
        os.unlink(tmp)  # the exclusive temporary name stays ours: link() refuses a name someone took meanwhile
        os.link(source, tmp, follow_symlinks=False)

    try:
        fileio.atomic_write_to_path(target, link)
    except OSError:
        return False
    return True


class BestKeeper:
    """The trainer's part in keeping the best checkpoint and stopping early; only the main process writes."""

    def __init__(self, run_dir: str | Path, patience: int | None, is_main: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.path = best_checkpoint_path(run_dir)
        self.patience = patience
        self.is_main = is_main
        self.pending: int | None = None  # the step whose weights are the new best, until written

    def evaluated(self, progress: TrainProgress, val_loss: float, stop: Callable[[str], object]) -> None:
        """Count an evaluation; ``stop(reason)`` when it is the one --early-stop waits for."""
        if progress.record_val_loss(val_loss) and not self._kept_is_lower(val_loss):
            self.pending = progress.step
        reason = early_stop_reason(progress, self.patience)
        if reason is not None:
            stop(reason)

    def _kept_is_lower(self, val_loss: float) -> bool:
        """A best file already holds a lower loss: a run resumed from before its best must not replace it."""
        mark = read_best(self.run_dir) if self.is_main else None
        return mark is not None and mark.val_loss < val_loss

    def settle(self, step: int, write: Callable[[Path], object], saved: Path | None = None) -> None:
        """Between steps: write the best checkpoint an evaluation at ``step`` asked for.

        ``write(path)`` saves the current state there; ``saved`` is the step
        checkpoint just written at ``step``, which becomes the best by a link.
        """
        pending, self.pending = self.pending, None
        if pending != step or not self.is_main:  # nothing new, or another process writes it
            return
        if saved is not None and _link(saved, self.path):
            return
        write(self.path)
