"""Focus in the settings form: where it starts, how it shows, and what typing into a dropdown does.

A form is read by where the focus is, so the focused field has to stand out
in every theme: its row's label is drawn in reverse (the theme's text colour
behind it; the terminal's own reverse in the ANSI themes), which differs from
the unfocused label by the theme's own text contrast. Focus starts on the first field of the tab that opens, and the
scrolling box around the fields takes no focus of its own (a Tab there
showed nothing). A closed dropdown answers typing by picking the first
choice that starts with what was typed; text that matches no choice is
refused with a notice, not dropped without a word.
"""

from __future__ import annotations

import time
from typing import Any

from textual import events
from textual.widgets import Select

from gpt_tui.textsafe import visible

# For a form's DEFAULT_CSS: the focused row's label in reverse, and a theme dropdown's border in the text colour.
FOCUS_CSS = """
SettingsScreen FieldRow.-focused > Horizontal > Label { background: $foreground; color: $background; text-style: bold; }
SettingsScreen FieldRow.-focused > Horizontal > Label:ansi { background: ansi_default; color: ansi_default; text-style: bold reverse; }
SettingsScreen #theme-select:focus > SelectCurrent { border: tall $foreground; }
"""
TYPING_PAUSE_S = 1.0  # a longer pause starts a new search, as in a file manager's list


def first_field(tab: str) -> str:
    """The selector of the fields of ``tab``, for a screen's AUTO_FOCUS (the first focusable one gets focus)."""
    return f"#{tab} FieldRow Select, #{tab} FieldRow Input, #{tab} Select"


class FocusMarked:
    """A row that carries the class ``-focused`` while a widget in it has focus.

    Textual restyles the focused widget and its ancestors on a focus change,
    not the ancestors' other children, so a rule on ``:focus-within`` would
    leave the row's label as it was; a class change restyles the whole row.
    """

    def _on_descendant_focus(self, _event: events.DescendantFocus) -> None:
        self.set_class(True, "-focused")  # type: ignore[attr-defined]

    def _on_descendant_blur(self, _event: events.DescendantBlur) -> None:
        self.set_class(False, "-focused")  # type: ignore[attr-defined]


class ChoiceSelect(Select[Any]):
    """A dropdown that picks a choice as its name is typed, and says so when the text matches none."""

    def __init__(self, options: list[tuple[str, Any]], *, what: str, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self.what = what
        self.choices = options
        self._typed = ""
        self._typed_at = 0.0
        self._refused = False  # one notice per run of typing

    async def _on_key(self, event: events.Key) -> None:
        if self.expanded or not event.is_printable or event.character is None or event.key == "space":
            return  # the open list searches as it is typed; space opens it
        event.stop()
        event.prevent_default()
        now = time.monotonic()
        if now - self._typed_at > TYPING_PAUSE_S:
            self._typed, self._refused = "", False
        self._typed_at = now
        self._typed += event.character
        typed = self._typed.casefold()
        for label, value in self.choices:
            if label.casefold().startswith(typed):
                self.value = value
                return
        if not self._refused:
            self._refused = True
            self.app.bell()
            names = ", ".join(label for label, _ in self.choices[:6]) + (", …" if len(self.choices) > 6 else "")
            self.app.notify(
                f"{self.what} is a list ({names}); '{visible(self._typed)}' is none of them, so it was not entered. "
                "Type the start of a choice, or press Enter to open the list.",
                severity="warning",
                timeout=6,
            )
