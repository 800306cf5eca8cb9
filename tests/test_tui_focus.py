"""Focus in Settings: it starts on the first field, Tab goes from field to field, and it shows in every theme."""

from __future__ import annotations

from typing import Any

import pytest
from textual.color import Color
from textual.widgets import Input, Label, Select

from pilot import new_app, wait_until
from gpt_tui.tui.chart_colors import contrast
from gpt_tui.tui.settings import FieldRow, SettingsScreen

FOCUS_CONTRAST = 3.0  # WCAG's minimum for a focus indicator against the unfocused look


async def open_settings(pilot: Any, app: Any) -> SettingsScreen:
    app.action_settings()
    await wait_until(pilot, lambda: isinstance(app.screen, SettingsScreen) and bool(app.screen.query(FieldRow)), what="Settings")
    await pilot.pause()
    return app.screen


def is_field(widget: Any) -> bool:
    return isinstance(widget, (Input, Select)) and isinstance(widget.parent.parent, FieldRow)


@pytest.mark.anyio
async def test_settings_focus_starts_on_the_first_field_and_tab_moves_between_visible_fields(fast_tui_settings):
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_settings(pilot, app)
        first = screen.query(FieldRow).first().query_one("Select, Input")
        assert app.focused is first
        seen = [app.focused]
        for _ in range(6):
            await pilot.press("tab")
            focused = app.focused
            assert focused is not None and focused.region.area > 0, f"Tab landed on {focused!r}, which shows nothing"
            assert screen.region.contains_region(focused.region) or focused.region in screen.region
            seen.append(focused)
        assert all(is_field(w) or w.id.startswith("browse-") for w in seen), seen
        assert len(set(map(id, seen))) == len(seen)  # each Tab went somewhere new


def label_colors(row: FieldRow) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    label = row.query_one(Label)
    background = label.background_colors[1]
    return background.rgb, label.rich_style.color.triplet if label.rich_style.color and label.rich_style.color.triplet else (0, 0, 0)


@pytest.mark.anyio
async def test_a_focused_field_differs_from_an_unfocused_one_by_3_to_1_in_every_theme(fast_tui_settings):
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_settings(pilot, app)
        rows = list(screen.query(FieldRow))
        select_row = next(r for r in rows if r.query(Select))
        input_row = next(r for r in rows if r.query(Input))
        other = next(r for r in rows if r not in (select_row, input_row))
        themes = sorted(app.available_themes)
        assert {"textual-light", "textual-dark", "gpt-tui-dark"} <= set(themes)
        weak = []
        # Every theme by its colours (what the focus rule paints: the text colour behind the label, on the form's surface)...
        for theme in themes:
            variables = app.get_theme(theme).to_color_system().generate()
            if app.get_theme(theme).ansi:
                continue  # the terminal's own colours: checked on screen below
            fg, surface = (Color.parse(variables[name]).rgb for name in ("foreground", "surface"))
            if contrast(fg, surface) < FOCUS_CONTRAST:
                weak.append(f"{theme}: text on surface {contrast(fg, surface):.2f}:1")
        # ...and on screen, for a dark, a light, a shipped and an ANSI theme.
        for theme in ("gpt-tui-dark", "textual-light", "solarized-light", "ansi-dark"):
            app.theme = theme
            for row in (select_row, input_row):
                row.query_one("Select, Input").focus()
                await pilot.pause()
                label = row.query_one(Label)
                if app.native_ansi_color or app.current_theme.ansi:
                    # the terminal's own colours: the label is reversed, which swaps its text and background
                    if not (label.rich_style.reverse and not other.query_one(Label).rich_style.reverse):
                        weak.append(f"{theme} {row.spec.label}: the focused label is not reversed")
                    continue
                focused_bg, focused_fg = label_colors(row)
                unfocused_bg, _ = label_colors(other)
                ratio = contrast(focused_bg, unfocused_bg)
                readable = contrast(focused_fg, focused_bg)
                if ratio < FOCUS_CONTRAST or readable < 4.5:
                    weak.append(f"{theme} {row.spec.label}: focus {ratio:.2f}:1, label text {readable:.2f}:1")
        assert weak == []


@pytest.mark.anyio
async def test_typing_into_a_closed_dropdown_picks_a_choice_or_says_why_not(fast_tui_settings):
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_settings(pilot, app)
        model = screen.query_one("#input-model", Select)
        model.focus()
        await pilot.pause()
        before = model.value
        choices = model.parent.parent.choices  # the row's list
        target = next(c for c in choices if c != before)
        for ch in target[:3]:
            await pilot.press(ch)
        assert model.value == target  # typing the start of a choice picks it
        await pilot.pause(1.1)  # a new run of typing
        for ch in "/tmp/corpus.txt":
            await pilot.press({"/": "slash", ".": "full_stop"}.get(ch, ch))
        await pilot.pause()
        assert model.value == target  # no choice matches: nothing changes...
        notices = [n.message for n in app._notifications]
        assert any("is a list" in n and "/" in n for n in notices), notices  # ...and it says so, once
        assert sum("is a list" in n for n in notices) == 1
