"""The main screen's arrangement follows the size the terminal has now, after every resize."""

from __future__ import annotations

from typing import Any

import pytest

from pilot import new_app, screen_text, wait_until

# Shrinking and growing, across every arrangement and back.
RESIZES = [(120, 36), (80, 24), (200, 60), (60, 15), (120, 36), (80, 24), (160, 48), (100, 30), (200, 60), (80, 24)]


def stats_lines(app: Any) -> list[str]:
    return [line for line in screen_text(app).splitlines() if "step " in line or "speed " in line or "time " in line]


def check_arrangement(app: Any, width: int, height: int) -> None:
    """What a person sees at this size: every stats row whole, and the chart given the room there is."""
    where = f"at {width}x{height}"
    wide = width >= 120 and height >= 36
    assert app.training_pane.wide == wide, where
    text = screen_text(app)
    if width >= 72 and height >= 20:
        for label in ("step", "tokens", "loss", "speed", "time", "MFU"):
            assert f"{label} " in text, f"{where}: the {label} row is missing"
        if wide:
            assert "params" in text and "device" in text, where
        else:
            assert "params" not in text, f"{where}: the wide layout's extra columns wrap in a narrow pane"
        chart = app.query_one("#chart-box").region
        if wide:
            assert chart.height >= height - 1 - 11 - 1, f"{where}: the chart is {chart.height} rows tall"
            assert chart.width >= width * 0.5, where
        else:
            assert chart.height == 11, where


@pytest.mark.anyio
async def test_layout_follows_every_resize_shrinking_and_growing(fast_tui_settings):
    app = new_app()
    async with app.run_test(size=RESIZES[0]) as pilot:
        await pilot.pause()
        check_arrangement(app, *RESIZES[0])
        for width, height in RESIZES[1:]:
            await pilot.resize_terminal(width, height)
            await pilot.pause()
            assert app.size == (width, height)
            check_arrangement(app, width, height)


def footer_problems(app: Any) -> list[str]:
    """Keys the footer shows cut, or beyond the command palette's key; [] when each one shows whole."""
    from textual.widgets._footer import FooterKey

    last_line = screen_text(app).splitlines()[-1]
    keys = [key for key in app.screen.query(FooterKey) if key.display]
    palette = [key for key in keys if key.has_class("-command-palette")]
    edge = palette[0].region.x if palette else app.size.width
    problems = []
    for key in keys:
        whole = f"{key.key_display} {key.description}".strip()
        if whole not in last_line:
            problems.append(f"{whole!r} is not whole in {last_line!r}")
        if key not in palette and key.region.right - 1 > edge:  # its trailing space may meet the palette key's border
            problems.append(f"{whole!r} runs under the palette key")
    return problems


def footer_fitted(app: Any) -> bool:
    return "Train" in screen_text(app).splitlines()[-1] and footer_problems(app) == []


@pytest.mark.anyio
async def test_small_terminal_shows_one_pane_at_a_time_and_typing_and_reading_work(fast_tui_settings):
    from gpt_tui.tui.layout import NEXT_PANE_KEY

    app = new_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.resize_terminal(60, 15)
        await pilot.pause()
        assert app.has_class("-compact")
        repl = app.repl
        assert repl.region.height >= 10 and app.focused is repl.input
        for key in "hello":
            await pilot.press(key)
        assert repl.input.value == "hello" and "hello" in screen_text(app)
        assert "Welcome to gpt-tui" in screen_text(app)  # the conversation reads at this size
        await wait_until(pilot, lambda: footer_fitted(app), timeout=10, what=f"whole keys: {footer_problems(app)}")
        footer = screen_text(app).splitlines()[-1]
        assert "Train" in footer and "Pane" in footer and "Quit" in footer

        await pilot.press(NEXT_PANE_KEY)
        text = screen_text(app)
        assert not repl.display or repl.region.height == 0
        assert "step " in text and "loss " in text and "ETA " in text  # the training pane, whole
        await pilot.press(NEXT_PANE_KEY)
        assert app.query_one("#chart-box").region.height >= 10 and "Loss" in screen_text(app)
        await pilot.press(NEXT_PANE_KEY)
        assert app.focused is repl.input and repl.region.height >= 10
        await pilot.press("!")
        assert repl.input.value == "hello!"

        await pilot.resize_terminal(100, 30)  # back to a size with room for every pane
        await pilot.pause()
        assert not app.has_class("-compact") and repl.display and app.training_pane.display
        assert "Pane" not in screen_text(app).splitlines()[-1]  # only small terminals switch panes


@pytest.mark.anyio
@pytest.mark.parametrize("size", [(60, 15), (72, 20), (80, 24), (40, 10)])
async def test_the_footer_shows_only_whole_keys(fast_tui_settings, size):
    app = new_app()
    async with app.run_test(size=size) as pilot:
        # the footer lays out its keys again once the bindings are known, after the first frame
        await wait_until(pilot, lambda: footer_fitted(app), timeout=10, what=f"whole keys: {footer_problems(app)}")
        assert "Train" in screen_text(app).splitlines()[-1]


@pytest.mark.anyio
async def test_a_terminal_too_small_for_any_pane_says_so_and_names_the_minimum(fast_tui_settings):
    from gpt_tui.tui.layout import USABLE_MIN

    app = new_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.resize_terminal(30, 8)
        await pilot.pause()
        text = " ".join(screen_text(app).split())
        assert "too small" in text and f"{USABLE_MIN[0]}×{USABLE_MIN[1]}" in text
        assert "Talk to the model" not in text
        await pilot.resize_terminal(60, 15)
        await pilot.pause()
        assert "too small" not in screen_text(app) and "Talk to the model" in screen_text(app)


def test_the_prompt_hint_fits_the_input_at_every_width():
    from gpt_tui.tui.layout import PROMPT_PLACEHOLDERS, fitting_placeholder

    for width in range(10, 120):
        hint = fitting_placeholder(width)
        assert len(hint) <= width or hint == PROMPT_PLACEHOLDERS[-1]
        assert all(len(longer) > width for longer in PROMPT_PLACEHOLDERS[: PROMPT_PLACEHOLDERS.index(hint)])


@pytest.mark.anyio
async def test_the_prompt_hint_is_whole_at_120x36(fast_tui_settings):
    app = new_app()
    async with app.run_test(size=(120, 36)) as pilot:
        for size in ((120, 36), (80, 24), (120, 36)):
            await pilot.resize_terminal(*size)
            await pilot.pause()
            box = app.repl.input
            assert len(box.placeholder) < box.content_size.width, size
            assert box.placeholder in screen_text(app), size
