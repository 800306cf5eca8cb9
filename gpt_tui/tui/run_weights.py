"""The REPL on an attached run's weights: its newest checkpoint, or fresh weights from the live run.

A prompt typed right after attaching must not reach the untrained model the
app starts with, so each load here goes through the model source's
``begin_loading`` / ``finish_loading``: a reply asked for meanwhile waits for
the weights on their way. A run training in another process has no weights in
this one; before a reply, when what the REPL has is older than
LIVE_WEIGHTS_MAX_AGE_S, it asks the run (control action "weights") for a
model-only snapshot, runs.WEIGHTS_FILE, and waits a moment for it.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from gpt_tui.engine import runlock
from gpt_tui.engine.checkpoint_names import list_checkpoints
from gpt_tui.engine.runs import WEIGHTS_FILE, request_control
from gpt_tui.errors import UserError
from gpt_tui.textsafe import visible
from gpt_tui.tui.messages import RunWeightsLoaded
from gpt_tui.tui.model_source import LoadedModel, load_model_file

# Deferred imports: gpt_tui.engine.checkpoint needs torch, which the app's first frame must not load.

LIVE_WEIGHTS_MAX_AGE_S = 10.0  # a reply reuses a live run's snapshot younger than this
# The trainer answers between steps, and a big model's step can take many seconds: a reply waits
# this long at most, and no longer than the run lives.
LIVE_WEIGHTS_WAIT_S = 60.0
POLL_S = 0.05


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns, info.st_size


def fetch_live_snapshot(run_dir: str | Path, timeout: float = LIVE_WEIGHTS_WAIT_S) -> Path | None:
    """Ask the run's trainer for its current weights; the snapshot file once written, None if none came in time.

    The trainer replaces the file atomically, so a new identity means a whole file.
    """
    target = Path(run_dir) / WEIGHTS_FILE
    before = _identity(target)
    request_control(run_dir, "weights")
    deadline = time.monotonic() + timeout
    next_liveness_check = 0.0
    while time.monotonic() < deadline:
        now = _identity(target)
        if now is not None and now != before:
            return target
        if time.monotonic() >= next_liveness_check:
            if runlock.holder(run_dir) is None:
                return None  # the run ended (or was never live): nobody will answer
            next_liveness_check = time.monotonic() + 1.0
        time.sleep(POLL_S)
    return None


def _saved_step(path: Path) -> int | None:
    from gpt_tui.engine.checkpoint import read_header

    try:
        step = read_header(path).get("train_state", {}).get("step")
    except Exception:  # a header the loader accepted but without a step: say nothing about it
        return None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


class RunWeights:
    """Keeps the app's REPL on one run's newest weights."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.app: Any = None  # the GptTuiApp (not imported: the app imports this module's users)
        self.live = False  # the attachment says so on every poll
        self.step: int | None = None  # the step of the weights the REPL has from this run
        self._pending: threading.Event | None = None
        self._fetch_lock = threading.Lock()
        self._fresh_at = float("-inf")  # when a live snapshot was last asked for
        self.had_live_snapshot = False
        self._announced = False

    def bind(self, app: Any) -> None:
        self.app = app

    def expect(self, app: Any) -> None:
        """On attaching: if the run has a checkpoint, replies from now on wait for it."""
        self.bind(app)
        if self._pending is None and list_checkpoints(self.run_dir):
            self._pending = app.model_source.begin_loading()

    def cancel(self) -> None:
        """Nothing will be loaded (the run went away): let a waiting reply go on with what it has."""
        if self._pending is not None and self.app is not None:
            self.app.model_source.finish_loading(self._pending, None)
        self._pending = None

    def load_checkpoint_soon(self) -> None:
        """On the UI thread: load the run's newest checkpoint on a worker; replies wait for it."""
        app = self.app
        assert app is not None
        pending = self._pending or app.model_source.begin_loading()
        self._pending = None
        app.run_worker(lambda: self._load(pending, self._newest_checkpoint), thread=True, group="files", exit_on_error=False)

    def refresh(self) -> None:
        """On a reply's worker thread, before it picks its model: fresh weights from a live run."""
        app = self.app
        if app is None or time.monotonic() - self._fresh_at < LIVE_WEIGHTS_MAX_AGE_S:
            return
        if not (self.live or runlock.holder(self.run_dir) not in (None, os.getpid())):
            return  # (right after attaching the attachment may not have looked yet)
        self._fresh_at = time.monotonic()  # also when it does not answer: the next replies do not wait again
        self._load(app.model_source.begin_loading(), self._live_snapshot)

    # ----- on worker threads -----
    def _load(self, pending: threading.Event, find: Callable[[], "tuple[LoadedModel, int | None] | None"]) -> None:
        app = self.app
        assert app is not None
        found = None
        try:
            with self._fetch_lock:  # one load at a time, in the order asked
                found = find()
        finally:
            app.model_source.finish_loading(pending, found[0] if found else None)
            app.post_message(RunWeightsLoaded(self, found))

    def _newest_checkpoint(self) -> "tuple[LoadedModel, int | None] | None":
        from gpt_tui.engine.checkpoint import latest_checkpoint

        assert self.app is not None
        if self.live and self.had_live_snapshot:
            return None  # the REPL already has newer weights than any checkpoint of this run
        path = latest_checkpoint(self.run_dir)
        return load_model_file(str(path), self.app.settings.training.device), _saved_step(path)

    def _live_snapshot(self) -> "tuple[LoadedModel, int | None] | None":
        assert self.app is not None
        try:
            path = fetch_live_snapshot(self.run_dir)
        except UserError:  # the request could not be left (a read-only run folder): the reply uses what it has
            return None
        if path is None:
            return None
        step = _saved_step(path)
        loaded = load_model_file(str(path), self.app.settings.training.device)
        self.had_live_snapshot = True
        label = f"{visible(self.run_dir.name)} live weights" + (f" (step {step})" if step is not None else "")
        return replace(loaded, label=label), step

    # ----- back on the UI thread -----
    def announce(self, loaded: "LoadedModel", step: int | None) -> None:
        """The app's handler of RunWeightsLoaded: say once which weights of the run the REPL uses."""
        app = self.app
        assert app is not None
        self.step = step
        at = f"step {step}" if step is not None else "its newest checkpoint"
        name = visible(self.run_dir.name)
        if not self._announced:
            self._announced = True
            state = "training in another process, " if self.live else ""
            app.repl.note(f"Attached to run {name} ({state}{at}): replies come from its weights at {at}.")
