"""Choosing what to train on: path completion in the Corpus field and a file browser beside it.

A corpus is a file or a folder on disk, typed as a path that is easy to get
wrong. The field completes the path as it is typed (``PathSuggester``: the
first entry of the folder typed so far that starts with the name typed so
far), and Browse… opens ``CorpusPicker``, Textual's DirectoryTree in a modal
screen, which gives back the file or folder chosen. Both only list folders,
never read a file, and stop after a bounded number of entries, so a huge
folder or a pseudo-filesystem such as /proc cannot stall the app.
"""

from __future__ import annotations

import asyncio
import os
from itertools import islice
from pathlib import Path
from typing import Iterable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Button, DirectoryTree, Static

from gpt_tui import paths
from gpt_tui.engine.options import VALUE_SEPARATORS
from gpt_tui.textsafe import visible

MAX_LISTED = 300  # entries of one folder that completion or the browser looks at
UNLISTED_ROOTS = ("/proc", "/sys", "/dev")  # kernel filesystems: no corpus lives there, and reads may block


def _unlisted(folder: Path) -> bool:
    text = str(folder)
    return any(text == root or text.startswith(root + os.sep) for root in UNLISTED_ROOTS)


def complete_path(typed: str, limit: int = MAX_LISTED) -> str | None:
    """``typed`` completed to the first matching entry of its folder (a folder ends in "/"), or None.

    Only the last of several values (separated as the Corpus field separates them) is completed.
    """
    cut = max(typed.rfind(sep) for sep in VALUE_SEPARATORS) + 1
    head, last = typed[:cut], typed[cut:].lstrip()
    lead = typed[cut:][: len(typed[cut:]) - len(last)]  # the spaces after a separator, kept as typed
    if not last or last.startswith("hf:"):
        return None
    folder_text, _, prefix = last.rpartition("/")
    folder = paths.expand_user(folder_text + "/" if folder_text or last.startswith("/") else ".")
    if _unlisted(folder.resolve() if folder.is_absolute() else folder):
        return None
    try:
        with os.scandir(folder) as entries:
            names = sorted(
                (entry.name + ("/" if entry.is_dir() else ""))
                for entry in islice(entries, limit)
                if entry.name.startswith(prefix) and (prefix.startswith(".") or not entry.name.startswith("."))
            )
    except OSError:
        return None
    for name in names:
        if name != prefix:
            base = last[: len(last) - len(prefix)]
            return head + lead + base + name
    return None


class PathSuggester(Suggester):
    """Completes the path typed in an Input from the filesystem, off the UI thread."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)  # folders change: no cache

    async def get_suggestion(self, value: str) -> str | None:
        return await asyncio.to_thread(complete_path, value)


class CorpusTree(DirectoryTree):
    """A DirectoryTree that hides dot-files and lists a bounded number of entries per folder."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        shown = (path for path in paths if not path.name.startswith("."))
        return list(islice(shown, MAX_LISTED))


def start_folder(value: str) -> Path:
    """Where the browser opens: the folder of the path in the field when it exists, else the home folder."""
    cut = max(value.rfind(sep) for sep in VALUE_SEPARATORS) + 1
    last = value[cut:].strip()
    if last and not last.startswith("hf:"):
        typed = paths.expand_user(last)
        for candidate in (typed, typed.parent):
            if candidate.is_dir() and not _unlisted(candidate.resolve()):
                return candidate
    home = Path.home()
    return home if home.is_dir() else Path.cwd()


class CorpusPicker(ModalScreen["str | None"]):
    """Pick a text file (Enter on it) or a folder (Use selected) to train on; Esc keeps the field as it was."""

    DEFAULT_CSS = """
    CorpusPicker { align: center middle; background: $background 60%; }
    CorpusPicker > #picker {
        width: 90%;
        max-width: 100;
        height: 90%;
        border: thick $primary;
        background: $surface;
        padding: 0 1;
    }
    CorpusPicker #picker-root { color: $text-muted; height: auto; }
    CorpusPicker CorpusTree { height: 1fr; }
    CorpusPicker #picker-buttons { height: auto; align-horizontal: right; }
    CorpusPicker #picker-buttons Button { margin-left: 1; }
    """
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="picker.cancel"),
        Binding("ctrl+o", "use_selected", "Use selected", id="picker.use"),
        Binding("backspace", "parent", "Parent folder", id="picker.parent"),
    ]

    def __init__(self, start: Path) -> None:
        super().__init__()
        self.start = start

    def compose(self) -> ComposeResult:
        box = Vertical(id="picker")
        box.border_title = "Choose a corpus: a UTF-8 text file or a folder of them"
        box.border_subtitle = "Enter picks a file · Ctrl+O picks the selection · Backspace: up · Esc"
        with box:
            yield Static(visible(str(self.start)), id="picker-root", markup=False)
            yield CorpusTree(self.start, id="picker-tree")
            with Horizontal(id="picker-buttons"):
                yield Button("Parent folder", id="picker-parent", compact=True)
                yield Button("Cancel", id="picker-cancel", compact=True)
                yield Button("Use selected", id="picker-use", compact=True, variant="primary")

    @property
    def tree(self) -> CorpusTree:
        return self.query_one(CorpusTree)

    def on_mount(self) -> None:
        self.tree.focus()

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        event.stop()
        self.dismiss(str(event.path))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        {"picker-use": self.action_use_selected, "picker-parent": self.action_parent}.get(
            event.button.id or "", self.action_cancel
        )()

    def action_use_selected(self) -> None:
        node = self.tree.cursor_node
        chosen = node.data.path if node is not None and node.data is not None else Path(self.tree.path)
        self.dismiss(str(chosen))

    def action_parent(self) -> None:
        tree = self.tree
        here = Path(tree.path).resolve()
        if here.parent != here:
            tree.path = here.parent
            self.query_one("#picker-root", Static).update(visible(str(here.parent)))

    def action_cancel(self) -> None:
        self.dismiss(None)
