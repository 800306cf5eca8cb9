"""Encoding a corpus to GPT-2 token ids in chunks, with the same ids as encoding it whole.

Big files are encoded in chunks of a few MB cut where no token can straddle the
cut (see ``iter_text_chunks``), so the ids equal those of encoding the whole
text at once while memory stays bounded. Chunks are encoded on a thread pool
and written out in order.
"""

from __future__ import annotations

import os
import re
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator, TypeVar

import numpy as np

from gpt_tui.engine import corpus
from gpt_tui.engine.tokenizer import EOT_ID, EOT_TOKEN, get_tokenizer
from gpt_tui.errors import UserError

DEFAULT_CHUNK_BYTES = 2 << 20  # ~10x this per chunk in flight is the peak memory of encoding
# A chunk with no safe cut grows to this many times chunk_bytes (and at least
# _MIN_FORCED_CUT bytes) before it is cut anyway.
_MAX_CHUNK_GROWTH = 4
_MIN_FORCED_CUT = 1 << 20
_ASCII_WHITESPACE = b" \t\n\r\x0b\x0c"
_ASCII_WHITESPACE_SET = frozenset(_ASCII_WHITESPACE)
# A byte that is not ASCII whitespace followed by one that is: a candidate cut between them.
_CUT_PATTERN = re.compile(rb"[^ \t\n\r\x0b\x0c][ \t\n\r\x0b\x0c]")

ProgressCallback = Callable[[int, int], None]
T = TypeVar("T")
R = TypeVar("R")
SEPARATOR = np.array([EOT_ID], dtype=np.uint16)  # one <|endoftext|> between documents


def encode_text(text: str) -> np.ndarray:
    """Token ids of ``text`` as uint16, with ``<|endoftext|>`` as the document separator 50256."""
    return _encode_chunk(text).astype(np.uint16)


def _encode_chunk(text: str) -> np.ndarray:
    # The literal "<|endoftext|>" is how GPT-2 corpora mark document boundaries.
    return get_tokenizer().encode_to_numpy(text, allowed_special={EOT_TOKEN}, disallowed_special=())


def _safe_cut(buf: bytes) -> int:
    """The last index where ``buf`` can be split without changing its tokens, or -1.

    A cut is safe between a non-whitespace character and an ASCII whitespace
    byte: every piece of GPT-2's pre-tokenizer that holds whitespace starts
    with it, so no piece spans the cut, and its one look-ahead follows
    whitespace only, so both halves split into the same pieces as the whole.
    ``<|endoftext|>`` holds no whitespace, so it is never cut either.
    """
    window = 1 << 16
    while True:
        low = max(0, len(buf) - window)
        for match in reversed(list(_CUT_PATTERN.finditer(buf, low))):
            cut = match.start() + 1
            if _ends_with_non_space(buf, cut):
                return cut
        if low == 0:
            return -1
        window *= 4


def _ends_with_non_space(buf: bytes, end: int) -> bool:
    """Whether the character that ends at ``end`` is a complete non-whitespace character."""
    last = buf[end - 1]
    if last < 0x80:
        return last not in _ASCII_WHITESPACE_SET
    start = end - 1
    while start > 0 and end - start < 4 and 0x80 <= buf[start] < 0xC0:
        start -= 1
    try:
        char = buf[start:end].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return len(char) == 1 and not char.isspace()


def _char_boundary(buf: bytes) -> int:
    """The start of the last character in ``buf``: a cut that splits no UTF-8 sequence."""
    cut = len(buf) - 1
    while cut > 0 and 0x80 <= buf[cut] < 0xC0:
        cut -= 1
    return cut if cut > 0 else len(buf)


def iter_text_chunks(
    stream: BinaryIO, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES, source: str = "corpus"
) -> Iterator[tuple[str, int]]:
    """Decoded pieces of ``stream`` of about ``chunk_bytes`` each, with the byte offset each ends at.

    Pieces are cut only where tokenization cannot straddle the cut, so encoding
    them one by one gives the same ids as encoding the whole text. A stretch with
    no safe cut in ``max(4 * chunk_bytes, 1 MiB)`` bytes (no ASCII whitespace at
    all) is cut at a character boundary instead, which keeps memory bounded and
    may merge tokens differently at that one spot. A leading UTF-8 byte-order mark is dropped.
    """
    if chunk_bytes <= 0:
        raise ValueError("chunk_bytes must be positive")
    pending = stream.read(len(corpus.UTF8_BOM))
    offset = 0
    if pending == corpus.UTF8_BOM:
        pending, offset = b"", len(corpus.UTF8_BOM)
    while True:
        block = stream.read(chunk_bytes)
        if not block:
            break
        pending += block
        if len(pending) < chunk_bytes:
            continue
        cut = _safe_cut(pending)
        if cut <= 0:
            if len(pending) < max(_MAX_CHUNK_GROWTH * chunk_bytes, _MIN_FORCED_CUT):
                continue
            cut = _char_boundary(pending)
        yield corpus.decode_utf8(pending[:cut], source=source, offset=offset), offset + cut
        offset += cut
        pending = pending[cut:]
    if pending:
        yield corpus.decode_utf8(pending, source=source, offset=offset), offset + len(pending)


