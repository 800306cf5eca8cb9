"""What the Runs screen shows: every run under runs/, read cheaply enough to refresh every few seconds.

Reading a run means parsing its whole metrics.jsonl (seconds for a hundred
long runs on a busy machine), so :class:`RunsReader` keeps what it read of a
run that has ended and reads it again only when one of its files changes;
live runs are read each time. Names and anything else read from a run's files
are shown with control characters made visible: a folder name can hold
terminal escapes.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text

from gpt_tui import paths
from gpt_tui.engine import runlock
from gpt_tui.engine.checkpoint_names import CHECKPOINTS_SUBDIR
from gpt_tui.engine.runs import CONFIG_FILE, LIVE_STATES, METRICS_FILE, STATUS_FILE, RunInfo, read_run
from gpt_tui.errors import UserError
from gpt_tui.textsafe import visible
from gpt_tui.tui.checkpoint_files import format_size

__all__ = ["RunRow", "RunsReader", "delete_run", "format_age", "row_cells", "run_size", "visible"]


def format_age(seconds: float) -> str:
    """How long ago, in the largest unit that fits: "just now", "5 min ago", "3 h ago", "2 days ago"."""
    if seconds < 60:
        return "just now"
    for size, unit in ((86400, "day"), (3600, "h"), (60, "min")):
        if seconds >= size:
            count = int(seconds // size)
            plural = "s" if unit == "day" and count != 1 else ""
            return f"{count} {unit}{plural} ago"
    return "just now"  # pragma: no cover - every case above returns


def run_size(folder: str | Path) -> int:
    """Bytes a run folder holds, without following symlinks (a link counts as itself)."""
    total = 0
    stack = [Path(folder)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                else:
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


@dataclass(frozen=True)
class RunRow:
    info: RunInfo
    size: int
    here: bool  # this process trains it

    @property
    def live(self) -> bool:
        return self.here or self.info.status in LIVE_STATES


def _damaged(folder: Path) -> RunInfo:
    try:
        updated = folder.lstat().st_mtime
    except OSError:
        updated = 0.0
    return RunInfo(name=folder.name, path=folder, status="damaged", step=0, total_steps=None, best_val_loss=None,
                   latest_checkpoint=None, model=None, updated=updated)


def _signature(folder: Path) -> tuple[object, ...]:
    """What changes when a run's files do (identity, time and size of each file read_run looks at)."""
    out: list[object] = []
    for name in (STATUS_FILE, METRICS_FILE, CONFIG_FILE, CHECKPOINTS_SUBDIR):
        try:
            info = os.lstat(folder / name)
        except OSError:
            out.append(None)
            continue
        out.append((info.st_ino, info.st_mtime_ns, info.st_size))
    return tuple(out)


class RunsReader:
    """Reads every run under ``root`` (the data dir's runs/), again only where something changed."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = root
        self._cache: dict[Path, tuple[tuple[object, ...], RunInfo, int]] = {}
        self.reread = 0  # runs read from their files in the last call (the rest came from the cache)

    def read(self) -> list[RunRow]:
        """Newest first; a run that cannot be read at all is listed as "damaged"."""
        base = Path(self.root) if self.root is not None else paths.runs_dir()
        try:
            folders = [p for p in base.iterdir() if p.is_dir()] if base.is_dir() else []
        except OSError:
            folders = []
        me, rows, cache, self.reread = os.getpid(), [], {}, 0
        for folder in folders:  # the folders runs.list_runs lists
            if not ((folder / CONFIG_FILE).exists() or (folder / STATUS_FILE).exists()):
                continue
            signature = _signature(folder)
            cached = self._cache.get(folder)
            if cached is not None and cached[0] == signature and cached[1].status not in LIVE_STATES:
                info, size = cached[1], cached[2]
            else:
                self.reread += 1
                try:
                    info = read_run(folder)
                except Exception:  # read_run takes damaged files in its stride; this is a last guard
                    info = _damaged(folder)
                size = run_size(folder)
            cache[folder] = (signature, info, size)
            rows.append(RunRow(info, size, info.status in LIVE_STATES and runlock.holder(folder) == me))
        self._cache = cache
        return sorted(rows, key=lambda r: r.info.updated, reverse=True)


def row_cells(row: RunRow, now: float, stable: bool = False) -> tuple[Text, ...]:
    info = row.info
    state = visible(info.status) + (" (here)" if row.here else "")
    step = f"{info.step}/{info.total_steps}" if isinstance(info.total_steps, int) else str(info.step)
    best = f"{info.best_val_loss:.3f}" if isinstance(info.best_val_loss, float) else "-"
    kept = getattr(info, "best_checkpoint", None)  # the best checkpoint's step: RUN@best loads it
    best += f" @{kept.step}" if kept is not None else ""
    age = "··" if stable else format_age(now - info.updated) if info.updated else "-"
    state_style = {"running": "green", "paused": "yellow", "failed": "red", "damaged": "red", "stale": "yellow"}.get(info.status, "")
    return (Text(visible(info.name)), Text(state, style=state_style), Text(step), Text(best), Text(format_size(row.size)), Text(age))


def delete_run(folder: Path) -> None:
    """Remove a run folder that nothing trains in; never through a link."""
    name = visible(folder.name)
    if folder.is_symlink():
        raise UserError(f"{name} is a link to another folder; it is not deleted through the link. Remove the link itself if you want it gone.")
    if not folder.is_dir():
        raise UserError(f"Run {name} is gone already.")
    try:
        lock = runlock.acquire(folder, patience_s=0.2)  # and no trainer can start in it while it goes
    except UserError:
        raise UserError(f"Run {name} is training; stop it before deleting it (open it and press F6, or `gpt-tui stop {name}`).") from None
    try:
        shutil.rmtree(folder)  # removes links inside as links, never what they point to
    except OSError as exc:
        raise UserError(f"Could not delete all of {folder}: {exc.strerror or exc}. Check its permissions and try again.") from None
    finally:
        lock.release()
