"""The REPL pane: a log of prompts and streamed replies, a status line, and an input with history.

The pane only draws and reports: it posts ``ReplPane.Submitted`` and the app
decides whether that is a slash command or a prompt and runs generation on a
worker, feeding pieces back through :meth:`ReplPane.append_piece`.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Input, Static

from gpt_tui.textsafe import printable, visible
from gpt_tui.tui.history import PromptHistory
from gpt_tui.tui.layout import PROMPT_PLACEHOLDERS, fitting_placeholder
from gpt_tui.tui.ordered_keys import InOrderInput

MAX_LOG_ENTRIES = 200
# Pieces are gathered and shown together at most this often: a fast model makes
# hundreds a second, and each update of a growing reply costs a relayout.
FLUSH_INTERVAL_S = 0.05


class Reply(Static):
    """One exchange: the prompt in bold, then the model's continuation as it streams in."""

    DEFAULT_CSS = """
    Reply {
        margin: 0 0 1 0;
        padding: 0 1;
    }
    Reply.-streaming {
        border-left: outer $accent;
    }
    Reply.-finished {
        border-left: outer $primary 60%;
    }
    """

    def __init__(self, prompt: str, serial: int = 0) -> None:
        super().__init__()
        self.prompt = prompt
        self.serial = serial
        self.text = ""
        self.updates = 0  # times the text on screen grew
        self.footer = ""
        self.add_class("-streaming")
        self._body = Text()
        self._body.append(printable(prompt), style="bold")  # drawn with control characters made visible
        self.update(self._body)

    def append(self, piece: str) -> None:
        self.text += piece  # as the model wrote it, for copying
        self.updates += 1
        self._body.append(printable(piece))  # an escape would reach the terminal: Rich passes ESC through
        self.update(self._body)

    def finish(self, footer: str, style: str = "dim") -> None:
        self.footer = footer
        self.remove_class("-streaming")
        self.add_class("-finished")
        self._body.append("\n")
        self._body.append(printable(footer), style=style)  # names the weights' file, or quotes an error
        self.update(self._body)


class Note(Static):
    """A line from the app rather than the model: a command's result, a sample, an error."""

    DEFAULT_CSS = """
    Note {
        color: $text-muted;
        padding: 0 1;
        margin: 0 0 1 0;
    }
    Note.-error {
        color: $error;
    }
    Note.-queued {
        border-left: outer $accent 50%;
    }
    Note.-sample {
        color: $text-muted;
        border-left: outer $secondary;
    }
    """

    def __init__(self, text: str | Text, kind: str = "info") -> None:
        super().__init__(printable(text) if isinstance(text, str) else text, markup=False)  # it may quote a file
        self.add_class(f"-{kind}")


