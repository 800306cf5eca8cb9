"""A hand-off between the training thread and the UI: append on one side, drain on the other."""

from __future__ import annotations

import threading
from typing import Any


class EventBuffer:
    """Trainer events waiting for the UI.

    ``push`` runs on the training thread for every event, so it only appends
    under a lock held for a few instructions; the UI drains the whole batch
    on a timer. The trainer therefore never waits for a redraw.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[Any] = []
        self.pushed = 0  # total ever pushed, for tests and the benchmark

    def push(self, event: Any) -> None:
        with self._lock:
            self._events.append(event)
            self.pushed += 1

    def drain(self) -> list[Any]:
        with self._lock:
            events, self._events = self._events, []
        return events

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)
