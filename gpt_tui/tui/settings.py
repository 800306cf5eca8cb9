"""The settings panel: training, sampling, checkpoints and themes in one modal screen.

Each input is checked as it is typed with the same parser the settings file
uses; a bad value is marked in place with the reason, and Save refuses to
close until every field is valid, so nothing typed is lost.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.lazy import Lazy
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Select, Static, TabbedContent, TabPane

from gpt_tui.errors import UserError
from gpt_tui.tui.checkpoints import CheckpointsPanel
from gpt_tui.tui.form_focus import FOCUS_CSS, ChoiceSelect, FocusMarked, first_field
from gpt_tui.tui.ordered_keys import InOrderInput
from gpt_tui.tui.corpus_picker import CorpusPicker, PathSuggester, start_folder
from gpt_tui.tui.corpus_view import CorpusView
from gpt_tui.tui.config import (
    SAMPLING_FIELDS,
    TRAINING_FIELDS,
    FieldSpec,
    Settings,
    check_consistency,
    format_value,
    parse_value,
)

SELECT_FIELDS = {"training.device", "training.model"}
FIRST_ROWS = 5  # the training fields a first frame shows; the rest are mounted right after it
PATH_FIELDS = {"training.data"}  # completed from the filesystem, with a Browse… button beside them


class FieldRow(FocusMarked, Vertical):
    """A label, an input (or a choice), and the reason the value is refused, if it is."""

    DEFAULT_CSS = """
    FieldRow { height: auto; }
    FieldRow > Horizontal { height: 1; }
    FieldRow Label { width: 22; color: $text-muted; }
    FieldRow Input, FieldRow Select { width: 1fr; }
    FieldRow Button { margin-left: 1; min-width: 10; }
    FieldRow Input { background: $boost; }
    FieldRow Input.-invalid { background: $error 25%; }
    FieldRow > .field-error { color: $error; height: auto; padding-left: 22; display: none; }
    FieldRow.-invalid > .field-error { display: block; }
    FieldRow > .field-help { color: $text-muted 70%; height: auto; padding-left: 22; }
    """

    def __init__(self, spec: FieldSpec, value: Any, choices: list[str] | None = None) -> None:
        super().__init__(id=f"field-{spec.section}-{spec.name}")
        self.spec = spec
        self.value = value
        self.choices = choices
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Label(self.spec.label)
            if self.choices is not None:
                options = [(choice, choice) for choice in self.choices]
                yield ChoiceSelect(options, what=self.spec.label, value=self.value, allow_blank=False, compact=True, id=f"input-{self.spec.name}")
            else:
                yield InOrderInput(
                    "auto" if self.value is None and self.spec.placeholder == "auto" else format_value(self.value),
                    placeholder=self.spec.placeholder,
                    compact=True,
                    id=f"input-{self.spec.name}",
                    select_on_focus=False,
                    suggester=PathSuggester() if self.spec.key in PATH_FIELDS else None,
                )
                if self.spec.key in PATH_FIELDS:
                    yield Button("Browse…", id=f"browse-{self.spec.name}", compact=True)
        yield Static("", classes="field-error")
        if self.spec.help:
            yield Static(self.spec.help, classes="field-help")
        if self.spec.key in PATH_FIELDS:
            yield CorpusView(id=f"summary-{self.spec.name}")

    def on_mount(self) -> None:
        for view in self.query(CorpusView):
            view.look_at(format_value(self.value))

    def validate_text(self, text: str) -> None:
        try:
            self.value = parse_value(self.spec, text)
            self.error = None
        except UserError as exc:
            self.error = str(exc)
        self.set_class(self.error is not None, "-invalid")
        self.query_one(".field-error", Static).update(Text(self.error or ""))
        for box in self.query(Input):
            box.set_class(self.error is not None, "-invalid")
        for view in self.query(CorpusView) if self.error is None else ():
            view.look_at(text)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.validate_text(event.value)

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.value is not Select.BLANK:
            self.validate_text(str(event.value))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == f"browse-{self.spec.name}":
            event.stop()
            self.browse()

    def browse(self) -> None:
        """The file browser; what it picks replaces the field's text (Esc there leaves it as it was)."""
        box = self.query_one(Input)

        def picked(path: str | None) -> None:
            if path:
                box.value = path
                box.cursor_position = len(path)
            box.focus()

        self.app.push_screen(CorpusPicker(start_folder(box.value)), picked)


