"""The app's controls for a run that trains in another process.

A :class:`RemoteRun` takes the place of the app's Trainer (see
gpt_tui.tui.trainer_control) while the app follows a background run: each
call leaves a request in the run's directory (gpt_tui.engine.runs.request_control)
that its trainer picks up between steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from gpt_tui.engine.runs import request_control
from gpt_tui.errors import UserError


class RemoteRun:
    """Stands in for the app's Trainer while the run trains in another process.

    The app calls these on F5, F6 and F8; each leaves a request the run's
    trainer picks up between steps. A checkpoint asked for while the run is
    paused is saved when it resumes.
    """

    model = None  # no live weights in this process: run_weights asks the run for a snapshot

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

    def request_stop(self, reason: str | None = None) -> None:
        self._request("stop")  # the run records its own reason for a request left in its directory

    def request_checkpoint(self) -> None:
        self._request("checkpoint")

    def save(self) -> None:
        self._request("checkpoint")

    def pause(self) -> None:
        self._request("pause")

    def unpause(self) -> None:
        self._request("resume")
