"""Leaving the app: a run training here is stopped and saved first, if the user agrees.

Mixed into GptTuiApp. A run in another process (a RemoteRun) keeps training
after the app has gone; the exit message says how to come back to it.
"""

from __future__ import annotations

from typing import Any

from gpt_tui.tui.background import exit_note
from gpt_tui.tui.dialogs import ConfirmDialog
from gpt_tui.tui.remote_run import RemoteRun


class QuitHandling:
    """Mixed into GptTuiApp: Ctrl+Q, and what the app's unmount stops."""

    _quitting: bool
    _training_worker: Any
    progress: Any
    trainer: Any
    replies: Any

    async def action_quit(self) -> None:
        if self._quitting:
            return
        if self.progress.active and self._training_worker is not None and self._training_worker.is_running:

            def answered(stop: bool | None) -> None:
                if stop:
                    self._quitting = True
                    self.action_train_stop()
                    self.run_worker(self._stop_then_exit(), group="quit")

            self.push_screen(
                ConfirmDialog(
                    "Training is running. Stop it, save a checkpoint and quit?",
                    yes="Stop, save and quit",
                    no="Keep training",
                    title="Quit gpt-tui",
                ),
                answered,
            )
            return
        self.exit(message=exit_note(self))  # printed once the app has closed

    async def _stop_then_exit(self) -> None:
        self.notify("Stopping training and saving a checkpoint…", timeout=30)
        worker = self._training_worker
        if worker is not None:
            try:
                await worker.wait()
            except Exception:  # the failure already has its dialog
                pass
        self.drain_events()
        self.exit()

    def on_unmount(self) -> None:
        restore_notices = getattr(self, "_notices_off", None)  # set on mount (worker_results.notices_to)
        if restore_notices is not None:
            restore_notices()
        # The training thread would otherwise keep the process alive after the window closes;
        # a run in another process keeps going.
        if self.trainer is not None and not isinstance(self.trainer, RemoteRun):
            self.trainer.request_stop("the app closed")
        if self.replies.worker is not None:
            self.replies.worker.cancel()
