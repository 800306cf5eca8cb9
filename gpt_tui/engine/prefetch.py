"""Batches made ahead of the step that needs them, so a GPU never waits on the host."""

from __future__ import annotations

import queue
import threading
from typing import Iterator

from gpt_tui.engine.batches import Batch


class Prefetcher:
    """Builds the next batches on a background thread while the device works on the current one.

    Gathering a batch reads the memory-mapped cache (possibly from disk) and
    pins it; doing that ahead keeps a GPU from waiting on the host. The order is
    exactly that of the wrapped iterator. ``close`` stops the thread.
    """

    _END = object()

    def __init__(self, batches: Iterator[Batch], depth: int = 2) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max(1, depth))
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(batches,), name="batch-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _fill(self, batches: Iterator[Batch]) -> None:
        try:
            for batch in batches:
                if not self._put(batch):
                    return
        except BaseException as exc:  # handed to the consumer, raised where it asks for the batch
            self._put(exc)
            return
        self._put(self._END)

    def __iter__(self) -> "Prefetcher":
        return self

    def __next__(self) -> Batch:
        if self._closed.is_set():
            raise StopIteration
        item = self._queue.get()
        if item is self._END:
            self._closed.set()
            raise StopIteration
        if isinstance(item, BaseException):
            self._closed.set()
            raise item
        return item  # type: ignore[return-value]

    def close(self) -> None:
        self._closed.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=5)
