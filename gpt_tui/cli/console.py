"""Writing to stdout and stderr in a way that can never stop the work being reported.

A closed terminal (EIO), a reader that went away (EPIPE, as under ``| head``),
a full disk (ENOSPC) or a closed descriptor (EBADF) makes every later write
to that stream fail. A training run must outlive all of them and still save,
so the CLI writes through ``say``: the first failure silences that stream for
the rest of the process and points its descriptor at /dev/null, so neither a
later print nor the interpreter's flush at exit trips over it again. Listeners
hear of the failure once (the CLI stops a run in order when its reader left).
"""

from __future__ import annotations

import os
import sys
from typing import Callable, TextIO

FailureListener = Callable[[OSError], None]

_silenced: set[int] = set()  # descriptors (or, for streams without one, ids) that failed
_listeners: list[FailureListener] = []


def on_failure(listener: FailureListener) -> Callable[[], None]:
    """Call ``listener`` with the error when a stream fails; returns a function that stops that."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


def say(text: str, *, err: bool = False, end: str = "\n") -> bool:
    """Print a line to stdout (or stderr); False when that stream can no longer be written."""
    return write(sys.stderr if err else sys.stdout, text + end)


def write(stream: TextIO | None, text: str) -> bool:
    """Write and flush ``text``; on an OSError silence ``stream`` for good and return False."""
    if stream is None:
        return False
    key = _key(stream)
    if key in _silenced:
        return False
    try:
        stream.write(text)
        stream.flush()
        return True
    except ValueError:  # a closed file object: nothing to write to, nothing to tell
        return False
    except OSError as exc:
        _silence(key, exc)
        return False


def write_now(text: str) -> bool:
    """Write to stderr's descriptor directly, for signal handlers.

    A handler can interrupt a write to the same buffered stream; writing to
    the descriptor bypasses that buffer (whose re-entry would raise).
    """
    key = _key(sys.stderr) if sys.stderr is not None else 2
    if key in _silenced or not isinstance(key, int) or key < 0:
        return False
    data = text.encode("utf-8", errors="replace")
    try:
        while data:
            data = data[os.write(key, data):]
        return True
    except OSError as exc:
        _silence(key, exc)
        return False


def _key(stream: TextIO) -> int:
    try:
        return stream.fileno()
    except (OSError, ValueError, AttributeError):  # an in-memory stream (tests, embedding)
        return -id(stream) - 1


def _silence(key: int, exc: OSError) -> None:
    _silenced.add(key)
    if key >= 0:
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, key)  # what is still buffered for it (flushed at exit) goes nowhere, without error
            finally:
                os.close(null)
        except OSError:
            pass
    for listener in list(_listeners):
        listener(exc)