class PromptInput(InOrderInput):
    """An Input that walks the prompt history with up and down."""

    BINDINGS = [
        Binding("up", "history_previous", "Previous prompt", show=False, id="repl.history_previous"),
        Binding("down", "history_next", "Next prompt", show=False, id="repl.history_next"),
    ]

    def __init__(self, history: PromptHistory, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.history = history

    def on_resize(self) -> None:
        self.placeholder = fitting_placeholder(self.content_size.width - 1)  # a cell for the cursor

    def action_history_previous(self) -> None:
        entry = self.history.previous(self.value)
        if entry is not None:
            self.value = entry
            self.cursor_position = len(entry)

    def action_history_next(self) -> None:
        entry = self.history.next()
        if entry is not None:
            self.value = entry
            self.cursor_position = len(entry)


class ReplPane(Vertical):
    # The conversation scrolls from the keyboard while the input keeps focus (the log never takes it).
    BINDINGS = [
        Binding("pageup", "scroll_log('page_up')", "Scroll up a page", show=False, id="repl.page_up"),
        Binding("pagedown", "scroll_log('page_down')", "Scroll down a page", show=False, id="repl.page_down"),
        Binding("shift+up,ctrl+up", "scroll_log('up')", "Scroll up a line", show=False, id="repl.line_up"),
        Binding("shift+down,ctrl+down", "scroll_log('down')", "Scroll down a line", show=False, id="repl.line_down"),
        Binding("ctrl+home", "scroll_log('home')", "Scroll to the first entry", show=False, id="repl.top"),
        Binding("ctrl+end", "scroll_log('end')", "Scroll to the latest entry", show=False, id="repl.bottom"),
    ]
    DEFAULT_CSS = """
    ReplPane {
        height: 1fr;
        border: round $primary 40%;
        border-title-color: $text;
    }
    ReplPane:focus-within {
        border: round $primary;
    }
    ReplPane > #repl-log {
        height: 1fr;
        scrollbar-size-vertical: 1;
    }
    ReplPane > #repl-status {
        height: auto;
        max-height: 2;
        padding: 0 1;
        color: $text-muted;
        background: $boost;
    }
    ReplPane > PromptInput {
        border: none;
        height: 1;
        padding: 0 1;
        background: $surface;
    }
    ReplPane > PromptInput:focus {
        border: none;
        background: $boost;
    }
    """

    class Submitted(Message):
        """The user pressed Enter on a non-empty line."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class Piece(Message):
        """A piece of reply ``serial``, posted from the generation thread."""

        def __init__(self, serial: int, text: str) -> None:
            super().__init__()
            self.serial = serial
            self.text = text

    class Ended(Message):
        """Reply ``serial`` is complete (or cancelled, or failed); ``footer`` says how."""

        def __init__(self, serial: int, footer: str, style: str = "dim") -> None:
            super().__init__()
            self.serial = serial
            self.footer = footer
            self.style = style

    def __init__(self, history: PromptHistory, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.history = history
        self.border_title = "Talk to the model"
        self.current: Reply | None = None
        self.last_reply: Reply | None = None
        self._pending: list[str] = []
        self._flush_timer: Timer | None = None
        self._status_text = ""

    def compose(self) -> ComposeResult:
        log = VerticalScroll(id="repl-log", can_focus=False)
        log.can_focus = False
        yield log
        yield Static("", id="repl-status")
        yield PromptInput(self.history, placeholder=PROMPT_PLACEHOLDERS[0], id="repl-input", select_on_focus=False)

    def on_mount(self) -> None:
        self.query_one("#repl-log", VerticalScroll).anchor()

    @property
    def input(self) -> PromptInput:
        return self.query_one(PromptInput)

    @property
    def log_view(self) -> VerticalScroll:
        return self.query_one("#repl-log", VerticalScroll)

    def action_scroll_log(self, where: str) -> None:
        log = self.log_view
        if where == "end":
            log.scroll_end(animate=False)  # and stays at the newest entry again (the anchor holds)
            return
        moves = {"page_up": log.scroll_page_up, "page_down": log.scroll_page_down, "up": log.scroll_up,
                 "down": log.scroll_down, "home": log.scroll_home}
        moves[where](animate=False)

    def set_status(self, text: str) -> None:
        if text != self._status_text:  # called on every training update; most change nothing
            self._status_text = text
            self.query_one("#repl-status", Static).update(Text(visible(text), overflow="ellipsis"))  # names a file

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value
        if not text.strip():
            return
        self.history.add(text)
        event.input.value = ""
        self.post_message(self.Submitted(text))

    def _mount_entry(self, widget: Static, in_place_of: Static | None = None) -> None:
        log = self.log_view
        entries = list(log.children)
        if len(entries) >= MAX_LOG_ENTRIES:
            for old in entries[: len(entries) - MAX_LOG_ENTRIES + 1]:
                old.remove()
        if in_place_of is not None and in_place_of.parent is log:
            log.mount(widget, before=in_place_of)
            in_place_of.remove()
        else:
            log.mount(widget)

    def note(self, text: str | Text, kind: str = "info") -> Note:
        note = Note(text, kind)
        self._mount_entry(note)
        return note

    def begin_reply(self, prompt: str, serial: int, in_place_of: Static | None = None) -> Reply:
        """A reply starts streaming; ``in_place_of``: the note that showed its prompt queued."""
        reply = Reply(prompt, serial)
        self.current = reply
        self._mount_entry(reply, in_place_of)
        return reply

    def on_repl_pane_piece(self, message: "ReplPane.Piece") -> None:
        message.stop()
        # Pieces of a reply already cancelled with Esc may still be queued: drop them.
        if self.current is None or self.current.serial != message.serial:
            return
        self._pending.append(message.text)
        if self._flush_timer is None:
            self._flush_timer = self.set_timer(FLUSH_INTERVAL_S, self._flush)

    def _flush(self) -> None:
        """Show the pieces that arrived since the last flush, as one update of the reply."""
        self._flush_timer = None
        if self._pending and self.current is not None:
            self.current.append("".join(self._pending))
        self._pending.clear()

    def on_repl_pane_ended(self, message: "ReplPane.Ended") -> None:
        # Not stopped: the app refreshes the status line when a reply ends.
        if self.current is not None and self.current.serial == message.serial:
            self._flush()
            self.end_reply(message.footer, message.style)

    def end_reply(self, footer: str, style: str = "dim") -> Reply | None:
        reply = self.current
        if reply is not None:
            reply.finish(footer, style)
            self.last_reply = reply
        self.current = None
        return reply

    def cancel_current(self) -> None:
        """Esc: end the reply on screen now; the worker stops at its next token."""
        if self.current is not None:
            self._flush()
            self.end_reply(f"{len(self.current.text)} characters · cancelled", "yellow")

    @property
    def streaming(self) -> bool:
        return self.current is not None

    def clear(self) -> None:
        self.log_view.remove_children()
        self.current = None
        self._pending.clear()
