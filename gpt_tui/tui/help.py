"""The help screen: how to get going, every key (as currently bound) and the slash commands."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from gpt_tui.tui.slash import HELP_LINES

GETTING_STARTED = (
    "Press the Train key to pre-train the selected model (the tiny one by default) on the "
    "built-in corpus; the loss chart falls as it learns. Type a prompt below and press Enter "
    "to hear what it has learned so far — it works while training runs. Settings holds the "
    "model size, hyperparameters, sampling defaults, themes and your checkpoints (save, load, "
    "delete, import GPT-2 weights). F4 lists your runs. Ctrl+P opens the command palette."
)
OWN_CORPUS = (
    "To train on your own text, open Settings (F2) and put a UTF-8 text file (or a folder of them) "
    "in the Corpus field: type its path (Right arrow accepts the completion shown) or press Browse… "
    "(Ctrl+O) to pick it; leave "
    "the field empty for the built-in corpus. `gpt-tui train --data FILE` does the same from a shell."
)
CONVERSATION_KEYS = (
    "Esc cancels a reply, and the prompts queued behind it (a prompt sent while a reply streams waits its turn). "
    "Up/Down recall earlier prompts. PgUp/PgDn, Shift+Up/Down (or Ctrl+Up/Down) and Ctrl+Home/Ctrl+End "
    "scroll the conversation while you type. "
)


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
        background: $background 60%;
    }
    HelpScreen > #help {
        width: 86;
        max-width: 96%;
        height: 90%;
        border: thick $primary;
        background: $surface;
        padding: 0 1;
    }
    HelpScreen #help-title { text-style: bold; color: $accent; padding: 1 0 0 0; }
    HelpScreen .help-heading { text-style: bold; margin-top: 1; }
    """
    BINDINGS = [Binding("escape,f1,q", "close", "Close", id="help.close")]

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Static("gpt-tui — pre-train a GPT in your terminal", id="help-title")
            with VerticalScroll():
                yield Static(GETTING_STARTED)
                yield Static(OWN_CORPUS, markup=False)
                yield Static("Keys", classes="help-heading")
                yield Static(self._table(self.keys))
                yield Static("REPL commands", classes="help-heading")
                yield Static(self._table(list(HELP_LINES)))
                yield Static(
                    Text(
                        CONVERSATION_KEYS + "Settings live in settings.toml in your config directory; "
                        "drop theme files into its themes/ folder.",
                        style="dim",
                    )
                )

    @staticmethod
    def _table(rows: list[tuple[str, str]]) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for key, text in rows:
            table.add_row(Text(key), Text(text))  # plain text: a binding id in brackets is not markup
        return table

    def action_close(self) -> None:
        self.dismiss(None)
