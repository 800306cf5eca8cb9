"""The app on a run that trains in another process: ``gpt-tui attach``, and "train in the background".

A :class:`RunAttachment` is an invisible widget mounted in the app. A few
times a second it reads the new lines of the run's metrics.jsonl (the same
events the in-process trainer sends) and hands them to the app's event
buffer, so the chart, the training pane and the notifications behave as for
a run in the app. While the run is alive the app's controls (F5 pause and
resume, F6 stop, F8 checkpoint now) reach it through requests left in its
directory (gpt_tui.engine.runs.request_control); the REPL talks to its newest
checkpoint. Quitting the app leaves the run training.

``--compare`` (or :func:`compare_with`) overlays another run's curves on the
chart, followed live as well.

:func:`install_hangup_handler` covers the other way a terminal goes away: on
SIGHUP (the SSH connection dropped) or SIGTERM, a run training inside the app
is stopped and saved before the app exits.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from textual.widget import Widget

from gpt_tui.engine import runlock
from gpt_tui.engine.events import CheckpointEvent
from gpt_tui.engine.runs import RunFollower, read_status, request_control, run_is_live
from gpt_tui.errors import UserError
from gpt_tui.tui.chart_data import LossHistory, Series

if TYPE_CHECKING:
    from gpt_tui.tui.app import GptTuiApp

FOLLOW_INTERVAL_S = 0.5
RELOAD_WEIGHTS_EVERY_S = 30.0  # a live run's newest checkpoint is loaded for the REPL at most this often
COMPARE_COLORS = {"train": "compare-train", "val": "compare-val", "lr": "compare-train"}


class RemoteRun:
    """Stands in for the app's Trainer while the run trains in another process.

    The app calls these on F5, F6 and F8; each leaves a request the run's
    trainer picks up between steps. A checkpoint asked for while the run is
    paused is saved when it resumes.
    """

    model = None  # no live weights here: the REPL uses the newest checkpoint

    def __init__(self, run_dir: Path, on_error: Callable[[str], None] | None = None) -> None:
        self.run_dir = run_dir
        self.on_error = on_error

    def _request(self, action: str) -> None:
        try:
            request_control(self.run_dir, action)
        except UserError as exc:  # e.g. the run directory went read-only: say so, keep the app up
            if self.on_error is None:
                raise
            self.on_error(str(exc))

    def request_stop(self) -> None:
        self._request("stop")

    def request_checkpoint(self) -> None:
        self._request("checkpoint")

    def save(self) -> None:
        self._request("checkpoint")

    def pause(self) -> None:
        self._request("pause")

    def unpause(self) -> None:
        self._request("resume")


class CombinedHistory:
    """The app's own curves plus other runs' curves, read by the chart as one history."""

    def __init__(self, primary: LossHistory) -> None:
        self.primary = primary
        self.others: list[tuple[str, LossHistory]] = []

    @property
    def version(self) -> tuple[int, ...]:
        return (self.primary.version, *(history.version for _, history in self.others))

    @property
    def points(self) -> int:
        return self.primary.points + sum(history.points for _, history in self.others)

    def series(self, mode: str, max_points: int) -> list[Series]:
        out = self.primary.series(mode, max_points)
        for name, history in self.others:
            for series in history.series(mode, max_points):
                out.append(Series(f"{name} {series.label}", COMPARE_COLORS[series.color_key], series.xs, series.ys))
        return out

    def __getattr__(self, name: str) -> Any:  # clear(), add(), train, val... are the primary's
        return getattr(self.primary, name)


class ComparedRun(Widget):
    """Another run's curves on the chart, kept up to date while it trains."""

    DEFAULT_CSS = "ComparedRun { display: none; }"

    def __init__(self, run_dir: str | Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.history = LossHistory()
        self.follower = RunFollower(self.run_dir)

    def on_mount(self) -> None:
        app: GptTuiApp = self.app  # type: ignore[assignment]
        combined = app.chart.history
        if not isinstance(combined, CombinedHistory):
            combined = CombinedHistory(app.history)
            app.chart.history = combined  # type: ignore[assignment]
        combined.others.append((self.run_dir.name, self.history))
        self.poll()
        self.set_interval(FOLLOW_INTERVAL_S, self.poll)

    def poll(self) -> None:
        update = self.follower.poll()
        if update.reset:
            self.history.clear()
        for event in update.events:
            self.history.add(event)

    def on_unmount(self) -> None:
        combined = getattr(self.app.chart, "history", None)
        if isinstance(combined, CombinedHistory):
            combined.others = [(n, h) for n, h in combined.others if h is not self.history]


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

    @property
    def gui(self) -> "GptTuiApp":
        return self.app  # type: ignore[return-value]

    def _say_error(self, message: str) -> None:
        self.gui.notify(message, severity="error", timeout=10)

    def on_mount(self) -> None:
        app = self.gui
        if not self.run_dir.is_dir():
            app._show_error(UserError(f"Run directory {self.run_dir} does not exist; `gpt-tui runs` lists the runs."), "Cannot attach")
            self.remove()
            return
        app.buffer.drain()
        app.history.clear()
        app.progress.reset_for_start()
        self.poll()
        self.set_interval(self.poll_interval, self.poll)

    def poll(self) -> None:
        """Hand new events to the app; follow the run's state (alive, ended, gone)."""
        app = self.gui
        holder = runlock.holder(self.run_dir)
        if holder == os.getpid() or (app.trainer is not None and app.trainer is not self.remote):
            self.remove()  # the app trains this run itself now (F5 resumed it): its own events take over
            return
        first = self.polls == 0
        self.polls += 1
        update = self.follower.poll()
        if first or update.reset:
            # The run's past (or its log rewritten by a resume elsewhere): fold it in quietly.
            if update.reset:
                app.buffer.drain()
                app.history.clear()
            for event in update.events:
                app.progress.apply(event)
                app.history.add(event)
        elif update.events:
            for event in update.events:  # new events: the same path, and notifications, as a run in the app
                app.buffer.push(event)
            app.drain_events()
        app.progress.run_dir = str(self.run_dir)
        if any(isinstance(e, CheckpointEvent) for e in update.events) or (first and self._has_checkpoint()):
            self._newer_checkpoint = True
        status = read_status(self.run_dir)
        live = holder is not None or run_is_live(self.run_dir, status.get("pid"))
        if live:
            self._while_alive(status)
        else:
            self._once_ended(status)
        if self._newer_checkpoint and (first or not live or time.monotonic() - self._weights_loaded_at > RELOAD_WEIGHTS_EVERY_S):
            self._load_newest_weights()
        self.live = live
        app.training_pane.refresh_progress()
        app.update_repl_status()

    def _has_checkpoint(self) -> bool:
        folder = self.run_dir / "checkpoints"
        return folder.is_dir() and any(folder.glob("step-*.safetensors"))

    def _while_alive(self, status: dict[str, Any]) -> None:
        app = self.gui
        app.trainer = self.remote
        app.resume_from = None
        if status.get("state") == "starting":
            app.progress.state = "preparing"
        elif app.progress.state not in ("paused", "stopping"):
            app.progress.state = "running"

    def _once_ended(self, status: dict[str, Any]) -> None:
        app = self.gui
        if app.trainer is self.remote:
            app.trainer = None
        state = status.get("state")
        if state in ("finished", "stopped", "failed"):
            app.progress.state = state
            if state == "failed" and status.get("message"):
                app.progress.message = str(status["message"])
        elif state in ("running", "starting"):  # its process is gone without a word
            app.progress.state = "stopped"
            if not self._told_stale:
                self._told_stale = True
                app.notify(f"Run {self.run_dir.name} is stale: its process is gone. F5 resumes it from its last checkpoint.",
                           severity="warning", timeout=10)
        app.resume_from = str(self.run_dir) if state != "finished" and self._has_checkpoint() else None

    def _load_newest_weights(self) -> None:
        self._weights_loaded_at = time.monotonic()
        self._newer_checkpoint = False
        self.gui._load_weights(str(self.run_dir))

    def on_unmount(self) -> None:
        # Runs before the app's own unmount, which stops its trainer: a run in another process keeps going.
        app = self.gui
        if app.trainer is self.remote:
            app.trainer = None


def attach_to(app: "GptTuiApp", run_dir: str | Path) -> RunAttachment:
    """Point the app at a run directory (replacing any run it followed before)."""
    for old in app.query(RunAttachment):
        old.remove()
    attachment = RunAttachment(run_dir)
    app.mount(attachment)
    return attachment


def compare_with(app: "GptTuiApp", run_dir: str | Path) -> ComparedRun:
    """Overlay another run's loss curves on the app's chart."""
    folder = Path(run_dir)
    if not folder.is_dir():
        raise UserError(f"Run directory {run_dir} does not exist; `gpt-tui runs` lists the runs.")
    compared = ComparedRun(folder)
    app.mount(compared)
    return compared


def background_train_args(training: Any) -> list[str]:
    """``gpt-tui train`` flags for the app's training settings (a TrainingSettings)."""
    from gpt_tui.tui.config import train_config_kwargs

    argv = []
    for name, value in train_config_kwargs(training).items():
        flag = "--" + name.replace("_", "-")
        if value is None:
            if name == "grad_clip":
                argv.append(f"{flag}=0")  # the command's spelling of "no clipping"
            continue
        argv.append(f"{flag}={value}")
    return argv


def start_background(app: "GptTuiApp") -> None:
    """Train the current settings (or continue the opened run) in a process that outlives the app."""
    if app.progress.active and app.trainer is not None and not isinstance(app.trainer, RemoteRun):
        app.notify("Training is running in the app; stop it first, then start it in the background.", severity="warning")
        return
    if any(a.live for a in app.query(RunAttachment)):
        app.notify("The run shown here already trains in the background.")
        return
    resume = app.resume_from
    app.run_worker(lambda: _launch(app, resume), thread=True, group="files", exit_on_error=False)


def _launch(app: "GptTuiApp", resume: str | None) -> None:
    from gpt_tui.engine.detach import start_detached
    from gpt_tui.engine.runs import new_run_dir

    if resume:
        run_dir, argv = Path(resume), [f"--resume={Path(resume).resolve()}"]
    else:
        run_dir, argv = new_run_dir(app.settings.training.model), background_train_args(app.settings.training)
    run = start_detached(argv, run_dir)

    def attach() -> None:
        attach_to(app, run.run_dir)
        app.notify(
            f"Training in the background (pid {run.pid}); it keeps going after you quit. "
            f"Follow it later with `gpt-tui attach {run.run_dir.name}`.",
            timeout=10,
        )

    app.call_from_thread(attach)


def attached_app(run_dir: str | Path, compare: str | Path | None = None, **app_options: Any) -> "GptTuiApp":
    """An app that attaches to ``run_dir`` (and overlays ``compare``) as soon as it is up."""
    from gpt_tui.tui.app import GptTuiApp

    folder = Path(run_dir)
    for wanted in (folder, compare):
        if wanted is not None and not Path(wanted).is_dir():
            raise UserError(f"Run directory {wanted} does not exist; `gpt-tui runs` lists the runs.")

    class AttachedApp(GptTuiApp):
        def on_mount(self) -> None:  # runs before the app's own on_mount; attach once that is done
            self.call_after_refresh(self._attach)

        def _attach(self) -> None:
            attach_to(self, folder)
            if compare is not None:
                compare_with(self, compare)

    return AttachedApp(**app_options)


def run_attached(run_dir: str | Path, compare: str | Path | None = None) -> int:
    """``gpt-tui attach``: the app on a running or finished run."""
    app = attached_app(run_dir, compare)
    install_hangup_handler(app)
    app.run()
    return 0


def stop_and_save(app: "GptTuiApp", timeout: float = 600.0) -> bool:
    """Stop a run training inside the app and wait until its checkpoint is written; True if one was."""
    trainer = app.trainer
    if trainer is None or isinstance(trainer, RemoteRun):
        return False  # nothing trains here (a run in another process keeps going on its own)
    trainer.request_stop()
    run_dir = getattr(trainer, "run_dir", None)
    deadline = time.monotonic() + timeout
    # The trainer holds its run's lock until its final checkpoint and status are written.
    while run_dir is not None and runlock.holder(run_dir) == os.getpid() and time.monotonic() < deadline:
        time.sleep(0.05)
    return run_dir is not None and runlock.holder(run_dir) is None


def install_hangup_handler(app: "GptTuiApp") -> Callable[[int, Any], None]:
    """On SIGHUP or SIGTERM, save the app's training run before leaving; returns the handler."""

    def on_signal(signum: int, _frame: Any) -> None:
        stop_and_save(app)
        if signum == getattr(signal, "SIGHUP", None):
            os._exit(128 + signum)  # the terminal is gone: nothing left to draw or restore
        app.exit(return_code=128 + signum)

    for name in ("SIGHUP", "SIGTERM"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), on_signal)
    return on_signal
