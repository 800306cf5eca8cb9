"""Run directories: what a run is doing, read back from the files it writes.

A run directory holds ``config.json``, ``metrics.jsonl`` (one event a line),
``status.json`` (state, pid, step) and ``checkpoints/``. Anything that wants
to show runs — ``gpt-tui runs``, the app's checkpoint list, ``attach`` — reads
these files, so it works the same for a run in this process, in a detached
process, or one that ended long ago.

While a trainer lives it holds ``run.lock`` (gpt_tui.engine.runlock), which
tells a live run from a stale one, and it acts on requests other processes
leave in ``control/`` (``request_control``: stop, checkpoint, pause, resume).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpt_tui import paths
from gpt_tui.engine import runlock
from gpt_tui.engine.events import EvalEvent, StepEvent, TrainEvent, record_to_event

STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"


@dataclass(frozen=True)
class RunInfo:
    name: str
    path: Path
    status: str  # running, finished, stopped, failed, stale (its process is gone), unknown
    step: int
    total_steps: int | None
    best_val_loss: float | None
    latest_checkpoint: Path | None
    model: str | None
    updated: float


def write_status(run_dir: str | Path, state: str, **fields: Any) -> None:
    """Replace status.json atomically; readers never see half a file."""
    run_dir = Path(run_dir)
    record = {"state": state, "pid": os.getpid(), "updated": time.time(), **fields}
    tmp = run_dir / f".{STATUS_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")
    os.replace(tmp, run_dir / STATUS_FILE)


def read_status(run_dir: str | Path) -> dict[str, Any]:
    try:
        return json.loads((Path(run_dir) / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def process_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) still answers kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        return stat.rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def run_is_live(run_dir: str | Path, pid: int | None = None) -> bool:
    """Whether a process is training in ``run_dir`` now.

    The run lock answers exactly (the kernel drops it when the trainer dies,
    however it dies); a run from before the lock existed falls back to its pid.
    """
    if runlock.holder(run_dir) is not None:
        return True
    if runlock.has_lock_file(run_dir):
        return False
    return process_alive(pid)


def new_run_dir(model: str) -> Path:
    """A fresh, sortable folder under the user data dir: ``runs/20261126-153012-tiny``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = paths.runs_dir() / f"{stamp}-{model}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def read_metrics(run_dir: str | Path, offset: int = 0) -> tuple[list[TrainEvent], int]:
    """Events in metrics.jsonl from byte ``offset``; returns them and the offset to continue from.

    A last line without its newline (a write in progress) is left for the next call.
    """
    path = Path(run_dir) / METRICS_FILE
    events: list[TrainEvent] = []
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return events, offset
    end = data.rfind(b"\n") + 1
    for line in data[:end].splitlines():
        try:
            event = record_to_event(json.loads(line))
        except (json.JSONDecodeError, TypeError, UnicodeDecodeError):
            continue
        if event is not None:
            events.append(event)
    return events, offset + end


def read_run(run_dir: str | Path) -> RunInfo:
    from gpt_tui.engine.checkpoint import list_checkpoints

    run_dir = Path(run_dir)
    status = read_status(run_dir)
    state = status.get("state", "unknown")
    if state in ("running", "starting") and not run_is_live(run_dir, status.get("pid")):
        state = "stale"
    events, _ = read_metrics(run_dir)
    step = 0
    total: int | None = status.get("total_steps")
    best: float | None = None
    for event in events:
        if isinstance(event, StepEvent):
            step = max(step, event.step)
            total = event.total_steps
        elif isinstance(event, EvalEvent) and event.val_loss == event.val_loss:  # not NaN
            best = event.val_loss if best is None else min(best, event.val_loss)
    checkpoints = list_checkpoints(run_dir)
    model = None
    try:
        model = json.loads((run_dir / "config.json").read_text(encoding="utf-8")).get("model")
    except (OSError, json.JSONDecodeError):
        pass
    try:
        updated = max(p.stat().st_mtime for p in run_dir.iterdir())
    except (OSError, ValueError):
        updated = 0.0
    return RunInfo(
        name=run_dir.name,
        path=run_dir,
        status=state,
        step=step,
        total_steps=total,
        best_val_loss=best,
        latest_checkpoint=checkpoints[-1] if checkpoints else None,
        model=model,
        updated=updated,
    )


