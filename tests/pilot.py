"""Helpers for driving the app under Textual's pilot: read the screen, wait for a state."""

from __future__ import annotations

import time
from typing import Any, Callable


def screen_text(app: Any) -> str:
    """What the terminal shows, as plain text."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def wait_until(pilot: Any, predicate: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    """Let the app run until ``predicate`` holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await pilot.pause(0.05)
