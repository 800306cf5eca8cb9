"""A corpus's token stream from its parts: each part read back from the token cache, or tokenized, side by side.

A folder of books is thousands of small parts: each is tokenized whole on a
thread of its own (tiktoken releases the GIL), so they keep every core busy;
a part too big for that is cut into chunks encoded on all threads. Either way
memory holds a few chunks per thread, never a whole part. Only parts whose
bytes have no cache entry are tokenized, so adding a file to a folder costs
that file. Documents are joined with one ``<|endoftext|>`` between them, as
GPT-2 was trained; a single text file is one document and gets none.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from gpt_tui import fileio
from gpt_tui.engine.corpus_encoding import DEFAULT_CHUNK_BYTES, SEPARATOR
from gpt_tui.engine.corpus_parts import CorpusPart
from gpt_tui.engine.events import TokenizeProgress
from gpt_tui.engine.part_cache import (
    PartEntry,
    PartKey,
    cache_write_error,
    cached_part,
    part_key,
    tokenize_part,
    tokens_cache_dir,
)
from gpt_tui.engine.token_stream import TokenStream
from gpt_tui.errors import UserError

PARALLEL_PART_BYTES = 32 << 20  # a part this big is cut into chunks for all threads; smaller ones get a thread each
OPEN_FILES_SPARE = 256  # descriptors left for everything else a run opens
PROGRESS_EVERY_S = 0.25  # between progress reports (the first and the last are always sent)

TokenizeCallback = Callable[[TokenizeProgress], None]


@dataclass(frozen=True)
class CorpusTokens:
    """A corpus's ids as one stream over its parts' cached token files, and where its documents start."""

    stream: TokenStream
    doc_starts: np.ndarray  # int64: the offset in the stream of each document's first id
    parts: int
    cached_parts: int  # read back from the cache
    tokenized_parts: int  # tokenized by this call

    @property
    def documents(self) -> int:
        return len(self.doc_starts)


class _Tracker:
    """Progress over all parts, reported from whichever thread moves it, at most every PROGRESS_EVERY_S."""

    def __init__(self, report: TokenizeCallback | None, files_total: int) -> None:
        self._report = report
        self._lock = threading.Lock()
        self._began = time.monotonic()
        self._last = 0.0
        self._bytes: dict[str, int] = {}
        self.state = TokenizeProgress(files_total=files_total)

    def _send(self, force: bool = False, **changes: object) -> None:
        with self._lock:
            now = time.monotonic()
            done = sum(self._bytes.values())
            self.state = replace(self.state, bytes_done=done, elapsed=now - self._began, **changes)  # type: ignore[arg-type]
            if self._report is None or not (force or now - self._last >= PROGRESS_EVERY_S):
                return
            self._last = now
            self._report(self.state)

    def start(self, cached: int, bytes_total: int) -> None:
        self._send(True, files_done=cached, cached_files=cached, bytes_total=bytes_total)

    def on_bytes(self, stem: str) -> Callable[[int, int], None]:
        def moved(done: int, _total: int) -> None:
            self._bytes[stem] = done
            self._send()

        return moved

    def on_ids(self, count: int) -> None:
        with self._lock:
            self.state = replace(self.state, tokens=self.state.tokens + count)

    def part_done(self, key: PartKey, copies: int) -> None:
        self._bytes[key.stem] = key.size
        self._send(True, files_done=self.state.files_done + copies)

    def finish(self) -> None:
        self._send(True, done=True)


def tokenize_parts(
    parts: Sequence[CorpusPart],
    *,
    progress: TokenizeCallback | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    num_threads: int | None = None,
) -> CorpusTokens:
    """The corpus's token stream: cached parts read back (checked), the others tokenized in parallel and cached."""
    if not parts:
        raise ValueError("a corpus has at least one part")
    threads = max(1, num_threads or min(4, os.cpu_count() or 1))
    allow_open_files(len(parts) + OPEN_FILES_SPARE)  # each part's memory map holds a file descriptor
    cache = tokens_cache_dir()
    fileio.sweep_stale_temps(cache)  # what tokenizations killed midway left behind
    with ThreadPoolExecutor(threads) as pool:  # hashing releases the GIL too
        keys = list(pool.map(part_key, parts))
    entries: dict[str, PartEntry] = {}
    for key in keys:
        if key.stem not in entries and (found := cached_part(cache, key)) is not None:
            entries[key.stem] = found
    cached = sum(key.stem in entries for key in keys)
    copies: dict[str, int] = {}
    misses: list[PartKey] = []
    for key in keys:
        if key.stem not in entries:
            misses += [key] if key.stem not in copies else []
            copies[key.stem] = copies.get(key.stem, 0) + 1
    tracker = _Tracker(progress, len(parts))
    tracker.start(cached, sum(key.size for key in misses))
    try:
        cache.mkdir(parents=True, exist_ok=True)
        _tokenize_misses(cache, misses, entries, tracker, copies, chunk_bytes, threads)
    except OSError as exc:
        raise cache_write_error(cache, exc) from None
    tracker.finish()
    return _joined([entries[key.stem] for key in keys], cached=cached, tokenized=len(misses))


def allow_open_files(needed: int) -> None:
    """Raise this process's soft limit on open files towards ``needed`` (within the hard limit), or say why not."""
    try:
        import resource
    except ImportError:  # not on POSIX: no such limit to raise
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or needed <= soft:
        return
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError):
        wanted = soft
    if wanted < needed:
        raise UserError(
            f"The corpus has {needed - OPEN_FILES_SPARE:,} files, and each stays open while training, but this "
            f"system allows {wanted:,} open files; raise the limit (ulimit -n {needed}) or join small files into larger ones."
        )


def _tokenize_misses(
    folder: Path,
    misses: list[PartKey],
    entries: dict[str, PartEntry],
    tracker: _Tracker,
    copies: dict[str, int],
    chunk_bytes: int,
    threads: int,
) -> None:
    """Big parts one after another on all threads, then the small ones side by side, one per thread."""
    small = [key for key in misses if key.size < PARALLEL_PART_BYTES or threads == 1]
    for key in misses:
        if key.size >= PARALLEL_PART_BYTES and threads > 1:
            entries[key.stem] = tokenize_part(folder, key, chunk_bytes, threads, tracker.on_bytes(key.stem), tracker.on_ids)
            tracker.part_done(key, copies[key.stem])
    if not small:
        return
    pool = ThreadPoolExecutor(threads)
    futures: dict[Future[PartEntry], PartKey] = {}
    try:
        for key in small:
            futures[pool.submit(tokenize_part, folder, key, chunk_bytes, 1, tracker.on_bytes(key.stem), tracker.on_ids)] = key
        for future in as_completed(futures):
            key = futures[future]
            entries[key.stem] = future.result()
            tracker.part_done(key, copies[key.stem])
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # a failed part stops the ones not yet begun


def _joined(entries: list[PartEntry], *, cached: int, tokenized: int) -> CorpusTokens:
    """The parts' ids one after another, one ``<|endoftext|>`` between parts."""
    pieces: list[np.ndarray] = []
    starts: list[np.ndarray] = []
    at = 0
    for i, entry in enumerate(entries):
        if i:
            pieces.append(SEPARATOR)
            at += 1
        starts.append(entry.doc_starts + at)
        pieces.extend(entry.shards)
        at += entry.tokens
    return CorpusTokens(
        stream=TokenStream(pieces),
        doc_starts=np.concatenate(starts),
        parts=len(entries),
        cached_parts=cached,
        tokenized_parts=tokenized,
    )
