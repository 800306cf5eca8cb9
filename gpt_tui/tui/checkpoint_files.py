"""The checkpoint files the app offers to load: every run's and every imported model's.

Listing reads only the directory, never a file's tensors, and no header but
each run's best checkpoint's (its step and val loss, a few hundred bytes), so
the panel opens instantly however many runs there are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gpt_tui import paths
from gpt_tui.engine.best_checkpoint import read_best
from gpt_tui.engine.checkpoint_names import BEST_NAME, CHECKPOINTS_SUBDIR, STEP_NAME, SUFFIX
from gpt_tui.errors import UserError


@dataclass(frozen=True)
class CheckpointEntry:
    path: Path
    label: str  # relative to the data dir: "runs/<run>/checkpoints/step-00000120.safetensors"
    source: str  # the run's name, or "imported"/"saved"
    step: int | None
    size: int
    modified: float


def _entry(path: Path, source: str) -> CheckpointEntry | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    match = STEP_NAME.match(path.name)
    try:
        label = str(path.relative_to(paths.data_dir()))
    except ValueError:
        label = str(path)
    step = int(match.group(1)) if match else None
    best = read_best(path.parent.parent) if path.name == BEST_NAME and source != "imported" else None
    if best is not None:  # the run's best evaluation, kept whatever pruning removes
        step, label = best.step, f"{label}  (best, val {best.val_loss:.3f})"
    return CheckpointEntry(path, label, source, step, stat.st_size, stat.st_mtime)


def find_checkpoints() -> list[CheckpointEntry]:
    """Newest first: run checkpoints under runs/, then weights under models/, by modification time."""
    found: list[CheckpointEntry] = []
    runs = paths.runs_dir()
    if runs.is_dir():
        for run in runs.iterdir():
            folder = run / CHECKPOINTS_SUBDIR
            if folder.is_dir():
                for path in folder.glob(f"*{SUFFIX}"):
                    if not path.name.startswith("."):
                        entry = _entry(path, run.name)
                        if entry:
                            found.append(entry)
    models = paths.models_dir()
    if models.is_dir():
        for path in models.rglob(f"*{SUFFIX}"):
            if not path.name.startswith("."):
                entry = _entry(path, "imported")
                if entry:
                    found.append(entry)
    return sorted(found, key=lambda e: (e.modified, e.label), reverse=True)


def delete_checkpoint(path: Path) -> None:
    """Remove one checkpoint file; only files inside the data dir may be removed this way."""
    data = paths.data_dir().resolve()
    target = path.resolve()
    if data not in target.parents or target.suffix != SUFFIX:
        raise UserError(f"{path} is not a checkpoint in gpt-tui's data directory; delete it by hand if you mean to.")
    try:
        target.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise UserError(f"Cannot delete {path.name}: {exc.strerror or exc}.") from None


def format_size(size: int) -> str:
    for limit, suffix in ((1 << 30, "GB"), (1 << 20, "MB"), (1 << 10, "kB")):
        if size >= limit:
            return f"{size / limit:.1f} {suffix}"
    return f"{size} B"
