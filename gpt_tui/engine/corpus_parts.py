"""What a corpus is made of: the files and dataset splits that ``--data`` names, each one a part.

A part is the unit the token cache keys and tokenizes on its own (a file by
its bytes, a dataset by its fingerprint), so adding one file to a folder
tokenizes only that file. Sources are expanded here once, in a fixed order
(folders recursively, sorted), so the same sources always give the same
token stream. Files that are not UTF-8 text are found here, before anything
is tokenized or cached, so a folder with a stray binary file costs one line.
"""

from __future__ import annotations

import codecs
import fnmatch
import glob as globbing
import os
import warnings
from pathlib import Path
from typing import Iterator, Sequence

from gpt_tui.engine import corpus
from gpt_tui.engine.corpus_part import HF_PREFIX, CorpusPart
from gpt_tui.engine.document_readers import read_documents
from gpt_tui.errors import Notice, UserError
from gpt_tui.extras import available, missing
from gpt_tui.paths import expand_user
from gpt_tui.textsafe import visible

DEFAULT_GLOBS = ("*.txt", "*.md", "*.text")  # what a folder contributes unless --glob says otherwise
KINDS = ("text", "jsonl", "json", "csv", "parquet", "hf")
_KIND_BY_SUFFIX = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
_SNIFF_BYTES = 64 << 10  # a file's head, checked for NUL bytes and invalid UTF-8 before it joins a corpus
_NAMED = 5  # bad files named in a message; the rest counted


def builtin_part() -> CorpusPart:
    """The built-in corpus as a part: one document."""
    return CorpusPart(corpus.DEFAULT_CORPUS, "text", None, size_bytes=len(corpus.default_corpus_text().encode()))


def kind_of(path: Path | str) -> str:
    """A file's kind by its extension: JSON Lines, JSON, CSV, Parquet, else text."""
    return _KIND_BY_SUFFIX.get(Path(path).suffix.lower(), "text")


def source_list(data: str | Sequence[str] | None) -> list[str]:
    """``data`` as stored in any version's config: None (built-in), one source (a str) or several."""
    if data is None:
        return []
    if isinstance(data, str):
        return [data]
    return [str(item) for item in data]


def resolve_sources(
    sources: Sequence[str] | str | None,
    *,
    glob: str | None = None,
    text_field: str = "text",
    skip_bad_files: bool = False,
) -> list[CorpusPart]:
    """The parts the sources name, in order; no sources is the built-in corpus.

    Each source is a file (its kind by extension), a folder (its files matching
    ``glob``, or the default text patterns, recursively and sorted), a glob
    pattern, ``hf:NAME[:CONFIG][@SPLIT]`` or ``builtin:python-docs``.
    """
    names = source_list(sources)
    if not text_field:
        raise UserError("text-field must name the JSON key or column that holds the text, got an empty name.")
    if not names:
        return [builtin_part()]
    parts: list[CorpusPart] = []
    bad: list[str] = []
    for source in names:
        parts.extend(_resolve_one(source, glob, text_field, bad))
    if bad:
        if not skip_bad_files:
            raise UserError(
                f"{_count(len(bad), 'file')} not UTF-8 text: {_name_some(bad)}. Remove or re-encode "
                f"{'it' if len(bad) == 1 else 'them'}, choose files with --glob, or pass --skip-bad-files to leave "
                f"{'it' if len(bad) == 1 else 'them'} out."
            )
        which = "1 file that is" if len(bad) == 1 else f"{len(bad)} files that are"
        warnings.warn(f"skipped {which} not UTF-8 text: {_name_some(bad)}.", Notice, stacklevel=2)
        if not parts:
            raise UserError(f"No text files are left in {', '.join(names)} once the files that are not text are skipped.")
    return parts


def check_sources_named(sources: Sequence[str]) -> None:
    """A quick check, no file read: each source names a file or folder that is there, a pattern or a dataset."""
    for source in sources:
        if corpus.is_builtin(source) or source.startswith(HF_PREFIX) or globbing.has_magic(source):
            continue
        if not expand_user(source).exists():
            raise UserError(
                f"corpus {source!r} does not exist; give UTF-8 text files, folders, globs or hf:NAME separated by ';', "
                "or leave it empty for the built-in corpus."
            )


def _resolve_one(source: str, pattern: str | None, text_field: str, bad: list[str]) -> list[CorpusPart]:
    if not source.strip():
        raise UserError("A corpus source is empty; give a file, a folder, a glob or hf:NAME.")
    if corpus.is_builtin(source):
        corpus.check_builtin_name(source)
        return [builtin_part()]
    if source.startswith(HF_PREFIX):
        from gpt_tui.engine.hf_source import hf_part  # the `datasets` extra, imported only for hf: sources

        return [hf_part(source, text_field)]
    path = expand_user(source)
    if path.is_dir():
        return _folder_parts(source, path, pattern, text_field, bad)
    if not path.exists() and globbing.has_magic(source):
        return _glob_parts(source, text_field, bad)
    file = corpus.check_corpus_file(source)  # a named file: the existing checks, and their messages
    return [_part(source, file, text_field)]


