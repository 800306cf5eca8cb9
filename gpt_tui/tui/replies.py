"""The REPL's replies: a prompt goes to a worker that streams the model's text into the pane.

The worker asks the model source for weights (a training snapshot, a loaded
file or a fresh model), decodes on the thread count the engine picks
(gpt_tui.engine.inference_session.decode_threads), and posts every piece and
the closing footer to the REPL as messages; it never touches a widget.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.worker import Worker, get_current_worker

from gpt_tui.errors import UserError
from gpt_tui.textsafe import printable
from gpt_tui.tui.config import sampling_config_kwargs
from gpt_tui.tui.repl import Note, ReplPane
from gpt_tui.tui.slash import HELP_LINES, is_slash, run_slash

# Deferred imports: generation needs torch, which loads on the first reply, not for the app's first frame.


def reply_footer(status: str, stats: Any, label: str, stable: bool = False) -> str:
    """The line under a reply: tokens, speed (not in ``stable`` screenshots), the weights, and how it ended."""
    parts = [f"{stats.new_tokens} tokens"]
    if stats.new_tokens and not stable:
        parts.append(f"{stats.tokens_per_s:.0f} tok/s")
    if label:
        parts.append(label)
    if status != "done":
        parts.append(status)
    return " · ".join(parts)


class Replies:
    """Prompts and slash commands typed in the REPL, and the worker that answers a prompt."""

    def __init__(self, app: Any) -> None:
        self.app = app  # the GptTuiApp: its REPL pane, sampling settings and model source
        self.worker: Worker[Any] | None = None
        self._serial = 0
        # Prompts sent while a reply streams, in order, each with the note that shows it waiting.
        self.queued: list[tuple[str, Note]] = []

    def submit(self, text: str) -> None:
        app = self.app
        repl: ReplPane = app.repl
        if is_slash(text):
            self._run_slash(text)
            return
        if repl.streaming or self.queued:  # typed ahead: it waits its turn rather than being lost
            shown = Text("queued: ", style="italic")
            shown.append(printable(text), style="bold")
            shown.append(" · runs when the reply above ends; Esc cancels", style="italic")
            self.queued.append((text, repl.note(shown, "queued")))
            return
        self._start(text)

    def reply_ended(self) -> None:
        """A reply ended: the next queued prompt, if any, starts in the place its note held."""
        if self.queued and not self.app.repl.streaming:
            text, note = self.queued.pop(0)
            self._start(text, in_place_of=note)

    def _start(self, text: str, in_place_of: Note | None = None) -> None:
        app = self.app
        repl: ReplPane = app.repl
        self._serial += 1
        serial, sampling = self._serial, sampling_config_kwargs(app.sampling)
        repl.begin_reply(text, serial, in_place_of=in_place_of)
        self.worker = app.run_worker(
            lambda: self._generate(repl, serial, text, sampling), thread=True, group="reply", name="reply", exit_on_error=False
        )

    def _run_slash(self, text: str) -> None:
        app = self.app
        try:
            result = run_slash(text, app.sampling)
        except UserError as exc:
            app.repl.note(str(exc), "error")
            return
        if result.action == "clear":
            app.repl.clear()
        elif result.action == "help":
            app.repl.note("\n".join(f"{cmd:<14} {what}" for cmd, what in HELP_LINES))
        else:
            app.sampling = result.sampling
            app.repl.note(result.message)
        app.update_repl_status()

    def _generate(self, repl: ReplPane, serial: int, prompt: str, sampling: dict[str, Any]) -> None:
        """The reply worker's body (a thread): every result goes to ``repl`` as a message."""
        from gpt_tui.engine.generation import GenerationStats, SamplingConfig, stream_text
        from gpt_tui.engine.inference_session import decode_threads

        worker = get_current_worker()
        app = self.app
        status, footer_style = "cancelled", "dim"
        stats = GenerationStats()
        label = ""
        try:
            model, label = app.model_source.acquire()
            if worker.is_cancelled:
                return
            with decode_threads(model, training_active=app.progress.active):
                pieces = stream_text(model, prompt, SamplingConfig(**sampling), stats)
                try:
                    for piece in pieces:
                        if worker.is_cancelled:
                            break
                        repl.post_message(ReplPane.Piece(serial, piece))
                    else:
                        status = "done"
                finally:
                    pieces.close()
        except UserError as exc:
            status, footer_style = str(exc), "red"
        except BaseException:
            status, footer_style = "failed", "red"
            raise
        finally:
            repl.post_message(ReplPane.Ended(serial, reply_footer(status, stats, label, app.stable), footer_style))

    def cancel(self) -> None:
        """Esc: the streaming reply and every queued prompt; said in a notice when there is neither."""
        app = self.app
        dropped = len(self.queued)
        for _, note in self.queued:
            note.remove()
        self.queued.clear()
        streaming = app.repl.streaming
        if self.worker is not None and self.worker.is_running:
            self.worker.cancel()
        if streaming:
            app.repl.cancel_current()
        if dropped:
            app.notify(f"Cancelled {dropped} queued prompt{'s' if dropped > 1 else ''}.", timeout=3)
        elif not streaming:
            app.notify("Nothing to cancel: no reply is streaming (Esc stops one).", timeout=3)

    def copy_last(self) -> None:
        app = self.app
        reply = app.repl.last_reply
        if reply is None:
            app.notify("No reply to copy yet.")
            return
        app.copy_to_clipboard(reply.prompt + reply.text)
        app.notify(f"Copied the last reply ({len(reply.prompt + reply.text)} characters).", timeout=3)
