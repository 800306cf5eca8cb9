"""Screenshots of the app compared with the approved ones in tests/__snapshots__.

Deterministic by construction: fixed terminal sizes, theme and seeds; the
app's ``stable`` mode shows placeholders for clocks, speeds and time-stamped
run names; user directories live in a temporary folder, and paths on screen
are relative to it. Regenerate after an intended change with
``pytest tests/test_tui_snapshots.py --snapshot-update`` and review the SVGs.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from pilot import new_app, wait_until
from gpt_tui.tui.themes import load_themes, shipped_theme_dir

SHIPPED_THEMES = sorted(load_themes(shipped=shipped_theme_dir(), user=shipped_theme_dir() / "no-user-themes").themes)
RECORDED_STEPS = 60


def test_start_screen_80x24(snap_compare, fast_tui_settings):
    assert snap_compare(new_app(), terminal_size=(80, 24))


def test_start_screen_160x48(snap_compare, fast_tui_settings):
    assert snap_compare(new_app(), terminal_size=(160, 48))


def recorded_run(steps: int) -> list[Any]:
    """A fixed, made-up run of the tiny model: the events a trainer sends, with losses that fall."""
    from gpt_tui import paths
    from gpt_tui.engine.events import EvalEvent, StartEvent, StepEvent

    def loss(step: int, offset: float = 0.0) -> float:
        return 10.9 - 4.2 * (1 - math.exp(-step / 14)) + 0.18 * math.sin(step * 1.7) + offset

    events: list[Any] = [
        StartEvent(str(paths.runs_dir() / "20260101-120000-tiny"), "cpu", 13_270_016, 125_113, 13_902, 1955, 217, 400, 0),
        EvalEvent(0, 1, 0, 10.93, 10.95),
    ]
    for step in range(1, steps + 1):
        events.append(StepEvent(step, 1, step * 64, loss(step), 1e-3, 1.0, 1500.0, step * 0.04, 400))
        if step % 5 == 0:
            events.append(EvalEvent(step, 1, step * 64, loss(step) - 0.1, loss(step, 0.35) - 0.18 * math.sin(step * 1.7)))
    return events


def test_training_in_progress_with_chart(snap_compare, fast_tui_settings):
    """The panes fed through the app's own event buffer and drain, as the training thread feeds them.

    The events are recorded rather than computed by the engine, so the screenshot does not
    change with the engine's numerics or the CPU's; tests/test_tui_app.py drives real training.
    """
    app = new_app()

    async def run_before(pilot: Any) -> None:
        await pilot.pause()  # laid out first, so the chart knows its width
        app.progress.reset_for_start()
        for event in recorded_run(RECORDED_STEPS):
            app.buffer.push(event)
        app.drain_events()
        app.chart.redraw_if_changed(force=True)
        await pilot.pause()  # the redraw's refresh is handled

    assert snap_compare(app, terminal_size=(100, 30), run_before=run_before)


RECORDED_REPLY = [" toward", " the", " light", " of", " the", " morning", ",", " and", " the", " river", " runs", "."]


def test_repl_after_a_reply(snap_compare, fast_tui_settings, monkeypatch):
    """A reply streamed through the app's worker and messages; the text is fixed, not sampled,
    so the screenshot does not depend on the engine's weights (tests/test_tui_app.py generates for real)."""
    from gpt_tui.engine import generation

    def recorded_stream(model: Any, prompt: str, sampling: Any, stats: Any = None):
        for piece in RECORDED_REPLY[: sampling.max_new_tokens]:
            if stats is not None:
                stats.new_tokens += 1
            yield piece

    monkeypatch.setattr(generation, "stream_text", recorded_stream)
    app = new_app()

    async def run_before(pilot: Any) -> None:
        app.repl.input.value = "Every effort moves you"
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.repl.last_reply is not None)
        await app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_settings_panel(snap_compare, fast_tui_settings):
    async def run_before(pilot: Any) -> None:
        from gpt_tui.tui.corpus_view import CorpusView

        await pilot.press("f2")
        view = lambda: pilot.app.screen.query_one(CorpusView).render()  # noqa: E731
        await wait_until(pilot, lambda: "part" in str(view()), what="the corpus summary, worked out in a worker")

    assert snap_compare(new_app(), terminal_size=(100, 36), run_before=run_before)


@pytest.mark.parametrize("theme", SHIPPED_THEMES)
def test_each_shipped_theme(snap_compare, fast_tui_settings, theme):
    app = new_app()

    async def run_before(pilot: Any) -> None:
        app.theme = theme
        app.repl.input.value = "/help"
        await pilot.press("enter")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_three_themes_ship_with_the_package():
    assert len(SHIPPED_THEMES) >= 3


def test_small_terminal_60x15_after_a_resize(snap_compare, fast_tui_settings):
    """One pane at a time (the conversation first), a tab line, and a footer of whole keys."""
    app = new_app()

    async def run_before(pilot: Any) -> None:
        await pilot.resize_terminal(60, 15)
        app.repl.input.value = "Every effort"
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_big_terminal_200x60_after_a_resize(snap_compare, fast_tui_settings):
    """Grown from 80×24: the wide layout, with the chart given the height."""
    app = new_app()

    async def run_before(pilot: Any) -> None:
        await pilot.resize_terminal(200, 60)
        await pilot.pause()
        app.progress.reset_for_start()
        for event in recorded_run(RECORDED_STEPS):
            app.buffer.push(event)
        app.drain_events()
        app.chart.redraw_if_changed(force=True)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
