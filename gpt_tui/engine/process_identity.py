"""Telling a run's own process from another that later got the same pid.

A pid in a run's files outlives its process: the kernel hands the number to
the next process that starts, and a file can be damaged or edited to name
anything (``-1`` means "every process I may signal" to ``kill``). So a pid
read from disk is only trusted with the start time the run recorded next to
it: the kernel's start time of a process (``/proc/<pid>/stat`` field 22,
clock ticks since boot) never changes while it lives, and a process that
reuses the pid starts later.

Where ``/proc`` is missing the start time is unknown, and nothing that needs
proof of identity (signalling, "still starting") is done.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

PROC = Path("/proc")


def valid_pid(value: object) -> int | None:
    """``value`` as a pid this process may act on, or None.

    The one check every pid read from a run's files goes through: an int
    (JSON ``true`` is not 1), above 1 (0, -1 and below address process
    groups; 1 is init), and not this process itself.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    if value <= 1 or value == os.getpid():
        return None
    return value


def start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks after boot); None when it is gone or unknowable."""
    try:
        stat = (PROC / str(int(pid)) / "stat").read_text(encoding="ascii", errors="replace")
        # The command name (field 2) may hold spaces and parentheses: count from the last ")".
        return int(stat.rpartition(")")[2].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def is_zombie(pid: int) -> bool:
    """An exited process its parent has not reaped yet: it still answers ``kill(pid, 0)``."""
    try:
        stat = (PROC / str(int(pid)) / "stat").read_text(encoding="ascii", errors="replace")
        return stat.rpartition(")")[2].split()[0] == "Z"
    except (OSError, ValueError, IndexError):
        return False


def same_process(pid: object, recorded_start: object) -> int | None:
    """The pid when it is valid, alive, not a zombie, and started when the run recorded; None otherwise."""
    checked = valid_pid(pid)
    if checked is None or isinstance(recorded_start, bool) or not isinstance(recorded_start, int):
        return None
    if start_time(checked) != recorded_start or is_zombie(checked):
        return None
    return checked


def signal_same_process(pid: object, recorded_start: object, sig: int) -> bool:
    """Send ``sig`` to ``pid`` only while it is the process that started at ``recorded_start``; whether it was sent.

    On Linux a pidfd pins the process while its start time is checked, so the
    pid cannot pass to another process between the check and the signal.
    """
    checked = valid_pid(pid)
    if checked is None:
        return False
    pidfd: int | None = None
    if hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal"):
        try:
            pidfd = os.pidfd_open(checked)
        except ProcessLookupError:
            return False
        except OSError:
            pidfd = None  # a kernel without pidfds: the plain check below still holds for all but an instant
    try:
        if same_process(checked, recorded_start) is None:
            return False
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, sig)
        else:
            os.kill(checked, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        if pidfd is not None:
            os.close(pidfd)
