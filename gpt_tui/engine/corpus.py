"""Where training text comes from: a user's UTF-8 file, or a corpus built into Python.

A first run must work with no network and no file of one's own, so the default
corpus is the text of the standard library's ``pydoc_data.topics`` (the Python
language reference that ``help()`` shows, ~465k characters), which every
CPython installation ships.

Every problem with a corpus file is a ``UserError`` that names the file and
says what to do; the byte offset of a bad UTF-8 byte is reported so the user
can find it.
"""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path
from pydoc_data.topics import topics
from typing import BinaryIO

from gpt_tui.errors import UserError
from gpt_tui.paths import expand_user

DEFAULT_CORPUS = "builtin:python-docs"
BUILTIN_PREFIX = "builtin:"
UTF8_BOM = b"\xef\xbb\xbf"


def is_builtin(path: str | None) -> bool:
    """True when ``path`` names the built-in corpus (None means the default)."""
    return path is None or str(path).startswith(BUILTIN_PREFIX)


@functools.lru_cache(maxsize=1)
def default_corpus_text() -> str:
    """The built-in corpus; topics joined in sorted-key order so it is the same on every run."""
    return "\n\n".join(topics[key] for key in sorted(topics))


def corpus_label(path: str | None) -> str:
    """A short name for display: the file name, or the built-in corpus's name."""
    if is_builtin(path):
        return DEFAULT_CORPUS.removeprefix(BUILTIN_PREFIX) + " (built-in)"
    return expand_user(str(path)).name or str(path)


def check_builtin_name(path: str | None) -> None:
    """Reject ``builtin:<anything else>`` with the one name that exists."""
    if path is not None and is_builtin(path) and path != DEFAULT_CORPUS:
        raise UserError(
            f"Unknown built-in corpus {path!r}; the built-in corpus is {DEFAULT_CORPUS!r}, "
            "or give the path of a UTF-8 text file."
        )


def check_corpus_file(path: str) -> Path:
    """The file's path once it is known to exist, be a regular file and be readable."""
    file = expand_user(path)
    try:
        info = file.stat()
    except FileNotFoundError:
        raise UserError(
            f"Corpus file not found: {path}. Check the path, or leave the corpus out "
            f"to train on the built-in one ({DEFAULT_CORPUS})."
        ) from None
    except OSError as exc:
        raise UserError(f"Cannot read corpus {path}: {exc.strerror or exc}.") from None
    _refuse_kind(path, info.st_mode)
    with open_corpus(file, path):
        pass
    return file


_OTHER_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _refuse_kind(path: str, mode: int) -> None:
    """Only a regular file is a corpus: a pipe or a device would block or never end, and hang the run."""
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise UserError(f"Corpus {path} is a directory; give the path of a UTF-8 text file.")
    kind = next((name for test, name in _OTHER_KINDS if test(mode)), "not a regular file")
    raise UserError(f"Corpus {path} is {kind}, not a regular file; give a text file.")


def open_corpus(file: Path, path: str) -> BinaryIO:
    """``file`` opened for reading, refused unless it is a regular file once open.

    Opened without blocking, so a FIFO swapped in after the path was checked
    is refused rather than waited on. Its size is not trusted: a /proc file
    says 0 and holds text, so callers read to the end.
    """
    try:
        stream = open(file, "rb", opener=_open_nonblocking)
    except PermissionError:
        raise UserError(
            f"Cannot read corpus {path}: permission denied. Fix its permissions "
            f"(e.g. chmod u+r {path}) or copy it somewhere readable."
        ) from None
    except OSError as exc:
        raise UserError(f"Cannot read corpus {path}: {exc.strerror or exc}.") from None
    try:
        _refuse_kind(path, os.fstat(stream.fileno()).st_mode)
        if _NONBLOCK:
            os.set_blocking(stream.fileno(), True)
    except BaseException:
        stream.close()
        raise
    return stream


_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # not on Windows, which has no FIFOs to block on


def _open_nonblocking(file: str, flags: int) -> int:
    return os.open(file, flags | _NONBLOCK)


def decode_utf8(data: bytes, *, source: str, offset: int = 0) -> str:
    """Strict UTF-8 decode; ``offset`` is where ``data`` starts in the file, for the message."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = offset + exc.start
        raise UserError(
            f"Corpus {source} is not UTF-8 text: invalid byte 0x{data[exc.start]:02x} at byte "
            f"offset {bad}. Re-encode it to UTF-8, e.g. "
            f"`iconv -f latin1 -t utf-8 {source} > corpus-utf8.txt`."
        ) from None


def empty_corpus_error(source: str) -> UserError:
    return UserError(
        f"Corpus {source} is empty or only whitespace; give a file with text to train on."
    )


def read_corpus(path: str | None) -> str:
    """The whole text of a corpus: the built-in one for None / its name, else a UTF-8 file."""
    if is_builtin(path):
        check_builtin_name(path)
        return default_corpus_text()
    assert path is not None
    file = check_corpus_file(path)
    try:
        with open_corpus(file, path) as fh:
            data = fh.read()
    except OSError as exc:
        raise UserError(f"Cannot read corpus {path}: {exc.strerror or exc}.") from None
    offset = 0
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM) :]
        offset = len(UTF8_BOM)
    text = decode_utf8(data, source=str(path), offset=offset)
    if not text or text.isspace():
        raise empty_corpus_error(str(path))
    return text
