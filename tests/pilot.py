"""Helpers for driving the app under Textual's pilot: read the screen, wait for a state."""

from __future__ import annotations

import time
from typing import Any, Callable

# Run with ``python -c HOLD_LOCK RUN_DIR``: holds the run's lock, as a live trainer would, until its stdin closes.
HOLD_LOCK = (
    "import sys\n"
    "from gpt_tui.engine import runlock\n"
    "lock = runlock.acquire(sys.argv[1])\n"
    "print('locked', flush=True)\n"
    "sys.stdin.read()\n"
)


def screen_text(app: Any) -> str:
    """What the terminal shows, as plain text."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def press_while_busy(pilot: Any, key: str) -> None:
    """Send a key as the terminal driver does.

    Pilot.press waits until the whole process is idle, up to a second each time,
    which never happens while a worker thread computes. The short pause only
    hands the key to the app's loop; every caller then waits for its effect.
    """
    from textual import events

    pilot.app.post_message(events.Key(key, key if len(key) == 1 else None))
    await pilot.pause(0.05)


async def wait_until(pilot: Any, predicate: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    """Let the app run until ``predicate`` holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await pilot.pause(0.05)


def new_app(**options: Any) -> Any:
    """The app as tests drive it: ``stable`` (no clock, spinner or random names on screen) and no warm-up import.

    One place builds it, so a new constructor option reaches every pilot test at once.
    """
    from gpt_tui.tui.app import GptTuiApp

    return GptTuiApp(**{"stable": True, "warm_up": False, **options})
