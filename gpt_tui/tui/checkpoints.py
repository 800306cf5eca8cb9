"""The checkpoints tab: list, save now, load, delete, and import GPT-2 weights from a path.

The panel lists files and asks; the app does the work (on workers) and
calls :meth:`CheckpointsPanel.reload` when the files changed.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, DataTable, Input, Static

from gpt_tui.textsafe import printable, visible
from gpt_tui.tui.checkpoint_files import CheckpointEntry, find_checkpoints, format_size


class CheckpointsPanel(Vertical):
    DEFAULT_CSS = """
    CheckpointsPanel { height: 1fr; }
    CheckpointsPanel > DataTable { height: 1fr; min-height: 4; }
    CheckpointsPanel > .ckpt-row { height: 1; margin-top: 1; }
    CheckpointsPanel > .ckpt-row Button { margin-right: 1; }
    CheckpointsPanel > .ckpt-row Input { width: 1fr; margin-right: 1; background: $boost; }
    CheckpointsPanel > #ckpt-message { height: auto; color: $text-muted; }
    """
    BINDINGS = [
        Binding("delete", "delete", "Delete", id="checkpoints.delete"),
    ]

    class Requested(Message):
        """The user asked for ``action`` ("save", "load", "delete", "import") on ``target``."""

        def __init__(self, action: str, target: str | None) -> None:
            super().__init__()
            self.action = action
            self.target = target

    def __init__(self, *, stable: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.stable = stable
        self.entries: list[CheckpointEntry] = []

    def compose(self) -> ComposeResult:
        table: DataTable[str | Text] = DataTable(cursor_type="row", zebra_stripes=True, id="ckpt-table")
        yield table
        with Horizontal(classes="ckpt-row"):
            yield Button("Save now", id="ckpt-save", compact=True, variant="primary")
            yield Button("Load", id="ckpt-load", compact=True)
            yield Button("Delete", id="ckpt-delete", compact=True, variant="error")
            yield Button("Refresh", id="ckpt-refresh", compact=True)
        with Horizontal(classes="ckpt-row"):
            yield Input(placeholder="GPT-2 weights: HF folder, TF checkpoint folder, .safetensors/.bin/.pth", compact=True, id="ckpt-import-path")
            yield Button("Import", id="ckpt-import", compact=True)
        yield Static("", id="ckpt-message")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("Checkpoint", key="label")
        table.add_column("Step", key="step")
        table.add_column("Size", key="size")
        table.add_column("Saved", key="modified")
        self.reload()

    def reload(self, select: str | None = None) -> None:
        """Re-read the data dir; ``select`` moves the cursor to that path when listed."""
        table = self.query_one(DataTable)
        self.entries = find_checkpoints()
        table.clear()
        for entry in self.entries:
            saved = "··" if self.stable else time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.modified))
            step = "-" if entry.step is None else str(entry.step)
            label = entry.label
            if self.stable and entry.source != "imported":
                label = label.replace(entry.source, "··")
            table.add_row(Text(visible(label)), step, format_size(entry.size), saved, key=str(entry.path))
        if select is not None:
            for row, entry in enumerate(self.entries):
                if str(entry.path) == select:
                    table.move_cursor(row=row)
        if not self.entries:
            self.say("No checkpoints yet: train a model (it saves at the end), or use Save now while it trains.")

    def say(self, text: str, error: bool = False) -> None:
        self.query_one("#ckpt-message", Static).update(Text(printable(text), style="red" if error else ""))

    @property
    def selected(self) -> CheckpointEntry | None:
        table = self.query_one(DataTable)
        if not self.entries or table.cursor_row is None or not 0 <= table.cursor_row < len(self.entries):
            return None
        return self.entries[table.cursor_row]

    def _request(self, action: str) -> None:
        if action in ("load", "delete"):
            entry = self.selected
            if entry is None:
                self.say(f"Pick a checkpoint in the list to {action}.", error=True)
                return
            self.post_message(self.Requested(action, str(entry.path)))
        elif action == "import":
            source = self.query_one("#ckpt-import-path", Input).value.strip()
            if not source:
                self.say("Type the path of the GPT-2 weights to import.", error=True)
                return
            self.post_message(self.Requested("import", source))
        else:
            self.post_message(self.Requested(action, None))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        action = (event.button.id or "").removeprefix("ckpt-")
        if action == "refresh":
            self.reload()
            self.say(f"{len(self.entries)} checkpoint(s).")
            return
        self._request(action)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._request("import")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self._request("load")

    def action_delete(self) -> None:
        self._request("delete")
