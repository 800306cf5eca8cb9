"""The Runs screen (F4): every run on disk, and what to do with one — open or attach, resume, compare, delete.

The list is read (gpt_tui.tui.run_list) on a thread worker every REFRESH_S
seconds while the screen is shown: even with only changed runs read again, a
run that trains rewrites its metrics all the time, and a long one takes a
while to parse, too long for the UI thread.

The app hands the screen the module that follows runs (gpt_tui.tui.attach:
attach_to, compare_with and its widgets), so the screen depends on what it
uses of them alone.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Static

from gpt_tui import paths
from gpt_tui.engine.runs import run_is_live
from gpt_tui.errors import UserError
from gpt_tui.textsafe import visible
from gpt_tui.tui.checkpoint_files import format_size
from gpt_tui.tui.dialogs import ConfirmDialog
from gpt_tui.tui.messages import RunsRead
from gpt_tui.tui.run_list import RunRow, RunsReader, delete_run, row_cells

REFRESH_S = 2.0
_READERS: dict[str, RunsReader] = {}


def shared_reader(root: str | Path | None) -> RunsReader:
    """One reader per runs folder for the app's life: opening the screen again reads only what changed."""
    key = str(Path(root) if root is not None else paths.runs_dir())
    if key not in _READERS:
        _READERS[key] = RunsReader(key)
    return _READERS[key]


class RunsScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    RunsScreen { align: center middle; background: $background 60%; }
    RunsScreen > #runs { width: 100; max-width: 98%; height: 85%; border: thick $primary; background: $surface; padding: 0 1; }
    RunsScreen #runs-title { text-style: bold; color: $accent; padding: 1 0 0 0; }
    RunsScreen DataTable { height: 1fr; }
    RunsScreen #runs-message { height: auto; color: $text-muted; padding: 0 0 1 0; }
    RunsScreen #runs-message.-error { color: $error; }
    """
    BINDINGS = [
        Binding("escape,f4", "close", "Close", id="runs.close"),
        Binding("o", "open", "Open/attach", id="runs.open"),
        Binding("r", "resume", "Resume", id="runs.resume"),
        Binding("c", "compare", "Compare", id="runs.compare"),
        Binding("d,delete", "delete", "Delete", id="runs.delete"),
    ]

    def __init__(self, followers: Any, root: str | Path | None = None) -> None:
        """``followers``: gpt_tui.tui.attach, or anything with its attach_to, compare_with, RunAttachment, ComparedRun, RemoteRun."""
        super().__init__()
        self.followers = followers
        self.reader = shared_reader(root)
        self._reading = False
        self.rows: list[RunRow] = []
        self.loads = 0  # completed reads of the list (tests wait on it)
        self._shown: list[tuple[str, ...]] = []

    @property
    def gui(self) -> Any:
        return self.app  # the GptTuiApp

    def compose(self) -> ComposeResult:
        with Vertical(id="runs"):
            yield Static("Runs — Enter or o opens (attaches to a live one), r resumes, c compares, d deletes", id="runs-title")
            table: DataTable[Text] = DataTable(cursor_type="row", zebra_stripes=True, id="runs-table")
            yield table
            yield Static("Reading the runs…", id="runs-message")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, key in (("Run", "name"), ("State", "state"), ("Step", "step"), ("Best val", "val"), ("Size", "size"), ("Age", "age")):
            table.add_column(label, key=key)
        table.focus()
        self.refresh_runs()
        self.set_interval(REFRESH_S, self.refresh_runs)

    def refresh_runs(self) -> None:
        """Read the list again on a worker, unless a read is still going (the first of many long runs takes seconds)."""
        if not self._reading:
            self._reading = True
            self._read_runs()

    @work(thread=True, group="runs-list", exit_on_error=False)
    def _read_runs(self) -> None:
        rows = None
        try:
            rows = self.reader.read()
        finally:
            self.post_message(RunsRead(rows))

    def on_runs_read(self, message: RunsRead) -> None:
        message.stop()
        self._reading = False
        if message.rows is not None:
            self._show(message.rows)

    def _show(self, rows: list[RunRow]) -> None:
        if not self.is_attached:
            return
        self.loads += 1
        if self.loads == 1:
            self.say(f"{len(rows)} run(s) in {paths.runs_dir()}." if rows else "No runs yet: F5 trains one; it appears here.")
        stable = getattr(self.gui, "stable", False)
        now = time.time()
        cells = [row_cells(row, now, stable) for row in rows]
        plain = [tuple(cell.plain for cell in row) for row in cells]
        if plain == self._shown and [r.info.path for r in rows] == [r.info.path for r in self.rows]:
            self.rows = rows
            return
        table = self.query_one(DataTable)
        selected = self.selected
        self.rows, self._shown = rows, plain
        table.clear()
        for row, row_cells_ in zip(rows, cells):
            table.add_row(*row_cells_, key=str(row.info.path))
        if selected is not None:
            for index, row in enumerate(rows):
                if row.info.path == selected.info.path:
                    table.move_cursor(row=index)

    @property
    def selected(self) -> RunRow | None:
        table = self.query_one(DataTable)
        row = table.cursor_row
        if not self.rows or row is None or not 0 <= row < len(self.rows):
            return None
        return self.rows[row]

    def select(self, name: str) -> None:
        """Move the cursor to the run called ``name``."""
        for index, row in enumerate(self.rows):
            if row.info.name == name:
                self.query_one(DataTable).move_cursor(row=index)
                return
        raise KeyError(name)

    def say(self, text: str, error: bool = False) -> None:
        message = self.query_one("#runs-message", Static)
        message.update(Text(text))
        message.set_class(error, "-error")

    def _pick(self, verb: str) -> RunRow | None:
        row = self.selected
        if row is None:
            self.say(f"Pick a run in the list to {verb}.", error=True)
        return row

    def _trains_here(self) -> bool:
        RemoteRun = self.followers.RemoteRun
        app = self.gui
        return app.trainer is not None and not isinstance(app.trainer, RemoteRun) and app.progress.active

    # ----- actions -----
    def action_close(self) -> None:
        self.dismiss(None)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        row = self.selected
        if row is None or self.loads == 0:
            return
        info = row.info
        parts = [visible(str(info.path))]
        if info.model:
            parts.append(f"model {visible(str(info.model))}")
        parts.append(f"checkpoint {visible(info.latest_checkpoint.name)}" if info.latest_checkpoint else "no checkpoint")
        if getattr(info, "best_checkpoint", None) is not None:
            parts.append(f"best at step {info.best_checkpoint.step} (val {info.best_checkpoint.val_loss:.3f}): {visible(info.name)}@best")
        problem = getattr(info, "problem", None)
        if problem:
            parts.append(visible(str(problem)))
        self.say(" · ".join(parts), error=bool(problem))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_open(self) -> None:
        RunAttachment, attach_to = self.followers.RunAttachment, self.followers.attach_to
        row = self._pick("open")
        if row is None:
            return
        if row.here or any(a.run_dir == row.info.path for a in self.gui.query(RunAttachment)):
            self.dismiss(None)  # it is the run on the main screen already
            return
        if self._trains_here():
            self.say("A run is training in the app; stop it (F6) before opening another.", error=True)
            return
        self.dismiss(None)
        attach_to(self.gui, row.info.path)

    def action_resume(self) -> None:
        RunAttachment = self.followers.RunAttachment
        row = self._pick("resume")
        if row is None:
            return
        name, info = visible(row.info.name), row.info
        if row.live:
            self.say(f"Run {name} is training already; Open (o) attaches to it.", error=True)
        elif info.status == "finished":
            self.say(f"Run {name} finished; there is nothing left to train. Open or compare it.", error=True)
        elif info.latest_checkpoint is None:
            self.say(f"Run {name} has no checkpoint to continue from.", error=True)
        elif self._trains_here():
            self.say("A run is training in the app; stop it (F6) before resuming another.", error=True)
        else:
            app = self.gui
            self.dismiss(None)
            for old in app.query(RunAttachment):
                old.remove()
            app.training_control.open_run(str(info.path))
            app.action_train_toggle()  # as F5 on an opened run: continue it here

    def action_compare(self) -> None:
        compare_with = self.followers.compare_with
        row = self._pick("compare")
        if row is None:
            return
        if str(row.info.path) == str(self.gui.progress.run_dir):
            self.say(f"Run {visible(row.info.name)} is the one on the chart; pick another to compare with it.", error=True)
            return
        app = self.gui
        self.dismiss(None)  # first: widgets mount on the screen shown, the app's own once this one is gone
        try:
            compare_with(app, row.info.path)
        except UserError as exc:  # the folder went away since the list was read
            app.notify(str(exc), severity="error", timeout=8)
            return
        app.notify(f"Comparing with {visible(row.info.name)}.", timeout=3)

    def action_delete(self) -> None:
        row = self._pick("delete")
        if row is None:
            return
        folder, name = row.info.path, visible(row.info.name)
        if row.live or run_is_live(folder):
            self.say(f"Run {name} is training; stop it before deleting it.", error=True)
            return
        if folder.is_symlink():
            self.say(f"{name} is a link to another folder; it is not deleted through the link.", error=True)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._delete(folder)

        size = format_size(row.size)
        question = f"Delete run {name} ({size}: its checkpoints, metrics and log)? This cannot be undone."
        self.app.push_screen(ConfirmDialog(question, yes="Delete", title="Delete run"), answered)

    def _delete(self, folder: Path) -> None:
        ComparedRun, RunAttachment = self.followers.ComparedRun, self.followers.RunAttachment
        app = self.gui
        try:
            delete_run(folder)
        except UserError as exc:
            self.say(str(exc), error=True)
            return
        for widget in [*app.query(RunAttachment), *app.query(ComparedRun)]:
            if widget.run_dir == folder:
                widget.remove()
        if app.resume_from == str(folder):
            app.resume_from = None
        self.say(f"Deleted run {visible(folder.name)}.")
        app.notify(f"Deleted run {visible(folder.name)}.", timeout=4)
        self.refresh_runs()

