"""Keys delivered back to back, as a terminal delivers a burst, are applied in the order they were typed, while a real run trains.

The keys are posted to the app all at once, as Textual's driver posts the keys
it parses from one read of the terminal (key repeat, a paste, SSH packing
several keys in one packet); nothing waits between them.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest
from textual import events

from pilot import new_app, wait_until

BURSTS = 20


def post_burst(app: Any, keys: list[str]) -> None:
    for key in keys:
        app.post_message(events.Key(key, key if len(key) == 1 else None))


async def settled_value(pilot: Any, box: Any, expected: str, timeout: float = 2.0) -> str:
    """The field's value once it shows ``expected``, or whatever it holds when the keys have had ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while box.value != expected and time.monotonic() < deadline:
        await pilot.pause(0.01)
    return box.value


async def start_training(pilot: Any, app: Any, init: Any) -> None:
    from gpt_tui.tui.training_control import FINETUNE, TrainPlan

    app.training_control.start(TrainPlan(FINETUNE, str(init)))
    await wait_until(pilot, lambda: app.progress.step >= 2, what="a real run's first steps")


async def max_new_tokens_in_settings(pilot: Any, app: Any) -> tuple[Any, Any]:
    """Settings opened on its Sampling tab, with the Max new tokens field focused."""
    from textual.widgets import Input, TabbedContent

    from gpt_tui.tui.settings import SettingsScreen

    app.action_settings()
    await wait_until(pilot, lambda: isinstance(app.screen, SettingsScreen) and bool(app.screen.query("#input-max_new_tokens")),
                     what="Settings")
    screen = app.screen
    screen.query_one(TabbedContent).active = "sampling"
    box = screen.query_one("#input-max_new_tokens", Input)
    box.focus()
    await wait_until(pilot, lambda: app.focused is box, what="the field focused")
    return screen, box


@pytest.fixture
def endless_small_run(fast_tui_settings, corpus_and_init):
    """Settings for a run of the one-layer model on a short corpus that trains for as long as the test needs."""
    from gpt_tui.tui.config import save_settings

    corpus, init = corpus_and_init
    settings = fast_tui_settings
    save_settings(replace(settings, training=replace(settings.training, data=str(corpus), context_length=16,
                                                     max_steps=1_000_000, eval_freq=50)))
    return init


@pytest.mark.anyio
@pytest.mark.slow
async def test_repl_keys_in_a_burst_arrive_in_order_while_training(endless_small_run):
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await start_training(pilot, app, endless_small_run)
        box = app.repl.input
        wrong = []
        for _ in range(BURSTS):
            box.value, box.cursor_position = "abc", 3
            post_burst(app, ["backspace", "x", "y", "z", "left", "left", "delete"])
            got = await settled_value(pilot, box, "abxz")
            if got != "abxz":
                wrong.append(got)
        assert app.progress.state == "running" and app.trainer is not None
        assert wrong == [], f"{len(wrong)} of {BURSTS} bursts came out wrong: {wrong[:5]}"


@pytest.mark.anyio
@pytest.mark.slow
async def test_settings_keys_in_a_burst_arrive_in_order_while_training(endless_small_run):
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await start_training(pilot, app, endless_small_run)
        screen, box = await max_new_tokens_in_settings(pilot, app)
        wrong = []
        for i in range(BURSTS // 2):  # two bursts each
            box.value, box.cursor_position = "250", 0
            post_burst(app, ["end", "ctrl+u", str(i % 9 + 1), "7"])
            expected = f"{i % 9 + 1}7"
            got = await settled_value(pilot, box, expected)
            if got != expected:
                wrong.append(got)
            post_burst(app, ["ctrl+u", "a", "b", "c", "backspace", "x", "y", "z", "home", "delete"])
            got = await settled_value(pilot, box, "bxyz")
            if got != "bxyz":
                wrong.append(got)
        assert app.progress.state == "running"
        assert wrong == [], f"{len(wrong)} of {BURSTS} bursts came out wrong: {wrong[:5]}"


@pytest.mark.anyio
@pytest.mark.slow
async def test_keys_typed_right_after_tab_go_to_the_next_field_while_training(endless_small_run):
    """Tab moves focus from the screen's bindings; keys behind it in the same burst belong to the field it lands on."""
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await start_training(pilot, app, endless_small_run)
        screen, box = await max_new_tokens_in_settings(pilot, app)
        chain = screen.focus_chain
        before = chain[chain.index(box) - 1]
        wrong = []
        for i in range(BURSTS // 2):
            before.focus()
            await wait_until(pilot, lambda: app.focused is before, what="the field before focused")
            box.value = "250"
            untouched = getattr(before, "value", None)
            post_burst(app, ["tab", "end", "ctrl+u", str(i % 9 + 1), "7"])
            expected = f"{i % 9 + 1}7"
            got = await settled_value(pilot, box, expected)
            if got != expected or getattr(before, "value", None) != untouched:
                wrong.append((got, getattr(before, "value", None)))
        assert app.progress.state == "running"
        assert wrong == [], f"{len(wrong)} of {BURSTS // 2} bursts came out wrong: {wrong[:5]}"