class SettingsScreen(ModalScreen["Settings | None"]):
    DEFAULT_CSS = """
    SettingsScreen { align: center middle; background: $background 60%; }
    SettingsScreen > #settings {
        width: 100%;
        max-width: 110;
        height: 100%;
        max-height: 44;
        border: thick $primary;
        background: $surface;
    }
    SettingsScreen TabbedContent { height: 1fr; }
    SettingsScreen TabbedContent > ContentSwitcher { height: 1fr; }
    SettingsScreen TabPane { padding: 0 1; height: 1fr; }
    SettingsScreen #settings-footer { height: 1; dock: bottom; padding: 0 1; }
    SettingsScreen #settings-message { width: 1fr; color: $error; }
    SettingsScreen #settings-footer Button { margin-left: 1; }
    SettingsScreen .settings-note { color: $text-muted; margin-bottom: 1; }
    SettingsScreen .settings-below { height: auto; }
    """ + FOCUS_CSS
    BINDINGS = [
        Binding("escape", "cancel", "Close", id="settings.cancel"),
        Binding("ctrl+s", "save", "Save", id="settings.save"),
        Binding("ctrl+o", "browse_corpus", "Browse for a corpus", id="settings.browse_corpus"),
        # Priority: the focus moves when Tab arrives, not after it has bubbled up from the field it leaves,
        # so keys typed right behind it go to the field it lands on.
        Binding("tab", "app.focus_next", show=False, priority=True),
        Binding("shift+tab", "app.focus_previous", show=False, priority=True),
    ]

    def __init__(
        self,
        settings: Settings,
        *,
        devices: list[str],
        themes: list[str],
        theme_notes: list[str],
        training_active: bool = False,
        initial: str = "training",
        stable: bool = False,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.devices = devices
        self.themes = themes
        self.theme_notes = theme_notes
        self.training_active = training_active
        self.initial = initial
        self.stable = stable
        if initial != "checkpoints":
            self.AUTO_FOCUS = first_field(initial)  # not the tab bar: the first field of the tab shown

    def _rows(self, fields: tuple[FieldSpec, ...], group: Any) -> ComposeResult:
        for spec in fields:
            value = getattr(group, spec.name)
            choices: list[str] | None = None
            if spec.key == "training.device":
                choices = ["auto", *[d for d in self.devices if d != "auto"]]
                if value not in choices:
                    value = "auto"
            elif spec.choices:
                choices = list(spec.choices)
            yield FieldRow(spec, value, choices)

    def _later(self, tab: str, widget: Widget) -> Widget:
        """A hidden tab's content is mounted after the screen first shows: a form of a hundred widgets
        costs a second of CPU to build, and F2 or F3 should show at once."""
        return widget if tab == self.initial else Lazy(widget)

    def compose(self) -> ComposeResult:
        box = Vertical(id="settings")
        box.border_title = "Settings"
        box.border_subtitle = "Ctrl+S save · Esc close"
        with box:
            with TabbedContent(initial=self.initial):
                with TabPane("Training", id="training"):
                    with self._later("training", VerticalScroll(can_focus=False)):
                        note = "Changes apply to the next run you start." if self.training_active else "Used when you press Start."
                        yield Static(note, classes="settings-note")
                        yield from self._rows(TRAINING_FIELDS[:FIRST_ROWS], self.settings.training)
                        with Lazy(Vertical(classes="settings-below")):  # out of sight at first: built after it shows
                            yield from self._rows(TRAINING_FIELDS[FIRST_ROWS:], self.settings.training)
                with TabPane("Sampling", id="sampling"):
                    with self._later("sampling", VerticalScroll(can_focus=False)):
                        yield Static("Defaults for new sessions; /temp, /topk... change the ones in force.", classes="settings-note")
                        yield from self._rows(SAMPLING_FIELDS, self.settings.sampling)
                with TabPane("Checkpoints", id="checkpoints"):
                    yield self._later("checkpoints", CheckpointsPanel(stable=self.stable, id="checkpoints-panel"))
                with TabPane("Theme", id="theme"):
                    with self._later("theme", VerticalScroll(can_focus=False)):
                        yield Static("Also in the command palette (Ctrl+P → Theme). Your own theme files go in the config directory's themes/ folder.", classes="settings-note")
                        current = self.settings.theme if self.settings.theme in self.themes else Select.BLANK
                        yield ChoiceSelect([(name, name) for name in self.themes], what="Theme", value=current, allow_blank=current is Select.BLANK, id="theme-select")
                        for note in self.theme_notes:
                            yield Static(Text(note, style="yellow"))
            with Horizontal(id="settings-footer"):
                yield Static("", id="settings-message")
                yield Button("Cancel", id="settings-cancel", compact=True)
                yield Button("Save", id="settings-save", compact=True, variant="primary")

    @property
    def checkpoints(self) -> CheckpointsPanel:
        return self.query_one(CheckpointsPanel)

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "theme-select" and event.value is not Select.BLANK:
            event.stop()
            self.app.theme = str(event.value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "settings-save":
            event.stop()
            self.action_save()
        elif event.button.id == "settings-cancel":
            event.stop()
            self.action_cancel()

    def collect(self) -> tuple[Settings | None, list[str]]:
        """The settings the form holds, or None and the refusals."""
        settings = self.settings
        errors: list[str] = []
        for row in self.query(FieldRow):
            if row.error is not None:
                errors.append(f"{row.spec.label}: {row.error}")
                continue
            settings = settings.with_value(row.spec.section, row.spec.name, row.value)
        if errors:
            return None, errors
        try:
            check_consistency(settings)
        except UserError as exc:
            return None, [str(exc)]
        return settings, []

    def action_save(self) -> None:
        settings, errors = self.collect()
        message = self.query_one("#settings-message", Static)
        if settings is None:
            message.update(Text(f"Not saved — {errors[0]}" + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else "")))
            return
        self.dismiss(settings.with_value("app", "theme", self.app.theme))

    def action_browse_corpus(self) -> None:
        self.query_one(TabbedContent).active = "training"
        self.query_one("#field-training-data", FieldRow).browse()

    def action_cancel(self) -> None:
        self.dismiss(None)