def list_runs(root: str | Path | None = None) -> list[RunInfo]:
    """Every run under ``root`` (the user data dir's runs/ by default), newest first."""
    root = Path(root) if root is not None else paths.runs_dir()
    if not root.is_dir():
        return []
    runs = [read_run(p) for p in root.iterdir() if p.is_dir() and ((p / "config.json").exists() or (p / STATUS_FILE).exists())]
    return sorted(runs, key=lambda r: r.updated, reverse=True)


def find_run(name_or_path: str | None) -> Path:
    """A run directory from a path, a run name under runs/, or (None) the newest run."""
    from gpt_tui.errors import UserError

    if name_or_path:
        candidate = paths.expand_user(name_or_path)
        if candidate.is_dir():
            return candidate
        named = paths.runs_dir() / name_or_path
        if named.is_dir():
            return named
        raise UserError(f"No run called {name_or_path!r}; `gpt-tui runs` lists them.")
    runs = list_runs()
    if not runs:
        raise UserError("There are no runs yet; start one with `gpt-tui train`.")
    return runs[0].path


@dataclass
class FollowUpdate:
    """What changed in a followed run since the last poll."""

    events: list[TrainEvent] = field(default_factory=list)
    reset: bool = False  # the log was rewritten (a resume dropped newer records): start the curves over


class RunFollower:
    """Tails a run's metrics.jsonl by byte offset, for a live chart of a run in another process.

    A resume rewrites metrics.jsonl without the records past its checkpoint;
    the follower notices the new file (another inode, or fewer bytes than it
    has read) and reports ``reset`` with every event from the start.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.offset = 0
        self._identity: tuple[int, int] | None = None

    def poll(self) -> FollowUpdate:
        path = self.run_dir / METRICS_FILE
        try:
            info = path.stat()
        except OSError:
            return FollowUpdate()
        identity = (info.st_dev, info.st_ino)
        reset = self._identity is not None and (identity != self._identity or info.st_size < self.offset)
        if reset:
            self.offset = 0
        self._identity = identity
        if info.st_size == self.offset:
            return FollowUpdate(reset=reset)
        events, self.offset = read_metrics(self.run_dir, self.offset)
        return FollowUpdate(events, reset)



# ----- asking a live run to do something -----
CONTROL_DIR = "control"
CONTROL_ACTIONS = ("stop", "checkpoint", "pause", "resume")


def request_control(run_dir: str | Path, action: str) -> Path:
    """Leave a request for the run's trainer, which picks it up between steps.

    Works the same for a run in this process, the app, or a detached process:
    the trainer that holds the run's lock polls ``<run>/control/`` a few times
    a second. ``stop`` saves a checkpoint and ends the run, ``checkpoint``
    saves one and goes on, ``pause`` and ``resume`` hold and release it.
    """
    from gpt_tui.errors import UserError

    if action not in CONTROL_ACTIONS:
        raise UserError(f"Unknown run request {action!r}; use one of {', '.join(CONTROL_ACTIONS)}.")
    folder = Path(run_dir) / CONTROL_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / action
        tmp = folder / f".{action}.{os.getpid()}.tmp"
        tmp.write_text(f"{time.time()}\n", encoding="ascii")
        os.replace(tmp, path)
    except OSError as exc:
        raise UserError(f"Cannot leave a {action} request in {run_dir}: {exc.strerror or exc}.") from None
    return path


def take_control_requests(run_dir: str | Path) -> list[str]:
    """The pending requests, oldest first, removed as they are read (each is acted on once)."""
    folder = Path(run_dir) / CONTROL_DIR
    found: list[tuple[float, str]] = []
    for action in CONTROL_ACTIONS:
        path = folder / action
        try:
            when = path.stat().st_mtime
            path.unlink()
        except OSError:
            continue
        found.append((when, action))
    return [action for _, action in sorted(found)]
