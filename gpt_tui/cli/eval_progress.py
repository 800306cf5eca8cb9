"""``gpt-tui eval``'s progress line on a terminal: batches, tokens and the time left for each split.

Scoring a whole split of a large corpus on a CPU takes minutes; without a
line that moves, that reads as a hang. Like ``train``'s bar, the line goes to
stderr and only when it is a terminal, so a piped or logged stdout holds the
results alone.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from gpt_tui.cli import console

REDRAW_S = 0.1  # at most this often; the last batch always shows


def format_tokens(n: int) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= limit:
            return f"{n / limit:.1f}{suffix}"
    return str(n)


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA --"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"ETA {hours}:{minutes:02d}:{secs:02d}" if hours else f"ETA {minutes:02d}:{secs:02d}"


class EvalProgress:
    """A redrawn line for one split at a time; call it with ``(done, total)`` batches, then ``clear()``."""

    def __init__(self, *, stream: TextIO | None = None, force: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = force or bool(getattr(self.stream, "isatty", lambda: False)())
        self.label = ""
        self._windows = self._batch_size = self._context = 0
        self._started = 0.0
        self._first_done_at: float | None = None
        self._last_drawn = 0.0
        self._visible = False

    def start(self, label: str, windows: int, batch_size: int, context: int) -> None:
        """A new split of ``windows`` windows of ``context`` tokens: its own clock, so the ETA is this split's."""
        self.label = label
        self._windows, self._batch_size, self._context = windows, batch_size, context
        self._started = time.monotonic()
        self._first_done_at = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self._first_done_at is None:
            self._first_done_at = now  # the first batch also paid for warm-up: the pace counts from here
        if now - self._last_drawn < REDRAW_S and done != total:
            return
        self._last_drawn = now
        eta = None
        if done > 1 and now > self._first_done_at:
            eta = (total - done) * (now - self._first_done_at) / (done - 1)
        width = 24
        filled = int(width * done / max(total, 1))
        tokens = min(done * self._batch_size, self._windows) * self._context
        line = (
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} batches, "
            f"{format_tokens(tokens)}/{format_tokens(self._windows * self._context)} tokens, {format_eta(eta)}\033[K"
        )
        self._visible = console.write(self.stream, line)

    def clear(self) -> None:
        """Take the line away before a result is printed."""
        if self._visible:
            console.write(self.stream, "\r\033[K")
            self._visible = False
