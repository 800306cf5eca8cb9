"""Opening the app from the command line, and leaving it when the terminal goes away.

``gpt-tui`` opens :func:`run_app`; ``gpt-tui attach`` opens it on a run in
another process. :func:`install_hangup_handler` covers the other way a
terminal goes away: on SIGHUP (the SSH connection dropped) or SIGTERM, a run
training inside the app is stopped and saved before the app exits.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any, Callable

from gpt_tui.engine import runlock
from gpt_tui.errors import UserError
from gpt_tui.tui.app import GptTuiApp
from gpt_tui.tui.attach import attach_to, compare_with
from gpt_tui.tui.remote_run import RemoteRun


def run_app(*, run_dir: str | None = None, attach: str | None = None, compare: str | None = None) -> int:
    """Open the app (the ``gpt-tui`` command with no arguments); ``attach`` follows a run in another process."""
    if attach is not None:
        return run_attached(attach, compare)
    app = GptTuiApp(run_dir=run_dir)
    install_hangup_handler(app)  # a dropped SSH connection stops and saves a run training here
    app.run()
    return 0


def attached_app(run_dir: str | Path, compare: str | Path | None = None, **app_options: Any) -> GptTuiApp:
    """An app that attaches to ``run_dir`` (and overlays ``compare``) as soon as it is up."""
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


def stop_and_save(app: GptTuiApp, timeout: float = 600.0, reason: str | None = None) -> bool:
    """Stop a run training inside the app and wait until its checkpoint is written; True if one was."""
    trainer = app.trainer
    if trainer is None or isinstance(trainer, RemoteRun):
        return False  # nothing trains here (a run in another process keeps going on its own)
    trainer.request_stop(reason)
    run_dir = trainer.run_dir
    deadline = time.monotonic() + timeout
    # The trainer holds its run's lock until its final checkpoint and status are written.
    while run_dir is not None and runlock.holder(run_dir) == os.getpid() and time.monotonic() < deadline:
        time.sleep(0.05)
    return run_dir is not None and runlock.holder(run_dir) is None


def install_hangup_handler(app: GptTuiApp) -> Callable[[int, Any], None]:
    """On SIGHUP or SIGTERM, save the app's training run before leaving; returns the handler."""

    def on_signal(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        why = "terminal closed" if signum == getattr(signal, "SIGHUP", None) else "terminated"
        stop_and_save(app, reason=f"{why} ({name})")
        if signum == getattr(signal, "SIGHUP", None):
            os._exit(128 + signum)  # the terminal is gone: nothing left to draw or restore
        app.exit(return_code=128 + signum)

    for name in ("SIGHUP", "SIGTERM"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), on_signal)
    return on_signal
