"""The loss chart as drawn: readable in every theme, and a smoothed train line that can be hidden."""

from __future__ import annotations

import math
from typing import Any

import pytest
from rich.color import Color as RichColor
from rich.color import ColorSystem
from rich.console import Console
from textual.color import Color

from pilot import new_app, wait_until
from gpt_tui.engine.events import EvalEvent, StepEvent

MIN_CONTRAST = 3.0


def _luminance(rgb: tuple[int, int, int]) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _rgb(color: RichColor, system: ColorSystem) -> tuple[int, int, int]:
    triplet = color.downgrade(system).get_truecolor()
    return (triplet.red, triplet.green, triplet.blue)


def _losses(steps: int) -> list[float]:
    """A falling, noisy loss: every raw step differs from the smoothed line."""
    return [6.0 * math.exp(-step / 80) + 1.5 + 0.8 * math.sin(step * 1.7) for step in range(1, steps + 1)]


def _feed(app: Any, steps: int) -> list[float]:
    losses = _losses(steps)
    app.history.add(EvalEvent(step=0, epoch=1, tokens_seen=0, train_loss=10.8, val_loss=10.9))
    for step, loss in enumerate(losses, start=1):
        app.history.add(StepEvent(step, 1, step * 64, loss, 1e-3, 1.0, 100.0, step / 10, steps))
        if step % 20 == 0:
            app.history.add(EvalEvent(step, 1, step * 64, loss, loss + 0.3))
    return [10.8, *losses]


def _cells(app: Any) -> list[tuple[str, RichColor, RichColor]]:
    """Every visible character the chart draws, with its colour and its background."""
    chart = app.chart
    chart.redraw_if_changed(force=True)
    console = Console(color_system="truecolor", width=chart.size.width, record=False)
    surface = RichColor.from_rgb(*Color.parse(app.theme_variables["surface"]).rgb)
    cells = []
    for segment in console.render(chart.render()):
        if not segment.text.strip() or segment.style is None or segment.style.color is None:
            continue
        if segment.style.color.is_default:
            continue
        cells.append((segment.text.strip(), segment.style.color, segment.style.bgcolor or surface))
    return cells


@pytest.mark.anyio
async def test_every_chart_colour_is_readable_in_every_theme_and_in_256_colours(fast_tui_settings):
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        _feed(app, 120)
        themes = sorted(app.available_themes)
        for light in ("textual-light", "solarized-light", "catppuccin-latte", "rose-pine-dawn", "atom-one-light"):
            assert light in themes
        assert {"gpt-tui-dark", "gpt-tui-light", "phosphor"} <= set(themes)  # the shipped ones
        worst: dict[tuple[str, str, bool], float] = {}
        for theme in themes:
            app.theme = theme
            await pilot.pause()
            for smoothed in (True, False):
                app.chart.smoothed = smoothed
                cells = _cells(app)
                colours = {(fg.triplet, bg.triplet) for _, fg, bg in cells}
                assert len(colours) >= 3, (theme, colours)  # curves and labels were drawn, in colour
                for system in (ColorSystem.TRUECOLOR, ColorSystem.EIGHT_BIT):
                    for _, fg, bg in cells:
                        ratio = _contrast(_rgb(fg, system), _rgb(bg, system))
                        key = (theme, system.name, smoothed)
                        worst[key] = min(worst.get(key, 99.0), ratio)
        low = {key: round(ratio, 2) for key, ratio in worst.items() if ratio < MIN_CONTRAST}
        assert not low, f"chart cells under {MIN_CONTRAST}:1 against their background: {low}"


@pytest.mark.anyio
async def test_the_smoothed_train_line_is_an_ema_and_the_toggle_hides_it(fast_tui_settings):
    from gpt_tui.tui.chart_data import EMA_DECAY

    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        losses = _feed(app, 150)
        expected: list[float] = []
        for loss in losses:
            expected.append(loss if not expected else EMA_DECAY * expected[-1] + (1 - EMA_DECAY) * loss)
        assert app.history.smoothed.xs == list(range(0, 151))
        assert app.history.smoothed.ys == pytest.approx(expected, rel=1e-12)
        assert app.chart.smoothed  # on by default

        drawn: list[str] = []
        original = app.chart.plt.plot

        def spy(*args: Any, **kwargs: Any) -> Any:
            drawn.append(kwargs.get("label", ""))
            return original(*args, **kwargs)

        app.chart.plt.plot = spy  # type: ignore[method-assign]
        app.chart.redraw_if_changed(force=True)
        assert drawn == ["train", "val", "train (smoothed)"]

        drawn.clear()
        await pilot.press("f10")  # the key that switches smoothing
        await wait_until(pilot, lambda: not app.chart.smoothed, what="smoothing off")
        assert drawn == ["train", "val"]

        drawn.clear()
        app.action_command_palette()
        await pilot.pause()
        for ch in "smooth":
            await pilot.press(ch)
        await wait_until(pilot, lambda: "Chart: smoothed" in _palette_options(app), what="the palette entry")
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.chart.smoothed, what="smoothing back on")
        assert drawn[-1] == "train (smoothed)"


def _palette_options(app: Any) -> str:
    from textual.command import CommandList

    try:
        options = app.screen.query_one(CommandList)
    except Exception:  # noqa: BLE001 - the palette is not open yet
        return ""
    return " ".join(str(options.get_option_at_index(i).prompt) for i in range(options.option_count))
