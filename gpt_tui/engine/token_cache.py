"""The token cache: a corpus is tokenized once, and its ids read back memory-mapped on every later run.

Tokenizing is the slow part and depends only on the corpus bytes, so its result
is kept under ``cache_dir()/tokens`` as a raw uint16 file keyed by the sha256 of
those bytes, with a JSON sidecar that records what it holds. The key is the
digest of the very bytes that were tokenized (taken as they stream into the
encoder), so a corpus edited while it is read can never leave one text's ids
under another text's name.

A cache entry is not trusted by its size: every use checks the file against
the CRC-32 recorded when it was written, its length against the sidecar and
its ids against the vocabulary, in one pass (a few tenths of a second per GB,
a fraction of hashing the corpus itself). A damaged entry is rebuilt with a
``Notice``. The file is written atomically, so an interrupted run never leaves
an entry behind; the temporary file a killed tokenization leaves is swept once
it is an hour old.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from gpt_tui import fileio, paths
from gpt_tui.engine import corpus
from gpt_tui.engine.corpus_encoding import DEFAULT_CHUNK_BYTES, CorpusSource, ProgressCallback, encode_stream
from gpt_tui.engine.tokenizer import TOKENIZER_NAME, VOCAB_SIZE
from gpt_tui.errors import Notice, UserError

CACHE_FORMAT = 2  # 2: the sidecar records the token file's CRC-32
_VERIFY_BLOCK = 8 << 20  # ids checked per step: the pages are read once, for the checksum and the maximum together


class _HashingReader:
    """A stream that hashes and counts what is read from it: the cache key is of exactly those bytes."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data

    def __enter__(self) -> "_HashingReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.close()


