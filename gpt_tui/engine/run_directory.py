"""The folder a training run owns while it trains: its lock, the requests left there, its status, config and metrics.

Everything a trainer writes into its run directory goes through one
``RunDirectory``, so the loop never names a file and the rules live in one
place: only rank 0 writes; nothing is written before the folder is claimed
(gpt_tui.engine.ownership); requests other processes leave in ``control/``
are acted on only while the lock is held; a folder made for a run that failed
before writing anything is removed again.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

from gpt_tui import fileio
from gpt_tui.engine import metric_sinks, ownership, runlock
from gpt_tui.engine.checkpoint_names import CHECKPOINTS_SUBDIR, checkpoint_name
from gpt_tui.engine.events import TrainEvent, event_to_record
from gpt_tui.engine.runs import CONFIG_FILE, METRICS_FILE, WEIGHTS_FILE, new_run_dir, take_control_requests, write_status
from gpt_tui.engine.train_options import TrainConfig
from gpt_tui.errors import UserError

CONTROL_POLL_S = 0.2  # how often a run looks for stop / checkpoint / pause requests left in its directory


class RunDirectory:
    """One run's folder, as the trainer of that run (or one rank of it) sees it."""

    def __init__(
        self,
        path: Path,
        *,
        is_main: bool,
        made_here: bool,
        claim_as: str | None,
        actions: Mapping[str, Callable[[], object]],
    ) -> None:
        self.path = path
        self.is_main = is_main  # rank 0 writes for every rank
        self.made_here = made_here  # made for this run alone (atomically: no race)
        self._claim_as = claim_as  # the run id a used folder is refused for; None continues the run there
        self._actions = actions  # what each control request (runs.CONTROL_ACTIONS) does
        self._lock: runlock.RunLock | None = None
        self._control_done: threading.Event | None = None
        self._control_thread: threading.Thread | None = None
        self._sinks: list[metric_sinks.MetricSink] = []  # the CSV and TensorBoard, once prepared

    @classmethod
    def for_run(
        cls, config: TrainConfig, resume_path: Path | None, *, is_main: bool, actions: Mapping[str, Callable[[], object]]
    ) -> "RunDirectory":
        """The folder ``config`` trains in: the one named, the resumed run's own, or a new one.

        Settles ``config.run_dir`` and ``config.run_id``.
        """
        home = ownership.run_home(resume_path) if resume_path is not None else None
        if home is not None and config.run_dir is None:
            config.run_dir = str(home)
        in_place = ownership.same_dir(config.run_dir, home)  # continuing the run that lives there
        made_here = config.run_dir is None
        path = Path(config.run_dir) if config.run_dir else new_run_dir(config.model, create=is_main)
        config.run_dir = str(path)
        config.run_id = config.run_id or ownership.new_run_id()
        claim_as = None if in_place else config.run_id
        return cls(path, is_main=is_main, made_here=made_here, claim_as=claim_as, actions=actions)

    @property
    def locked(self) -> bool:
        """Whether this trainer holds the run's lock, that is, owns the folder now."""
        return self._lock is not None

    def checkpoint_path(self, step: int) -> Path:
        return self.path / CHECKPOINTS_SUBDIR / checkpoint_name(step)

    # ----- ownership -----
    def claim(self) -> None:
        """Lock the folder, refusing one another run has used unless this run continues there (--resume)."""
        if self._lock is None and self.is_main:
            ownership.claim(self.path, self._claim_as, lock=self._acquire, unlock=self.release)

    def _acquire(self) -> None:
        if self._lock is None and self.is_main:
            self._lock = runlock.acquire(self.path)
            self._start_control_watch()

    def release(self) -> None:
        """Close the metric sinks, stop acting on requests and drop the lock; safe to call when none is held."""
        sinks, self._sinks = self._sinks, []
        for sink in sinks:
            with contextlib.suppress(OSError):  # the run is over; metrics.jsonl holds every event
                sink.close()
        if self._control_done is not None:
            self._control_done.set()
            self._control_done = None
        if self._control_thread is not None:
            self._control_thread.join(timeout=5)  # gone before the interpreter shuts down
            self._control_thread = None
        if self._lock is not None:
            with contextlib.suppress(OSError):  # a live run's snapshot for attached apps; its checkpoints remain
                (self.path / WEIGHTS_FILE).unlink()
            self._lock.release()
            self._lock = None

    def remove_if_unused(self) -> None:
        """Remove a folder made for this run when the run failed before it ever took it."""
        if self.made_here and self._lock is None and self.is_main:
            with contextlib.suppress(OSError):
                self.path.rmdir()

    def _start_control_watch(self) -> None:
        """Act on requests other processes leave in the run directory (see runs.request_control)."""
        take_control_requests(self.path, check=True)  # left over from an earlier process: not meant for this one
        done = threading.Event()

        def watch() -> None:
            while not done.wait(CONTROL_POLL_S):
                for action in take_control_requests(self.path):
                    self._actions[action]()

        self._control_done = done
        self._control_thread = threading.Thread(target=watch, name="run-control", daemon=True)
        self._control_thread.start()

    # ----- the files -----
    def prepare(self, config: dict[str, Any], *, resumed_step: int | None) -> None:
        """Make and claim the folder, write config.json; on resume, cut metrics back to ``resumed_step``; open the sinks."""
        if not self.is_main:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.claim()
            fileio.refuse_link(self.path / CHECKPOINTS_SUBDIR)
            fileio.atomic_write_text(self.path / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
        except UserError:
            raise
        except OSError as exc:
            raise UserError(f"Cannot write the run directory {self.path}: {exc.strerror or exc}; pick another with --run-dir.") from None
        metrics = self.path / METRICS_FILE
        if resumed_step is not None and os.path.lexists(metrics):
            self._truncate_metrics(metrics, resumed_step)
        self._sinks = metric_sinks.open_sinks(self.path, tensorboard=bool(config.get("tensorboard")), resumed_step=resumed_step)

    def _truncate_metrics(self, metrics: Path, step: int) -> None:
        """Drop records newer than the resumed step, so the log reads as one unbroken run."""
        fileio.refuse_link(metrics)
        kept = []
        for line in metrics.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
            if record.get("type") in ("done", "error", "start"):
                continue
            if record.get("step", 0) <= step:
                kept.append(line)
        fileio.atomic_write_text(metrics, "".join(k + "\n" for k in kept))

    def append_metric(self, event: TrainEvent) -> None:
        with fileio.open_append(self.path / METRICS_FILE) as fh:
            fh.write(json.dumps(event_to_record(event)) + "\n")
        for sink in self._sinks:
            sink.write(event)

    def write_status(self, state: str, *, step: int, total_steps: int | None, **extra: Any) -> None:
        """status.json, best effort: a status that cannot be written never fails the run; None extras are left out."""
        if not self.is_main or not self.path.is_dir():
            return
        try:
            extra = {key: value for key, value in extra.items() if value is not None}
            write_status(self.path, state, step=step, total_steps=total_steps, **extra)
        except OSError:
            pass

    def failure_message(self, exc: OSError) -> str:
        """What to tell the user when a write failed: the run directory's fault, or another file's."""
        name = exc.filename if isinstance(exc.filename, str) else None  # no name: the metrics log's write
        if name and not Path(name).resolve().is_relative_to(self.path.resolve()):
            return f"Cannot use {name}: {exc.strerror or exc}. The last saved checkpoint is intact."
        return (
            f"Cannot write to the run directory {self.path}: {exc.strerror or exc}. "
            "Free some space or pick another --run-dir; the last saved checkpoint is intact."
        )
