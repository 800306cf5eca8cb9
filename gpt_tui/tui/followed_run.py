"""How the app shows a run it follows in another process: the handlers of RunAttachment's messages.

The app class mixes this in; gpt_tui.tui.attach posts the messages, and only
these handlers, on the UI thread, change the app's state for a followed run.
"""

from __future__ import annotations

from typing import Any

from gpt_tui.textsafe import visible
from gpt_tui.tui import attach, messages
from gpt_tui.tui.background import remember
from gpt_tui.tui.fold import fold_events


class FollowedRunHandlers:
    """Mixed into GptTuiApp, whose buffer, history, progress, trainer and panes these update."""

    buffer: Any
    history: Any
    progress: Any
    trainer: Any
    resume_from: str | None
    model_source: Any
    training_pane: Any
    repl: Any

    def on_background_started(self, message: messages.BackgroundStarted) -> None:
        remember(self, message.run_dir)
        attach.attach_to(self, message.run_dir)  # type: ignore[arg-type]
        self.notify(
            f"Training in the background (pid {message.pid}); it keeps going after you quit. "
            f"Follow it later in the Runs screen (F4) or with `gpt-tui attach {message.run_dir.name}`.",
            timeout=10,
        )

    def on_attachment_failed(self, message: messages.AttachmentFailed) -> None:
        self.show_error(message.error, "Cannot attach")

    def on_attachment_started(self, message: messages.AttachmentStarted) -> None:
        self.model_source.set_refresher(message.refresher)
        remember(self, message.run_dir)  # if it still trains when the app quits, the exit message says so
        self.buffer.drain()
        self.history.clear()
        self.progress.reset_for_start()
        self.repl.note(  # the welcome above speaks of a fresh run; this app shows another one
            f"Following run {visible(message.run_dir.name)}: its chart and counters come from its folder as it "
            "trains; F6 stops it (saving a checkpoint), F8 saves one now. Replies come from its newest weights."
        )

    def on_attachment_ended(self, message: messages.AttachmentEnded) -> None:
        self.model_source.drop_refresher(message.refresher)
        if self.trainer is message.remote:
            self.trainer = None

    def on_run_polled(self, message: messages.RunPolled) -> None:
        """A followed run's news: its events take the same path, and notifications, as a run in the app."""
        seen, progress = message.seen, self.progress
        if seen.reset:
            self.buffer.drain()
            self.history.clear()
        if seen.quiet:
            fold_events(progress, self.history, seen.events)
        elif seen.events:
            for event in seen.events:
                self.buffer.push(event)
            self.drain_events()
        progress.run_dir = str(seen.run_dir)
        state = seen.status.get("state")
        if seen.live:
            self.trainer = message.remote
            if state == "starting":
                progress.state = "preparing"
            elif progress.state not in ("paused", "stopping"):
                progress.state = "running"
        else:
            if self.trainer is message.remote:
                self.trainer = None
            if state in ("finished", "stopped", "failed"):
                progress.state = state
                if state == "failed" and seen.status.get("message"):
                    progress.message = str(seen.status["message"])
            elif state in attach.LIVE_STATES_WITHOUT_PROCESS:  # its process is gone without a word
                progress.state = "stopped"
        if seen.stale_note:
            self.notify(seen.stale_note, severity="warning", timeout=10)
        self.resume_from = seen.resume_from
        self.training_pane.refresh_progress()
        self.update_repl_status()