class _ChecksumWriter:
    """A file that keeps the CRC-32 of what is written to it, so the checksum costs no second read."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.crc = 0

    def write(self, data: bytes) -> int:
        self.crc = zlib.crc32(data, self.crc)
        return self._out.write(data)


def _corpus_source(path: str | None) -> CorpusSource:
    """The corpus, read once through to learn its digest and size (its size on disk is not trusted: /proc says 0)."""
    if corpus.is_builtin(path):
        corpus.check_builtin_name(path)
        data = corpus.default_corpus_text().encode("utf-8")
        return CorpusSource(
            corpus.DEFAULT_CORPUS, len(data), hashlib.sha256(data).hexdigest(), lambda: io.BytesIO(data)
        )
    assert path is not None
    file = corpus.check_corpus_file(path)
    try:
        with _HashingReader(corpus.open_corpus(file, path)) as reader:
            while reader.read(1 << 20):
                pass
    except OSError as exc:
        raise UserError(f"Cannot read corpus {path}: {exc.strerror or exc}.") from None
    if reader.size == 0:
        raise corpus.empty_corpus_error(str(path))
    return CorpusSource(str(path), reader.size, reader.digest.hexdigest(), lambda: corpus.open_corpus(file, path))


def tokens_cache_dir() -> Path:
    return paths.cache_dir() / "tokens"


def _stem(sha256: str) -> str:
    return f"{sha256}.{TOKENIZER_NAME}"


def tokenize_corpus(
    path: str | os.PathLike[str] | None = None,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    on_progress: ProgressCallback | None = None,
    num_threads: int | None = None,
) -> np.ndarray:
    """The corpus's token ids, read-only and memory-mapped; tokenized only on a cache miss.

    ``on_progress(done_bytes, total_bytes)`` is called as the text is encoded
    (not on a cache hit).
    """
    path_str = None if path is None else os.fspath(path)
    source = _corpus_source(path_str)
    cache = tokens_cache_dir()
    fileio.sweep_stale_temps(cache)  # what tokenizations killed midway left behind
    cached = _cached_tokens(cache, source)
    if cached is not None:
        return cached
    try:
        cache.mkdir(parents=True, exist_ok=True)
        return _tokenize_into(cache, source, chunk_bytes, num_threads, on_progress)
    except OSError as exc:
        raise UserError(
            f"Cannot write the token cache in {cache}: {exc.strerror or exc}. Free some space "
            "or set GPT_TUI_CACHE_DIR to a writable directory."
        ) from None


def _tokenize_into(
    cache: Path, source: CorpusSource, chunk_bytes: int, num_threads: int | None, on_progress: ProgressCallback | None
) -> np.ndarray:
    """Encode ``source`` into a new cache entry named by the digest of the bytes encoded; its ids."""
    readers: list[_HashingReader] = []

    def open_hashed() -> _HashingReader:
        readers.append(_HashingReader(source.open()))
        return readers[-1]

    hashed = CorpusSource(source.name, source.size, source.sha256, open_hashed)  # type: ignore[arg-type]
    count, crc = 0, 0

    def write_tokens(out: BinaryIO) -> str:
        nonlocal count, crc
        writer = _ChecksumWriter(out)
        count = encode_stream(hashed, writer, chunk_bytes, num_threads, on_progress)  # type: ignore[arg-type]
        crc = writer.crc
        return f"{_stem(readers[-1].digest.hexdigest())}.u16"

    tokens_file = fileio.atomic_write_named(cache, write_tokens)
    read = readers[-1]
    sha256 = read.digest.hexdigest()
    if sha256 != source.sha256:
        warnings.warn(
            f"corpus {source.name} changed while it was read; training on the text as it was read the second time.",
            Notice,
            stacklevel=3,
        )
    meta = {
        "format": CACHE_FORMAT,
        "tokenizer": TOKENIZER_NAME,
        "tokens": count,
        "tokens_crc32": crc,
        "source": source.name,
        "source_bytes": read.size,
        "source_sha256": sha256,
    }
    fileio.atomic_write_bytes(cache / f"{_stem(sha256)}.json", json.dumps(meta, indent=1).encode())
    return np.memmap(tokens_file, dtype=np.uint16, mode="r", shape=(count,))


def _cached_tokens(cache: Path, source: CorpusSource) -> np.ndarray | None:
    """The cached ids when the entry is whole and what its sidecar says, else None (rebuild).

    An entry that is there but does not check out is said to be damaged before it is rebuilt.
    """
    stem = _stem(source.sha256)
    tokens_file, meta_file = cache / f"{stem}.u16", cache / f"{stem}.json"
    if not os.path.lexists(tokens_file) and not os.path.lexists(meta_file):
        return None  # a plain miss
    try:
        meta: Any = json.loads(meta_file.read_text(encoding="utf-8"))
        problem = _entry_problem(meta, source, tokens_file.stat().st_size)
        if problem is None:
            tokens = np.memmap(tokens_file, dtype=np.uint16, mode="r", shape=(meta["tokens"],))
            problem = _content_problem(tokens, meta["tokens_crc32"])
    except FileNotFoundError:
        problem = "half of it is missing"
    except (OSError, ValueError) as exc:
        problem = f"it cannot be read ({getattr(exc, 'strerror', None) or exc})"
    if problem == "":
        return None  # written by another version of gpt-tui: replaced without a word
    if problem is None:
        return tokens
    warnings.warn(
        f"the token cache entry for {source.name} is damaged ({problem}); tokenizing the corpus again.",
        Notice,
        stacklevel=3,
    )
    return None


def _entry_problem(meta: Any, source: CorpusSource, file_size: int) -> str | None:
    """What is wrong with a sidecar and its file's size ("" for another cache format), or None."""
    if not isinstance(meta, dict):
        return "its record is not a JSON object"
    if meta.get("format") != CACHE_FORMAT or meta.get("tokenizer") != TOKENIZER_NAME:
        return ""
    count, crc = meta.get("tokens"), meta.get("tokens_crc32")
    if meta.get("source_sha256") != source.sha256 or meta.get("source_bytes") != source.size:
        return "its record is of another text"
    if type(count) is not int or type(crc) is not int or not 0 < count <= source.size:
        return "its record holds no valid token count and checksum"
    if file_size != 2 * count:
        return f"the file holds {file_size} bytes where its record says {count} tokens"
    return None


def _content_problem(tokens: np.ndarray, crc: int) -> str | None:
    """Whether the ids are the ones written (CRC-32) and all inside the vocabulary; one pass over the file."""
    found, top = 0, 0
    for start in range(0, tokens.size, _VERIFY_BLOCK):
        block = tokens[start : start + _VERIFY_BLOCK]
        found = zlib.crc32(block, found)
        top = max(top, int(block.max()))
    if top >= VOCAB_SIZE:
        return f"it holds token id {top}, beyond the vocabulary of {VOCAB_SIZE}"
    if found != crc:
        return "its checksum does not match"
    return None