def _part(label: str, file: Path, text_field: str) -> CorpusPart:
    kind = kind_of(file)
    if kind in ("csv", "parquet") and not available("pyarrow"):  # said before anything is tokenized
        raise missing("pyarrow", "data", f"Reading {visible(label)}")
    return CorpusPart(label, kind, file, text_field, size_bytes=_size(file))


def _folder_parts(source: str, folder: Path, pattern: str | None, text_field: str, bad: list[str]) -> list[CorpusPart]:
    """A folder's matching files, recursively, in sorted order; hidden files and folders are left out."""
    patterns = (pattern,) if pattern else DEFAULT_GLOBS
    found: list[Path] = []
    for root, dirs, files in os.walk(folder, onerror=_walk_error(source)):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            file = Path(root) / name
            relative = file.relative_to(folder).as_posix()
            if not name.startswith(".") and any(_matches(relative, name, p) for p in patterns):
                found.append(file)
    found.sort(key=lambda f: f.relative_to(folder).as_posix())
    if not found:
        wanted = " or ".join(patterns)
        raise UserError(
            f"Folder {source} holds no files matching {wanted}; add text files, or choose others with --glob "
            "(e.g. --glob '*.jsonl')."
        )
    return _file_parts(found, text_field, bad, source)


def _matches(relative: str, name: str, pattern: str) -> bool:
    """A pattern with a "/" matches the path inside the folder; one without, the file name at any depth."""
    if "/" in pattern:
        return fnmatch.fnmatchcase(relative, pattern.removeprefix("**/")) or fnmatch.fnmatchcase(relative, pattern)
    return fnmatch.fnmatchcase(name, pattern)


def _walk_error(source: str):  # type: ignore[no-untyped-def]
    def fail(exc: OSError) -> None:
        raise UserError(f"Cannot read folder {exc.filename or source}: {exc.strerror or exc}.")

    return fail


def _glob_parts(source: str, text_field: str, bad: list[str]) -> list[CorpusPart]:
    matched = sorted(globbing.glob(os.path.expanduser(source), recursive=True))
    files = [Path(m) for m in matched if Path(m).is_file()]
    if not files:
        raise UserError(f"The pattern {source} matches no files; check it (quote it so the shell leaves it alone).")
    return _file_parts(files, text_field, bad, source)


def _file_parts(files: list[Path], text_field: str, bad: list[str], source: str) -> list[CorpusPart]:
    """Parts for the files a folder or glob gave; empty files are left out, files that are not text go to ``bad``."""
    parts: list[CorpusPart] = []
    bad_before = len(bad)
    for file in files:
        size = _size(file)
        kind = kind_of(file)
        if size == 0:
            continue
        if kind != "parquet" and not _looks_like_text(file):
            bad.append(str(file))
            continue
        parts.append(_part(str(file), file, text_field))
    if not parts and len(bad) == bad_before:
        some = "The one file" if len(files) == 1 else f"The {len(files)} files"
        raise UserError(f"{some} of {visible(source)} {'is' if len(files) == 1 else 'are'} empty; give files with text.")
    return parts


def _size(file: Path) -> int:
    try:
        return file.stat().st_size
    except OSError:
        return 0


def _looks_like_text(file: Path) -> bool:
    """Whether a file's head is UTF-8 with no NUL byte (a sequence cut by the end of the head is allowed)."""
    try:
        with open(file, "rb") as stream:
            head = stream.read(_SNIFF_BYTES)
    except OSError as exc:
        raise UserError(f"Cannot read corpus {file}: {exc.strerror or exc}.") from None
    if b"\x00" in head:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < _SNIFF_BYTES)
    except UnicodeDecodeError:
        return False
    return True


def _count(n: int, noun: str) -> str:
    return f"{n} {noun} is" if n == 1 else f"{n} {noun}s are"


def _name_some(names: list[str]) -> str:
    shown = ", ".join(visible(n) for n in names[:_NAMED])
    return shown + (f" and {len(names) - _NAMED} more" if len(names) > _NAMED else "")


def iter_documents(part: CorpusPart) -> Iterator[str]:
    """Each document's text in order (see gpt_tui.engine.document_readers)."""
    return read_documents(part)


__all__ = ["CorpusPart", "DEFAULT_GLOBS", "HF_PREFIX", "iter_documents", "resolve_sources", "source_list"]
