"""Writing files in folders other processes can reach: whole or not at all, and never through a link.

A run directory, the token cache and an export folder outlive the process
that wrote them, and anyone who can write there can leave a symbolic link
where a file is expected (``metrics.jsonl`` -> somebody's thesis). So:

- a file is replaced by writing a temporary file created exclusively
  (``O_CREAT | O_EXCL | O_NOFOLLOW``, a name no one can guess ahead) in the
  same folder, fsyncing it and renaming it over the target. A link at the
  target is replaced, never written through; a kill midway leaves the old file.
- a file that is appended to is opened with ``O_NOFOLLOW``;
- a subfolder (``checkpoints/``, ``control/``) that is a link is refused.

A refused link raises :class:`UnsafePathError`, a UserError naming the file.
Nothing here imports torch or textual: the launcher of a background run and
the app's first frame use it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
import time
from pathlib import Path
from typing import IO, BinaryIO, Callable, Iterator

from gpt_tui.errors import UserError

TEMP_SUFFIX = ".tmp"
STALE_TEMP_S = 3600.0  # a temporary file untouched this long belongs to a writer that died
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


class UnsafePathError(UserError, OSError):
    """A link (or another kind of file) where gpt-tui writes a file or folder of its own.

    Also an OSError, so code that survives a failed write (an error report,
    a status update) survives this one the same way.
    """


def refusal(path: Path, what: str = "file") -> UnsafePathError:
    """The error for a link (or a pipe, a device, a file where a folder belongs) at ``path``."""
    return UnsafePathError(
        f"{path} is a symbolic link or not a plain {what}; gpt-tui writes only its own files there. "
        "Remove it, or use another directory."
    )


def refuse_link(path: str | os.PathLike[str]) -> None:
    """Raise UnsafePathError when ``path`` exists and is a symbolic link."""
    path = Path(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise refusal(path)


def checked_dir(path: str | os.PathLike[str]) -> Path:
    """``path`` as a real folder (created, with its parents, when missing); a link or a file there is refused."""
    path = Path(path)
    with contextlib.suppress(FileExistsError):  # a link or a file: told apart below
        path.mkdir(parents=True, exist_ok=True)
    if not stat.S_ISDIR(os.lstat(path).st_mode):
        raise refusal(path, "folder")
    return path


@contextlib.contextmanager
def open_folder(path: str | os.PathLike[str]) -> Iterator[int]:
    """A descriptor of the real folder ``path`` (not a link to one), for ``dir_fd=`` calls a link cannot redirect."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise refusal(path, "folder") from None
        raise
    try:
        yield fd
    finally:
        os.close(fd)


def _new_temp(path: Path) -> tuple[int, Path]:
    """A new, empty temporary file next to ``path``, created exclusively; the writer's pid is in its name."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(path.parent))


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable where the platform allows it (not on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY | _CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object], *, durable: bool = True) -> Path:
    """Replace ``path`` with what ``write`` writes to the file object it is given, all or nothing.

    ``durable=False`` skips the fsyncs, for a cache whose entries are checked
    when read and rebuilt when damaged: thousands of small files then cost no
    disk flush each.
    """
    path = Path(path)
    fd, tmp = _new_temp(path)

    def fill() -> None:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            if durable:
                os.fsync(out.fileno())

    return _replace_with(path, tmp, fill, durable=durable)


def atomic_write_to_path(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Like :func:`atomic_write`, for writers that want a file name (safetensors' ``save_file``).

    The name is one created here exclusively; what the writer left there must
    be a plain file before it replaces ``path``.
    """
    path = Path(path)
    fd, tmp = _new_temp(path)
    mode = stat.S_IMODE(os.fstat(fd).st_mode)  # 0666 less the umask: what any other file of ours gets
    os.close(fd)

    def fill() -> None:
        try:
            write(tmp)
        except Exception as exc:
            mapped = None if isinstance(exc, OSError) else _os_error_in(exc, path)
            if mapped is None:
                raise
            raise mapped from exc
        check = os.open(tmp, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(check).st_mode):
                raise refusal(tmp)
            os.fchmod(check, mode)  # a writer that made its own file (safetensors: 0600) gets the usual mode
            os.fsync(check)
        finally:
            os.close(check)

    return _replace_with(path, tmp, fill)


_OS_ERROR_CODE = re.compile(r"\(os error (\d+)\)")


def _os_error_in(exc: Exception, path: Path) -> OSError | None:
    """The OSError a library reports only in its message (safetensors' writer: ``... (os error 28)``).

    A full disk or a file-size limit then reads the same as everywhere else:
    one line naming the cause, not the library's traceback.
    """
    found = _OS_ERROR_CODE.search(str(exc))
    if found is None:
        return None
    code = int(found.group(1))
    return OSError(code, os.strerror(code), str(path))


def atomic_write_named(folder: str | os.PathLike[str], write: Callable[[BinaryIO], str], *, durable: bool = True) -> Path:
    """Like :func:`atomic_write`, for a file named after what was written (a cache keyed by its content's digest).

    ``write`` writes the file and returns its name in ``folder``; the name is
    taken only once the content is whole, so it always describes what the file holds.
    """
    folder = Path(folder)
    fd, tmp = _new_temp(folder / "new")
    target: list[Path] = []

    def fill() -> None:
        with os.fdopen(fd, "wb") as out:
            name = write(out)
            out.flush()
            if durable:
                os.fsync(out.fileno())
        if not name or Path(name).name != name:
            raise ValueError(f"not a file name: {name!r}")
        target.append(folder / name)

    return _replace_with(lambda: target[0], tmp, fill, durable=durable)


def _replace_with(path: Path | Callable[[], Path], tmp: Path, fill: Callable[[], object], *, durable: bool = True) -> Path:
    """Run ``fill`` to write ``tmp``, then rename it over ``path``; on any failure ``tmp`` goes and ``path`` stays.

    ``path`` may be a function giving the target once ``fill`` has run.
    """
    try:
        fill()
        if callable(path):
            path = path()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, durable: bool = True) -> Path:
    return atomic_write(path, lambda out: out.write(data), durable=durable)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def open_append(path: str | os.PathLike[str], *, binary: bool = False) -> IO:
    """``path`` opened for appending (created if missing); a link, a pipe or a device there is refused."""
    path = Path(path)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):  # a link; a pipe nobody reads
            raise refusal(path) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise refusal(path)
    if binary:
        return os.fdopen(fd, "ab", buffering=0)
    return os.fdopen(fd, "a", encoding="utf-8")


def sweep_stale_temps(folder: str | os.PathLike[str], older_than_s: float = STALE_TEMP_S) -> int:
    """Delete temporary files (``.<name>...tmp``) in ``folder`` that nobody has written to for a while.

    A writer killed midway (SIGKILL, a reboot) leaves its temporary file
    behind; a live one keeps touching it. Only plain files are removed, never
    links or folders. Returns how many went.
    """
    removed = 0
    cutoff = time.time() - older_than_s
    try:
        with open_folder(folder) as fd:
            for name in os.listdir(fd):
                if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
                    continue
                with contextlib.suppress(OSError):
                    info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff:
                        os.unlink(name, dir_fd=fd)
                        removed += 1
    except (OSError, UserError):
        pass  # a cache that cannot be listed is swept next time
    return removed
