"""One live trainer per run directory, enforced with an advisory lock the kernel drops on exit.

The trainer takes ``fcntl.flock(LOCK_EX)`` on ``<run>/run.lock`` and writes its
pid and start time (gpt_tui.engine.process_identity) into the file. The
kernel releases a flock when the last descriptor of its open file closes,
which includes the process dying from SIGKILL or a power cut, so a crashed
run never leaves a lock behind and needs no clean-up.

Readers (``gpt-tui runs``, ``attach``, ``stop``, the app) ask "is anyone
holding it?" by trying a non-blocking *shared* lock for an instant: two
readers probing at once never mistake each other for a trainer. A trainer
starting in that very instant would see the lock taken, so :func:`acquire`
retries for a moment before it gives up.

flock is advisory and POSIX-only; where ``fcntl`` is missing (Windows) the
lock is a no-op, no run can prove that it lives, and readers call a run
that claims to train stale rather than trust a bare pid.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from gpt_tui import fileio
from gpt_tui.engine.process_identity import start_time
from gpt_tui.errors import UserError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = "run.lock"
_NO_FOLLOW = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)  # a planted symlink is refused, never written through
ACQUIRE_PATIENCE_S = 0.5  # how long a trainer waits out a reader's momentary probe


class RunLock:
    """A held lock on a run directory; ``release`` (or the process ending) frees it."""

    def __init__(self, run_dir: Path, fd: int | None) -> None:
        self.run_dir = run_dir
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor drops the flock

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


def lock_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / LOCK_FILE


def _read_pid(fd: int) -> int | None:
    try:
        words = os.pread(fd, 64, 0).decode("ascii", "replace").split()
    except OSError:
        return None
    return int(words[0]) if words and words[0].isdigit() else None


def _try_lock(fd: int, mode: int | None = None) -> bool:
    """Take the lock without waiting (exclusive unless ``mode`` says otherwise); False if a conflicting holder has it."""
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if mode is None else mode) | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def acquire(run_dir: str | Path, patience_s: float = ACQUIRE_PATIENCE_S) -> RunLock:
    """Lock ``run_dir`` (which must exist) for this process, or raise UserError naming the live holder."""
    run_dir = Path(run_dir)
    if fcntl is None:  # pragma: no cover - Windows
        return RunLock(run_dir, None)
    try:
        fd = os.open(lock_path(run_dir), os.O_RDWR | os.O_CREAT | _NO_FOLLOW, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise fileio.refusal(lock_path(run_dir)) from None
        raise UserError(f"Cannot create the lock file in {run_dir}: {exc.strerror or exc}; pick another --run-dir.") from None
    deadline = time.monotonic() + patience_s
    try:
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                holder = _read_pid(fd)
                who = f"process {holder}" if holder else "another process"
                raise UserError(
                    f"Run {run_dir} is in use by a live training run ({who}); wait for it to finish, "
                    f"stop it with `gpt-tui stop {run_dir}`, or pick another --run-dir."
                )
            time.sleep(0.02)
        os.ftruncate(fd, 0)
        pid = os.getpid()
        os.pwrite(fd, f"{pid} {start_time(pid) or 0}\n".encode("ascii"), 0)
    except BaseException:
        os.close(fd)
        raise
    return RunLock(run_dir, fd)


def holder(run_dir: str | Path) -> int | None:
    """The pid of the live process holding ``run_dir``'s lock; None when nobody holds it.

    Returns 0 when the lock is held but the pid cannot be read (a holder that
    has locked and not yet written its pid).
    """
    if fcntl is None:  # pragma: no cover - Windows
        return None
    try:
        fd = os.open(lock_path(run_dir), os.O_RDONLY | _NO_FOLLOW)
    except OSError:
        return None  # no lock file: no trainer of this version ever ran here
    try:
        if _try_lock(fd, fcntl.LOCK_SH):  # only a trainer's exclusive lock refuses a shared probe
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        return _read_pid(fd) or 0
    finally:
        os.close(fd)


def has_lock_file(run_dir: str | Path) -> bool:
    return lock_path(run_dir).exists()
