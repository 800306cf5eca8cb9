"""F2 and F3 show at once and build the hidden part of the form right after: nothing in it is lost."""

from __future__ import annotations

import pytest

from pilot import new_app, wait_until
from gpt_tui.tui.config import SAMPLING_FIELDS, TRAINING_FIELDS, load_settings
from gpt_tui.tui.settings import FieldRow, SettingsScreen


@pytest.mark.anyio
@pytest.mark.parametrize("key", ["f2", "f3"])
async def test_the_whole_form_follows_the_first_frame_and_saves_unchanged(key, fast_tui_settings):
    app = new_app()
    async with app.run_test(size=(100, 36)) as pilot:
        await pilot.press(key)
        await wait_until(pilot, lambda: isinstance(app.screen, SettingsScreen), what="the settings screen")
        screen = app.screen
        every = len(TRAINING_FIELDS) + len(SAMPLING_FIELDS)
        await wait_until(pilot, lambda: len(screen.query(FieldRow)) == every, what="every field built")
        names = [row.spec.key for row in screen.query(FieldRow)]
        assert names == [spec.key for spec in TRAINING_FIELDS + SAMPLING_FIELDS]  # in the form's order
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: not isinstance(app.screen, SettingsScreen), what="saved and closed")
    stored, problems = load_settings()
    assert problems == []
    assert stored.training == fast_tui_settings.training and stored.sampling == fast_tui_settings.sampling