@dataclass(frozen=True)
class CorpusSource:
    """A corpus to encode: its name in messages, its size and digest (the cache key), and how to read it."""

    name: str
    size: int
    sha256: str
    open: Callable[[], BinaryIO]


def encode_stream(
    source: CorpusSource,
    out: BinaryIO,
    chunk_bytes: int,
    num_threads: int | None,
    on_progress: ProgressCallback | None,
) -> int:
    """Encode ``source`` chunk by chunk on a thread pool, appending uint16 ids to ``out``; the number of ids."""
    count = 0
    for ids in iter_encoded(source, chunk_bytes, num_threads, on_progress):
        out.write(ids.tobytes())
        count += len(ids)
    return count


def iter_encoded(
    source: CorpusSource, chunk_bytes: int, num_threads: int | None, on_progress: ProgressCallback | None
) -> Iterator[np.ndarray]:
    """The uint16 ids of ``source`` chunk by chunk, in order; chunks are encoded on ``num_threads`` threads.

    Raises the empty-corpus error at the end when the text holds nothing but whitespace.
    """
    threads = max(1, num_threads or min(4, os.cpu_count() or 1))
    count = 0
    has_text = False

    def texts() -> Iterator[tuple[str, int]]:
        nonlocal has_text
        for text, end in _read_chunks(source, chunk_bytes):
            has_text = has_text or not text.isspace()
            yield text, end

    for ids, end in encode_in_order(texts(), _encode_chunk_u16, threads):
        count += len(ids)
        if on_progress is not None:
            on_progress(end, source.size)
        yield ids
    if not has_text or count == 0:
        raise corpus.empty_corpus_error(source.name)


def _encode_chunk_u16(text: str) -> np.ndarray:
    return _encode_chunk(text).astype(np.uint16)


def encode_in_order(jobs: Iterator[tuple[T, int]], encode: Callable[[T], R], threads: int) -> Iterator[tuple[R, int]]:
    """``(encode(job), tag)`` for each ``(job, tag)`` in order, at most ``threads + 1`` jobs in flight.

    One thread encodes inline, with no pool: many small parts are then encoded
    side by side, one per thread, each without a pool of its own.
    """
    if threads <= 1:
        for job, tag in jobs:
            yield encode(job), tag
        return
    in_flight: deque[tuple[Future[R], int]] = deque()
    with ThreadPoolExecutor(threads) as pool:
        for job, tag in jobs:
            in_flight.append((pool.submit(encode, job), tag))
            if len(in_flight) > threads:
                future, done = in_flight.popleft()
                yield future.result(), done
        while in_flight:
            future, done = in_flight.popleft()
            yield future.result(), done


def _read_chunks(source: CorpusSource, chunk_bytes: int) -> Iterator[tuple[str, int]]:
    """``iter_text_chunks`` of the source, with a read failure reported as the corpus's fault."""
    try:
        with source.open() as stream:
            yield from iter_text_chunks(stream, chunk_bytes=chunk_bytes, source=source.name)
    except OSError as exc:
        raise UserError(f"Cannot read corpus {source.name}: {exc.strerror or exc}.") from None


def iter_encoded_documents(
    documents: Iterator[str], chunk_bytes: int, num_threads: int | None
) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """Documents encoded a batch of about ``chunk_bytes`` characters at a time, in order.

    Yields ``(ids, starts, chars)``: the batch's ids with one ``<|endoftext|>``
    between its documents, where each document starts in ``ids``, and the
    characters read so far (for progress).
    """
    threads = max(1, num_threads or min(4, os.cpu_count() or 1))

    def batches() -> Iterator[tuple[list[str], int]]:
        batch: list[str] = []
        size = read = 0
        for text in documents:
            batch.append(text)
            size += len(text)
            read += len(text)
            if size >= chunk_bytes:
                yield batch, read
                batch, size = [], 0
        if batch:
            yield batch, read

    for (ids, starts), read in encode_in_order(batches(), _encode_documents, threads):
        yield ids, starts, read


def _encode_documents(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The documents' ids joined by one ``<|endoftext|>``, and the offset of each document's first id."""
    pieces: list[np.ndarray] = []
    starts = np.empty(len(texts), dtype=np.int64)
    at = 0
    for i, text in enumerate(texts):
        if i:
            pieces.append(SEPARATOR)
            at += 1
        ids = _encode_chunk(text).astype(np.uint16)
        starts[i] = at
        pieces.append(ids)
        at += len(ids)
    return np.concatenate(pieces) if pieces else np.empty(0, dtype=np.uint16), starts
