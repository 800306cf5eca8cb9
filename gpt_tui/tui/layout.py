"""Which arrangement of the main screen fits the terminal, chosen from the size it has now.

Four arrangements, by size: ``wide`` (numbers over a big chart, the
conversation beside them), ``grid`` (numbers and chart side by side over the
conversation), ``compact`` (one pane at a time, switched by a key, so typing
and reading work even at 60×15) and ``too-small`` (one line naming the
minimum size). The choice is made from the size a Resize event carries: the
app's own ``size`` is updated only after the app's handlers for that event
have run, so reading it there gives the previous size.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.geometry import Size
from textual.widgets import Static

WIDE, GRID, COMPACT, TOO_SMALL = "wide", "grid", "compact", "too-small"
LAYOUTS = (WIDE, GRID, COMPACT, TOO_SMALL)
WIDE_MIN = (120, 36)  # columns, rows
GRID_MIN = (72, 20)  # a 40-column training pane beside a chart, over a conversation of several lines
USABLE_MIN = (40, 10)  # one pane, its tab line and the footer
PANES = ("talk", "training", "chart")  # compact mode shows one of these; talk first: typing always works
PANE_TITLES = {"talk": "Talk", "training": "Training", "chart": "Chart"}
NEXT_PANE_KEY = "ctrl+o"  # the default key of the "layout.pane" binding


def layout_for(width: int, height: int) -> str:
    """The arrangement for a terminal of ``width`` × ``height`` cells."""
    if width >= WIDE_MIN[0] and height >= WIDE_MIN[1]:
        return WIDE
    if width >= GRID_MIN[0] and height >= GRID_MIN[1]:
        return GRID
    if width >= USABLE_MIN[0] and height >= USABLE_MIN[1]:
        return COMPACT
    return TOO_SMALL


# The REPL input's hint, longest first: the longest that fits is shown whole.
PROMPT_PLACEHOLDERS = (
    "Type a prompt and press Enter · /help for commands",
    "Type a prompt, then Enter · /help",
    "Prompt, then Enter · /help",
    "Prompt · /help",
)


def fitting_placeholder(width: int, choices: tuple[str, ...] = PROMPT_PLACEHOLDERS) -> str:
    """The longest of ``choices`` that fits in ``width`` cells (the shortest if none does)."""
    for text in choices:
        if len(text) <= width:
            return text
    return choices[-1]


def too_small_text(width: int, height: int) -> str:
    return f"Terminal {width}×{height} is too small: make it at least {USABLE_MIN[0]}×{USABLE_MIN[1]}."


class PaneTabs(Static):
    """The tab line of compact mode: which pane shows, and the key that shows the next."""

    DEFAULT_CSS = """
    PaneTabs { height: 1; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def show(self, current: str, key: str) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        for pane in PANES:
            style = "reverse bold" if pane == current else "dim"
            text.append(f" {PANE_TITLES[pane]} ", style=style)
            text.append(" ")
        text.append(f"{key} next pane", style="dim")
        self.update(text)


class TooSmall(Static):
    """The one line shown instead of the panes when no arrangement fits."""

    DEFAULT_CSS = """
    TooSmall { height: 1fr; content-align: center middle; text-wrap: wrap; }
    """


class LayoutControl:
    """Sets the app's layout classes from a size; the CSS (app.tcss) places the panes for each."""

    def __init__(self, app: Any) -> None:
        self.app = app  # the GptTuiApp (not imported: it imports this module)
        self.layout = ""
        self.pane = PANES[0]
        self.size = Size(0, 0)

    def apply(self, size: Size) -> None:
        """Arrange the screen for ``size``, the size the terminal has now."""
        app = self.app
        self.size = size
        layout = layout_for(size.width, size.height)
        changed = layout != self.layout
        self.layout = layout
        for name in LAYOUTS:
            app.set_class(name == layout, f"-{name}")
        self._show_pane(self.pane)
        pane = app.training_pane
        wide = layout == WIDE
        if pane.wide != wide:
            pane.wide = wide
            pane.refresh_progress()
        if layout == TOO_SMALL:
            app.query_one(TooSmall).update(too_small_text(size.width, size.height))
        footer = app.query("Footer")
        if footer:
            footer.first().fit(size.width, layout == COMPACT)
        if changed and layout == COMPACT and self.pane == "talk":
            app.repl.input.focus()

    def next_pane(self) -> None:
        """Compact mode: show the next pane (the key does nothing visible in the other layouts)."""
        if self.layout != COMPACT:
            self.app.notify("The panes are all on screen; switching panes is for small terminals.", timeout=3)
            return
        self._show_pane(PANES[(PANES.index(self.pane) + 1) % len(PANES)])
        if self.pane == "talk":
            self.app.repl.input.focus()

    def _show_pane(self, pane: str) -> None:
        app = self.app
        self.pane = pane
        for name in PANES:
            app.set_class(name == pane, f"-pane-{name}")
        app.query_one(PaneTabs).show(pane, self.key)

    @property
    def key(self) -> str:
        from textual.binding import Binding

        app = self.app
        return app.get_key_display(Binding(app.settings.keys.get("layout.pane", NEXT_PANE_KEY), "next_pane"))
