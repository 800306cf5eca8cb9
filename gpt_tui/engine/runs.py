"""Run directories: what a run is doing, read back from the files it writes.

A run directory holds ``config.json``, ``metrics.jsonl`` (one event a line),
``status.json`` (state, pid, step) and ``checkpoints/``. Anything that wants
to show runs — ``gpt-tui runs``, the app's checkpoint list, ``attach`` — reads
these files, so it works the same for a run in this process, in a detached
process, or one that ended long ago.

While a trainer lives it holds ``run.lock`` (gpt_tui.engine.runlock), which
tells a live run from a stale one, and it acts on requests other processes
leave in ``control/`` (``request_control``: stop, checkpoint, pause, resume).
A pid in status.json alone proves nothing (pids are reused, files get
damaged): it is trusted only with its recorded start time
(gpt_tui.engine.process_identity).

The files may be damaged or hand-edited: every reader here takes whatever it
finds without failing, and ``read_run`` reports such a run as "damaged",
saying why, so one bad folder never hides the others.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpt_tui import fileio, paths
from gpt_tui.engine import runlock
from gpt_tui.engine.best_checkpoint import BestMark, read_best
from gpt_tui.engine.checkpoint_names import list_checkpoints
from gpt_tui.engine.events import EvalEvent, StepEvent, TrainEvent, record_to_event
from gpt_tui.engine.process_identity import is_zombie, same_process, start_time, valid_pid
from gpt_tui.errors import UserError

STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
LIVE_STATES = ("running", "starting", "paused")  # states only a living process may claim
WEIGHTS_FILE = "weights.safetensors"  # a model-only snapshot a live run writes when asked ("weights")
METRICS_CSV_FILE = "metrics.csv"  # metrics.jsonl as a table: one row a step (gpt_tui.engine.metric_sinks)
TENSORBOARD_SUBDIR = "tensorboard"  # event files, with --tensorboard
CHART_EXPORT_FILE = "chart-{mode}.png"  # the app's chart, exported
SCREENSHOT_FILE = "screenshot-{stamp}.svg"  # the app's screen (palette → Screenshot)


@dataclass(frozen=True)
class RunInfo:
    name: str
    path: Path
    status: str  # running, starting, paused, finished, stopped, failed, stale (its process is gone), damaged, unknown
    step: int
    total_steps: int | None
    best_val_loss: float | None
    latest_checkpoint: Path | None
    model: str | None
    updated: float
    problem: str | None = None  # why the run is "damaged"
    best_checkpoint: BestMark | None = None  # the checkpoint of its best evaluation, if it keeps one
    last_eval: EvalEvent | None = None  # its latest evaluation: what it read of each split


def write_status(run_dir: str | Path, state: str, **fields: Any) -> None:
    """Replace status.json atomically; readers never see half a file.

    The pid (this process unless ``pid`` is given) goes with its start time
    (``pid_start``), which tells it from a later process that reuses the
    number. Only a caller that knows another process's start time for sure
    (the detach launcher, its parent) passes both.
    """
    run_dir = Path(run_dir)
    record = {"state": state, "pid": os.getpid(), "updated": time.time(), **fields}
    if "pid_start" not in fields and record["pid"] == os.getpid():
        record["pid_start"] = start_time(os.getpid())
    fileio.atomic_write_text(run_dir / STATUS_FILE, json.dumps(record) + "\n")  # a link there is replaced, not followed


def _load_json(path: Path) -> tuple[Any, str | None]:
    """The JSON value in ``path`` (None when missing), and what is wrong with the file if it is damaged."""
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except FileNotFoundError:
        return None, None
    except UnicodeDecodeError:
        return None, f"{path.name} is not text"
    except OSError as exc:
        return None, f"{path.name} cannot be read ({exc.strerror or exc})"
    except (ValueError, RecursionError):
        return None, f"{path.name} is not valid JSON"


def read_status(run_dir: str | Path) -> dict[str, Any]:
    """status.json as a dict (every field kept); {} when it is missing or not a JSON object."""
    value, _ = _load_json(Path(run_dir) / STATUS_FILE)
    return value if isinstance(value, dict) else {}


def checked_status(run_dir: str | Path) -> tuple[dict[str, Any], str | None]:
    """status.json and what makes it unusable (not JSON, not an object, a field of the wrong type).

    A damaged file gives ({}, why): nothing in it is acted on.
    """
    value, problem = _load_json(Path(run_dir) / STATUS_FILE)
    if problem is None and value is not None and not isinstance(value, dict):
        problem = f"{STATUS_FILE} is not a JSON object"
    if problem is not None or not isinstance(value, dict):
        return {}, problem
    if not isinstance(value.get("state", ""), str):
        return {}, f"{STATUS_FILE}: state is not text"
    for name in ("pid", "step", "total_steps"):
        field_value = value.get(name)
        if field_value is not None and (isinstance(field_value, bool) or not isinstance(field_value, int)):
            return {}, f"{STATUS_FILE}: {name} {_short(field_value)} is not an integer"
    return value, None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 24 else text[:21] + "..."


def process_alive(pid: int | None) -> bool:
    """Whether ``pid`` names a living process (a zombie is not); only for a pid this process just learnt."""
    if pid == os.getpid():
        return True
    checked = valid_pid(pid)
    if checked is None:
        return False
    try:
        os.kill(checked, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not is_zombie(checked)


def recorded_process(status: dict[str, Any]) -> int | None:
    """The pid status.json names, when that very process (same start time) still lives; None otherwise."""
    return same_process(status.get("pid"), status.get("pid_start"))


def run_is_live(run_dir: str | Path, status: dict[str, Any] | None = None) -> bool:
    """Whether a process is training in ``run_dir`` now, or is a background run about to.

    The run lock answers exactly (the kernel drops it when the trainer dies,
    however it dies). Before its trainer takes the lock, a background run is
    "starting", and is live while the process its launcher recorded (pid and
    start time) lives. A bare pid proves nothing: it may belong to anyone now.
    """
    if runlock.holder(run_dir) is not None:
        return True
    if not isinstance(status, dict):
        status = read_status(run_dir)
    return status.get("state") == "starting" and recorded_process(status) is not None


def new_run_dir(model: str, *, create: bool = True) -> Path:
    """A fresh, sortable folder under the user data dir, made now: ``runs/20261126-153012-tiny``.

    Made with an exclusive mkdir (the next suffix on a clash), so two runs
    started in the same second never share one; ``create=False`` only names one.
    """
    base = paths.runs_dir() / f"{time.strftime('%Y%m%d-%H%M%S')}-{model}"
    n = 1
    while create:
        candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            candidate.parent.mkdir(parents=True, exist_ok=True)
            candidate.mkdir()
            return candidate
        except FileExistsError:
            n += 1
        except OSError as exc:
            raise UserError(f"Cannot write the run directory {candidate}: {exc.strerror or exc}; pick another with --run-dir.") from None
    return base


def read_metrics(run_dir: str | Path, offset: int = 0, problems: list[str] | None = None) -> tuple[list[TrainEvent], int]:
    """Events in metrics.jsonl from byte ``offset``; returns them and the offset to continue from.

    A last line without its newline (a write in progress) is left for the next
    call. A line that is not a well-formed record is skipped; ``problems``, if
    given, collects what was wrong with each (line numbers count from ``offset``).
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
    for number, line in enumerate(data[:end].splitlines(), 1):
        try:
            event = record_to_event(json.loads(line))
        except (ValueError, TypeError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError included
            if problems is not None and line.strip():
                why = str(exc) if type(exc) is ValueError else "not valid JSON"
                problems.append(f"{METRICS_FILE} line {number}: {why}")
            continue
        if event is not None:
            events.append(event)
    return events, offset + end


def run_state(run_dir: str | Path) -> tuple[str, str | None]:
    """The run's state from status.json and its lock alone (quick: no metrics, no torch), and why it is damaged.

    A state only a living process may claim becomes "stale" unless the lock
    (or, still starting, the recorded identity) proves that process lives.
    """
    status, problem = checked_status(run_dir)
    if problem is not None:
        return "damaged", problem
    state = status.get("state", "unknown")
    if state in LIVE_STATES and not run_is_live(run_dir, status):
        state = "stale"
    return state, None


def read_run(run_dir: str | Path) -> RunInfo:
    """What ``gpt-tui runs`` shows of a run; never fails on damaged files (the run is "damaged", and says why)."""
    run_dir = Path(run_dir)
    problems: list[str] = []
    state, problem = run_state(run_dir)
    status = read_status(run_dir) if problem is None else {}
    events, _ = read_metrics(run_dir, problems=problems)
    step = 0
    total: int | None = status.get("total_steps")
    best: float | None = None
    last_eval: EvalEvent | None = None
    for event in events:
        if isinstance(event, StepEvent):
            step = max(step, event.step)
            total = event.total_steps
        elif isinstance(event, EvalEvent):
            last_eval = event
            if event.val_loss == event.val_loss:  # not NaN
                best = event.val_loss if best is None else min(best, event.val_loss)
    try:
        checkpoints = list_checkpoints(run_dir)
    except OSError:
        checkpoints = []
    config, config_problem = _load_json(run_dir / CONFIG_FILE)
    if config_problem is None and config is not None and not isinstance(config, dict):
        config_problem = f"{CONFIG_FILE} is not a JSON object"
    model = config.get("model") if isinstance(config, dict) else None
    if config_problem is None and model is not None and not isinstance(model, str):
        config_problem, model = f"{CONFIG_FILE}: model is not text", None
    problem = problem or config_problem or (problems[0] if problems else None)
    try:
        updated = max(p.stat().st_mtime for p in run_dir.iterdir())
    except (OSError, ValueError):
        updated = 0.0
    return RunInfo(
        name=run_dir.name,
        path=run_dir,
        status="damaged" if problem else state,
        step=step,
        total_steps=total,
        best_val_loss=best,
        last_eval=last_eval,
        latest_checkpoint=checkpoints[-1] if checkpoints else None,
        best_checkpoint=read_best(run_dir),
        model=model,
        updated=updated,
        problem=problem,
    )


def list_runs(root: str | Path | None = None) -> list[RunInfo]:
    """Every run under ``root`` (the user data dir's runs/ by default), newest first."""
    root = Path(root) if root is not None else paths.runs_dir()
    if not root.is_dir():
        return []
    runs = [read_run(p) for p in root.iterdir() if p.is_dir() and ((p / CONFIG_FILE).exists() or (p / STATUS_FILE).exists())]
    return sorted(runs, key=lambda r: r.updated, reverse=True)


def find_run(name_or_path: str | None) -> Path:
    """A run directory from a path, a run name under runs/, or (None) the newest run."""
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
CONTROL_ACTIONS = ("stop", "checkpoint", "pause", "resume", "weights")


def request_control(run_dir: str | Path, action: str) -> Path:
    """Leave a request for the run's trainer, which picks it up between steps.

    Works the same for a run in this process, the app, or a detached process:
    the trainer that holds the run's lock polls ``<run>/control/`` a few times
    a second. ``stop`` saves a checkpoint and ends the run, ``checkpoint``
    saves one and goes on, ``pause`` and ``resume`` hold and release it,
    ``weights`` writes the current weights to WEIGHTS_FILE (model only) for an
    attached app to talk to.
    """
    if action not in CONTROL_ACTIONS:
        raise UserError(f"Unknown run request {action!r}; use one of {', '.join(CONTROL_ACTIONS)}.")
    folder = Path(run_dir) / CONTROL_DIR
    try:
        path = fileio.atomic_write_text(fileio.checked_dir(folder) / action, f"{time.time()}\n")
    except UserError:
        raise
    except OSError as exc:
        raise UserError(f"Cannot leave a {action} request in {run_dir}: {exc.strerror or exc}.") from None
    return path


def take_control_requests(run_dir: str | Path, *, check: bool = False) -> list[str]:
    """The pending requests, oldest first, removed as they are read (each is acted on once).

    A ``control`` that is a link is never looked into (removing requests
    there would delete files elsewhere); with ``check`` that raises
    UnsafePathError, otherwise there are simply no requests.
    """
    folder = Path(run_dir) / CONTROL_DIR
    found: list[tuple[float, str]] = []
    try:
        with fileio.open_folder(folder) as fd:
            for action in CONTROL_ACTIONS:
                try:
                    when = os.stat(action, dir_fd=fd, follow_symlinks=False).st_mtime
                    os.unlink(action, dir_fd=fd)
                except OSError:
                    continue
                found.append((when, action))
    except fileio.UnsafePathError:
        if check:
            raise
    except OSError:
        pass  # no requests left yet
    return [action for _, action in sorted(found)]
