"""The app on a run that trains in another process: ``gpt-tui attach``, and "train in the background".

A :class:`RunAttachment` is an invisible widget mounted in the app. A few
times a second it reads the new lines of the run's metrics.jsonl (the same
events the in-process trainer sends) and posts them to the app
(gpt_tui.tui.messages.RunPolled), so the chart, the training pane and the
notifications behave as for a run in the app. While the run is alive the
app's controls (F5 pause and resume, F6 stop, F8 checkpoint now) reach it
through a RemoteRun (gpt_tui.tui.remote_run); the REPL talks to the run's
newest weights (gpt_tui.tui.run_weights). Quitting the app leaves the run training.

``--compare`` overlays another run's curves (gpt_tui.tui.compare); the
command-line entries and the hangup handler are in gpt_tui.tui.launch.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from textual.app import App
from textual.widget import Widget

from gpt_tui.engine import runlock
from gpt_tui.engine.checkpoint_names import CHECKPOINTS_SUBDIR, STEP_NAME
from gpt_tui.engine.detach import start_detached
from gpt_tui.engine.events import CheckpointEvent
from gpt_tui.engine.runs import RunFollower, new_run_dir, read_status, run_is_live
from gpt_tui.engine.train_options import train_argv
from gpt_tui.errors import UserError
from gpt_tui.tui.compare import CombinedHistory, ComparedRun, compare_with
from gpt_tui.tui.config import train_config_kwargs
from gpt_tui.tui.messages import AttachmentEnded, AttachmentFailed, AttachmentStarted, BackgroundStarted, RunPolled, RunSeen
from gpt_tui.tui.remote_run import RemoteRun
from gpt_tui.tui.run_weights import RunWeights

__all__ = [  # the Runs screen and the tests reach the followers through this module
    "CombinedHistory", "ComparedRun", "RemoteRun", "RunAttachment", "attach_to", "background_train_args",
    "compare_with", "start_background",
]

FOLLOW_INTERVAL_S = 0.5
RELOAD_WEIGHTS_EVERY_S = 30.0  # a live run's newest checkpoint is loaded for the REPL at most this often
LIVE_STATES_WITHOUT_PROCESS = ("running", "starting", "paused")  # a status that says alive, with no process behind it


class RunAttachment(Widget):
    """Shows a run directory in the app, live, and relays the app's controls to its process."""

    DEFAULT_CSS = "RunAttachment { display: none; }"

    def __init__(self, run_dir: str | Path, *, poll_interval: float = FOLLOW_INTERVAL_S) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.remote = RemoteRun(self.run_dir, on_error=self._say_error)
        self.follower = RunFollower(self.run_dir)
        self.poll_interval = poll_interval
        self.live = False
        self.polls = 0
        self._told_stale = False
        self._weights_loaded_at = 0.0
        self._newer_checkpoint = False
        self.weights = RunWeights(self.run_dir)  # the REPL on this run's newest weights

    def _say_error(self, message: str) -> None:
        self.app.notify(message, severity="error", timeout=10)

    def on_mount(self) -> None:
        app = self.app
        self.weights.bind(app)
        if not self.run_dir.is_dir():
            self.weights.cancel()
            app.post_message(AttachmentFailed(UserError(f"Run directory {self.run_dir} does not exist; `gpt-tui runs` lists the runs.")))
            self.remove()
            return
        app.post_message(AttachmentStarted(self.run_dir, self.weights.refresh))
        self.poll()
        self.set_interval(self.poll_interval, self.poll)

    def poll(self) -> None:
        """Post the run's new events and its state (alive, ended, gone) to the app."""
        holder = runlock.holder(self.run_dir)
        trainer = getattr(self.app, "trainer", None)
        if holder == os.getpid() or (trainer is not None and not isinstance(trainer, RemoteRun)):
            self.remove()  # the app trains this run itself now (F5 resumed it): its own events take over
            return
        first = self.polls == 0
        self.polls += 1
        update = self.follower.poll()
        if any(isinstance(e, CheckpointEvent) for e in update.events) or (first and self._has_checkpoint()):
            self._newer_checkpoint = True
        status = read_status(self.run_dir)
        live = holder is not None or run_is_live(self.run_dir, status)
        state = status.get("state")
        stale_note = None
        if not live and state in LIVE_STATES_WITHOUT_PROCESS and not self._told_stale:
            self._told_stale = True
            stale_note = f"Run {self.run_dir.name} is stale: its process is gone. F5 resumes it from its last checkpoint."
        resume_from = str(self.run_dir) if not live and state != "finished" and self._has_checkpoint() else None
        # The run's past (or its log rewritten by a resume elsewhere) is folded in quietly.
        seen = RunSeen(self.run_dir, list(update.events), first or update.reset, update.reset, live, status, stale_note, resume_from)
        self.app.post_message(RunPolled(seen, self.remote))
        self.weights.live = live
        periodic = not self.weights.had_live_snapshot and time.monotonic() - self._weights_loaded_at > RELOAD_WEIGHTS_EVERY_S
        if self._newer_checkpoint and (first or not live or periodic):
            self._load_newest_weights()
        elif first:
            self.weights.cancel()  # no checkpoint yet: nothing for a reply to wait for
        self.live = live

    def _has_checkpoint(self) -> bool:
        folder = self.run_dir / CHECKPOINTS_SUBDIR
        return folder.is_dir() and any(STEP_NAME.match(p.name) for p in folder.iterdir())

    def _load_newest_weights(self) -> None:
        self._weights_loaded_at = time.monotonic()
        self._newer_checkpoint = False
        self.weights.load_checkpoint_soon()

    def on_unmount(self) -> None:
        # The app's own unmount stops only a trainer in this process: a run in another process keeps going.
        self.weights.live = False
        self.weights.cancel()
        self.app.post_message(AttachmentEnded(self.remote, self.weights.refresh))


def attach_to(app: App[Any], run_dir: str | Path) -> RunAttachment:
    """Point the app at a run directory (replacing any run it followed before)."""
    for old in app.query(RunAttachment):
        old.remove()
    attachment = RunAttachment(run_dir)
    attachment.weights.expect(app)  # a prompt typed from now on waits for the run's weights
    app.mount(attachment)
    return attachment


def background_train_args(training: Any) -> list[str]:
    """``gpt-tui train`` flags for the app's training settings (a TrainingSettings)."""
    return train_argv(train_config_kwargs(training))


def start_background(app: Any) -> None:
    """Train the current settings (or continue the opened run) in a process that outlives the app (a GptTuiApp)."""
    if app.progress.active and app.trainer is not None and not isinstance(app.trainer, RemoteRun):
        app.notify("Training is running in the app; stop it first, then start it in the background.", severity="warning")
        return
    if any(a.live for a in app.query(RunAttachment)):
        app.notify("The run shown here already trains in the background.")
        return
    resume, training = app.resume_from, app.settings.training
    app.run_worker(lambda: _launch(app, resume, training), thread=True, group="files", exit_on_error=False)


def _launch(app: App[Any], resume: str | None, training: Any) -> None:
    """The worker: start the process, then tell the app (BackgroundStarted), which attaches to it."""
    if resume:
        run_dir, argv = Path(resume), [f"--resume={Path(resume).resolve()}"]
    else:
        run_dir, argv = new_run_dir(training.model), background_train_args(training)
    run = start_detached(argv, run_dir)
    app.post_message(BackgroundStarted(run.run_dir, run.pid))
