"""The app's settings: the form (F2), the file it is saved in, and the theme.

Mixed into GptTuiApp; settings are read in the app's on_mount and every
change is saved at once, so a crash loses none of them.
"""

from __future__ import annotations

from typing import Any

from gpt_tui.errors import UserError
from gpt_tui.tui.config import DEFAULT_THEME, Settings, save_settings, settings_path
from gpt_tui.tui.settings import SettingsScreen
from gpt_tui.tui.themes import load_themes


class SettingsHandling:
    """Mixed into GptTuiApp, whose settings, sampling, devices and themes these keep."""

    settings: Settings
    sampling: Any
    devices: list[str]
    theme_notes: list[str]
    progress: Any
    stable: bool

    def _register_themes(self) -> None:
        catalog = load_themes()
        for theme in catalog.themes.values():
            self.register_theme(theme)
        self.theme_notes = catalog.problems
        wanted = self.settings.theme
        if wanted not in self.available_themes:
            if wanted != DEFAULT_THEME:
                self.theme_notes.append(f"Theme {wanted!r} is not installed; using {DEFAULT_THEME}.")
            wanted = DEFAULT_THEME if DEFAULT_THEME in self.available_themes else "textual-dark"
        self.theme = wanted

    def _remember_theme(self, theme: Any) -> None:
        if theme.name != self.settings.theme:
            self.settings = self.settings.with_value("app", "theme", theme.name)
            self._save_settings()

    def _save_settings(self) -> None:
        try:
            save_settings(self.settings, settings_path())
        except UserError as exc:
            self.notify(str(exc), severity="error", timeout=10)

    def action_settings(self, initial: str = "training") -> None:
        screen = SettingsScreen(
            self.settings,
            devices=self.devices,
            themes=sorted(self.available_themes),
            theme_notes=self.theme_notes,
            training_active=self.progress.active,
            initial=initial,
            stable=self.stable,
        )
        self.push_screen(screen, self._settings_closed)

    def action_checkpoints(self) -> None:
        self.action_settings("checkpoints")

    def _settings_closed(self, settings: Settings | None) -> None:
        if settings is None:
            return
        sampling_changed = settings.sampling != self.settings.sampling
        self.settings = settings
        if sampling_changed:
            self.sampling = settings.sampling
        self._save_settings()
        self._apply_training_settings()
        self.notify("Settings saved.", timeout=3)
