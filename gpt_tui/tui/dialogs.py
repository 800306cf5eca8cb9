"""Modal dialogs: an error that does not take the app down, a yes/no question, and a question with a few answers."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from gpt_tui.tui.path_text import PathText

# Written for "Dialog" and renamed per class: a screen's DEFAULT_CSS is scoped to its own type name.
DIALOG_CSS = """
Dialog {
    align: center middle;
    background: $background 60%;
}
Dialog > #dialog {
    width: 64;
    max-width: 90%;
    height: auto;
    max-height: 90%;
    border: thick $primary;
    background: $surface;
    padding: 1 2;
}
Dialog #dialog-title {
    text-style: bold;
    margin-bottom: 1;
}
Dialog #dialog-body {
    height: auto;
    max-height: 16;
    overflow-y: auto;
}
Dialog #dialog-path {
    margin-top: 1;
}
Dialog #dialog-keys {
    color: $text-muted;
    margin-top: 1;
}
Dialog #dialog-buttons {
    height: auto;
    margin-top: 1;
    align-horizontal: right;
}
Dialog #dialog-buttons Button {
    margin-left: 2;
}
"""


class ErrorDialog(ModalScreen[None]):
    """Shows what went wrong in a worker; the app keeps running behind it."""

    DEFAULT_CSS = DIALOG_CSS.replace("Dialog", "ErrorDialog") + """
    ErrorDialog > #dialog { border: thick $error; }
    ErrorDialog #dialog-title { color: $error; }
    """
    BINDINGS = [Binding("escape,enter", "dismiss_dialog", "Close", id="dialog.close")]

    def __init__(self, message: str, title: str = "Something went wrong") -> None:
        super().__init__()
        self.message = message
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.title_text, id="dialog-title", markup=False)
            yield Static(self.message, id="dialog-body", markup=False)
            with Horizontal(id="dialog-buttons"):
                yield Button("OK", id="dialog-ok", variant="primary")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_dismiss_dialog(self) -> None:
        self.dismiss(None)


class ConfirmDialog(ModalScreen[bool]):
    """A question with a default of "no": Esc or n answers no, y or Enter on the yes button answers yes."""

    DEFAULT_CSS = DIALOG_CSS.replace("Dialog", "ConfirmDialog")
    BINDINGS = [
        Binding("escape,n", "answer(False)", "No", id="dialog.no"),
        Binding("y", "answer(True)", "Yes", id="dialog.yes"),
    ]

    def __init__(
        self, question: str, yes: str = "Yes", no: str = "Cancel", title: str = "Are you sure?", *, path: str = ""
    ) -> None:
        """``path``: a file the question is about, shown on lines of its own and broken only at separators."""
        super().__init__()
        self.question = question
        self.path = path
        self.yes_label = yes
        self.no_label = no
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.title_text, id="dialog-title", markup=False)
            yield Static(self.question, id="dialog-body", markup=False)
            if self.path:
                yield PathText(self.path, id="dialog-path")
            yield Static("y answers yes · n or Esc answers no", id="dialog-keys")
            with Horizontal(id="dialog-buttons"):
                yield Button(self.no_label, id="dialog-no")
                yield Button(self.yes_label, id="dialog-yes", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#dialog-no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "dialog-yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class ChoiceDialog(ModalScreen[str | None]):
    """A question with a few answers, each a button and a key; Esc (or Cancel) answers None."""

    DEFAULT_CSS = DIALOG_CSS.replace("Dialog", "ChoiceDialog") + "ChoiceDialog > #dialog { width: 80; }"
    BINDINGS = [Binding("escape", "choose_nothing", "Cancel", id="dialog.cancel")]

    def __init__(self, question: str, choices: list[tuple[str, str, str]], title: str = "Choose") -> None:
        """``choices``: (answer, button label, key) for each answer, in the order shown."""
        super().__init__()
        self.question = question
        self.choices = choices
        self.title_text = title

    def compose(self) -> ComposeResult:
        keys = " · ".join(f"{key}: {label}" for _, label, key in self.choices)
        with Vertical(id="dialog"):
            yield Static(self.title_text, id="dialog-title", markup=False)
            yield Static(self.question, id="dialog-body", markup=False)
            yield Static(f"{keys} · Esc cancels", id="dialog-keys", markup=False)
            with Horizontal(id="dialog-buttons"):
                yield Button("Cancel", id="dialog-cancel")
                for answer, label, _ in self.choices:
                    yield Button(label, id=f"choice-{answer}", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#dialog-cancel", Button).focus()

    def on_key(self, event: events.Key) -> None:
        for answer, _, key in self.choices:
            if event.key == key:
                event.stop()
                self.dismiss(answer)
                return

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        button = event.button.id or ""
        self.dismiss(button.removeprefix("choice-") if button.startswith("choice-") else None)

    def action_choose_nothing(self) -> None:
        self.dismiss(None)
