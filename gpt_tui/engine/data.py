"""From a corpus to training batches: cached token ids, sliding windows, reproducible batches.

Tokenizing is the slow part and depends only on the corpus bytes, so its result
is kept under ``cache_dir()/tokens`` as a raw uint16 file keyed by the sha256 of
those bytes, with a JSON sidecar that records what it holds. The file is written
atomically and checked against the sidecar on every use, so an interrupted run
never leaves a cache entry that would be trusted.

Big files are encoded in chunks of a few MB cut where no token can straddle the
cut (see ``iter_text_chunks``), so the ids equal those of encoding the whole
text at once while memory stays bounded.

Windows and batches are made on demand from the (memory-mapped) token array:
one vectorised gather per batch, never a list of tensors per window. The order
of shuffled batches depends only on (seed, epoch), which makes resuming from a
batch index reproduce exactly the batches a run would have seen.
"""

from __future__ import annotations

import hashlib
import io
import json
import operator
import os
import queue
import re
import tempfile
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterator

import numpy as np

from gpt_tui import paths
from gpt_tui.engine import corpus
from gpt_tui.engine.tokenizer import EOT_TOKEN, TOKENIZER_NAME, get_tokenizer
from gpt_tui.errors import UserError

if TYPE_CHECKING:
    import torch

CACHE_FORMAT = 1
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
Batch = tuple["torch.Tensor", "torch.Tensor"]


# --- tokenizing, chunked and cached -------------------------------------------------


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
class _Source:
    name: str
    size: int
    sha256: str
    open: Callable[[], BinaryIO]


def _corpus_source(path: str | None) -> _Source:
    if corpus.is_builtin(path):
        corpus.check_builtin_name(path)
        data = corpus.default_corpus_text().encode("utf-8")
        return _Source(
            corpus.DEFAULT_CORPUS, len(data), hashlib.sha256(data).hexdigest(), lambda: io.BytesIO(data)
        )
    assert path is not None
    file = corpus.check_corpus_file(path)
    digest = hashlib.sha256()
    try:
        size = file.stat().st_size
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise UserError(f"Cannot read corpus {path}: {exc.strerror or exc}.") from None
    if size == 0:
        raise corpus.empty_corpus_error(str(path))
    return _Source(str(path), size, digest.hexdigest(), lambda: open(file, "rb"))


def tokens_cache_dir() -> Path:
    return paths.cache_dir() / "tokens"


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
    stem = f"{source.sha256}.{TOKENIZER_NAME}"
    cache = tokens_cache_dir()
    tokens_file, meta_file = cache / f"{stem}.u16", cache / f"{stem}.json"
    cached = _cached_tokens(tokens_file, meta_file, source.size)
    if cached is not None:
        return cached
    try:
        cache.mkdir(parents=True, exist_ok=True)
        count = 0

        def write_tokens(out: BinaryIO) -> None:
            nonlocal count
            count = _encode_stream(source, out, chunk_bytes, num_threads, on_progress)

        _atomic_write(tokens_file, write_tokens)
        meta = {
            "format": CACHE_FORMAT,
            "tokenizer": TOKENIZER_NAME,
            "tokens": count,
            "source": source.name,
            "source_bytes": source.size,
            "source_sha256": source.sha256,
        }
        _atomic_write(meta_file, lambda out: out.write(json.dumps(meta, indent=1).encode()))
    except OSError as exc:
        raise UserError(
            f"Cannot write the token cache in {cache}: {exc.strerror or exc}. Free some space "
            "or set GPT_TUI_CACHE_DIR to a writable directory."
        ) from None
    return np.memmap(tokens_file, dtype=np.uint16, mode="r", shape=(count,))


def _encode_stream(
    source: _Source,
    out: BinaryIO,
    chunk_bytes: int,
    num_threads: int | None,
    on_progress: ProgressCallback | None,
) -> int:
    """Encode ``source`` chunk by chunk on a thread pool, appending uint16 ids to ``out`` in order."""
    threads = max(1, num_threads or min(4, os.cpu_count() or 1))
    count = 0
    has_text = False
    in_flight: deque[tuple[Future[np.ndarray], int]] = deque()

    def write_next() -> None:
        nonlocal count
        future, end = in_flight.popleft()
        ids = future.result()
        out.write(ids.astype(np.uint16).tobytes())
        count += len(ids)
        if on_progress is not None:
            on_progress(end, source.size)

    with ThreadPoolExecutor(threads) as pool:
        for text, end in _read_chunks(source, chunk_bytes):
            has_text = has_text or not text.isspace()
            in_flight.append((pool.submit(_encode_chunk, text), end))
            if len(in_flight) > threads:
                write_next()
        while in_flight:
            write_next()
    if not has_text or count == 0:
        raise corpus.empty_corpus_error(source.name)
    return count


def _read_chunks(source: _Source, chunk_bytes: int) -> Iterator[tuple[str, int]]:
    """``iter_text_chunks`` of the source, with a read failure reported as the corpus's fault."""
    try:
        with source.open() as stream:
            yield from iter_text_chunks(stream, chunk_bytes=chunk_bytes, source=source.name)
    except OSError as exc:
        raise UserError(f"Cannot read corpus {source.name}: {exc.strerror or exc}.") from None


def _cached_tokens(tokens_file: Path, meta_file: Path, source_size: int) -> np.ndarray | None:
    """The cached ids when the entry is complete and matches its sidecar, else None (rebuild)."""
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        file_size = tokens_file.stat().st_size
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict):
        return None
    count = meta.get("tokens")
    if (
        meta.get("format") != CACHE_FORMAT
        or meta.get("tokenizer") != TOKENIZER_NAME
        or meta.get("source_bytes") != source_size
        or not isinstance(count, int)
        or count <= 0
        or file_size != 2 * count
    ):
        return None
    return np.memmap(tokens_file, dtype=np.uint16, mode="r", shape=(count,))


def _atomic_write(dest: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through a temporary file in the same directory, so ``dest`` is all or nothing."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable where the platform allows it
        dir_fd = os.open(dest.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# --- windows and batches ------------------------------------------------------------


def _check_positive(value: object, flag: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise UserError(f"{flag} must be a positive whole number, got {value!r}.")
    return int(value)


class TokenWindows:
    """Sliding windows of ``context_length`` tokens every ``stride`` tokens; targets shifted by one.

    The count follows the book's rule, ``len(range(0, n_tokens - context_length, stride))``,
    which keeps one spare token after every window for its last target.
    """

    def __init__(self, tokens: np.ndarray, context_length: int, stride: int) -> None:
        if np.ndim(tokens) != 1:
            raise ValueError(f"tokens must be a 1-D array, got shape {np.shape(tokens)}")
        self.tokens = tokens
        self.context_length = _check_positive(context_length, "--context-length")
        self.stride = _check_positive(stride, "--stride")
        self._count = len(range(0, len(tokens) - self.context_length, self.stride))

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int) -> Batch:
        import torch

        i = operator.index(index)
        if i < 0:
            i += self._count
        if not 0 <= i < self._count:
            raise IndexError(f"window {index} out of range for {self._count} windows")
        start = i * self.stride
        end = start + self.context_length
        x = torch.from_numpy(np.asarray(self.tokens[start:end], dtype=np.int64))
        y = torch.from_numpy(np.asarray(self.tokens[start + 1 : end + 1], dtype=np.int64))
        return x, y

    def gather(self, indices: np.ndarray) -> Batch:
        """Inputs and targets of the given windows as ``(B, L)`` long tensors, in one gather."""
        import torch

        starts = np.asarray(indices, dtype=np.int64) * self.stride
        offsets = starts[:, None] + np.arange(self.context_length + 1, dtype=np.int64)
        block = np.asarray(self.tokens[offsets], dtype=np.int64)
        x = torch.from_numpy(np.ascontiguousarray(block[:, :-1]))
        y = torch.from_numpy(np.ascontiguousarray(block[:, 1:]))
        return x, y


class BatchLoader:
    """Batches of windows; a shuffled order depends only on (seed, epoch), never on global RNG state."""

    def __init__(
        self,
        windows: TokenWindows,
        batch_size: int,
        shuffle: bool,
        drop_last: bool,
        seed: int = 0,
        pin_memory: bool = False,
    ) -> None:
        self.windows = windows
        self.batch_size = _check_positive(batch_size, "--batch-size")
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = int(seed)
        self.pin_memory = pin_memory

    @property
    def num_windows(self) -> int:
        return len(self.windows)

    def __len__(self) -> int:
        n, b = len(self.windows), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def order(self, epoch: int = 0) -> np.ndarray:
        """Window indices in the order ``epoch`` visits them."""
        n = len(self.windows)
        if not self.shuffle:
            return np.arange(n, dtype=np.int64)
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        rng = np.random.default_rng([self.seed % (1 << 64), epoch])
        return rng.permutation(n)

    def batches(self, epoch: int = 0, start: int = 0, shard: tuple[int, int] | None = None) -> Iterator[Batch]:
        """``(x, y)`` batches of ``epoch`` from batch index ``start`` on; skipped ones are never built.

        ``shard=(rank, world)`` keeps only that rank's consecutive rows of each
        batch (the first ranks get one more row when they do not divide evenly).
        """
        if not 0 <= start <= len(self):
            raise ValueError(f"start batch {start} out of range for {len(self)} batches")
        if shard is not None and not 0 <= shard[0] < shard[1]:
            raise ValueError(f"shard {shard} is not (rank, world) with 0 <= rank < world")
        return self._iter_batches(self.order(epoch), start, shard)

    def _iter_batches(self, order: np.ndarray, start: int, shard: tuple[int, int] | None) -> Iterator[Batch]:
        pin = self.pin_memory and _cuda_available()
        for b in range(start, len(self)):
            rows = order[b * self.batch_size : (b + 1) * self.batch_size]
            if shard is not None:
                rank, world = shard
                base, extra = divmod(len(rows), world)
                first = rank * base + min(rank, extra)
                rows = rows[first : first + base + (1 if rank < extra else 0)]
            x, y = self.windows.gather(rows)
            if pin:
                x, y = x.pin_memory(), y.pin_memory()
            yield x, y

    def __iter__(self) -> Iterator[Batch]:
        return self.batches(0)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


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


@dataclass(frozen=True)
class DataSplits:
    train: BatchLoader
    val: BatchLoader
    train_tokens: int
    val_tokens: int

    def summary(self) -> str:
        """One line for logs and the status bar: token counts and batches of both splits."""
        return (
            f"training: {self.train_tokens:,} tokens, {len(self.train)} batches; "
            f"validation: {self.val_tokens:,} tokens, {len(self.val)} batches"
        )


def make_loaders(
    tokens: np.ndarray,
    *,
    context_length: int,
    stride: int,
    batch_size: int,
    train_ratio: float = 0.9,
    seed: int = 0,
    shuffle: bool = True,
    pin_memory: bool = False,
) -> DataSplits:
    """Split the token array (training first) and check both halves can make batches."""
    context_length = _check_positive(context_length, "--context-length")
    stride = _check_positive(stride, "--stride")
    batch_size = _check_positive(batch_size, "--batch-size")
    if not isinstance(train_ratio, (int, float)) or not 0.0 < train_ratio < 1.0:
        raise UserError(
            f"--train-ratio must be between 0 and 1 (exclusive), got {train_ratio!r}; "
            "0.9 trains on 90% of the tokens and validates on the rest."
        )
    n = len(tokens)
    split = int(train_ratio * n)
    needed = context_length + 1
    for name, count, ratio_hint in (
        ("training", split, "a higher"),
        ("validation", n - split, "a lower"),
    ):
        if count < needed:
            raise UserError(
                f"The {name} split has {count:,} tokens but needs at least {needed:,} "
                f"(--context-length {context_length} + 1 for the shifted target). Use a smaller "
                f"--context-length, {ratio_hint} --train-ratio (now {train_ratio}), or more text "
                f"(the corpus has {n:,} tokens)."
            )
    train_windows = TokenWindows(tokens[:split], context_length, stride)
    val_windows = TokenWindows(tokens[split:], context_length, stride)
    if len(train_windows) < batch_size:
        raise UserError(
            f"The training split makes only {len(train_windows)} windows of {context_length} "
            f"tokens (stride {stride}), fewer than --batch-size {batch_size}, so no full batch "
            "is left. Use a smaller --batch-size or --stride, a smaller --context-length, or more text."
        )
    return DataSplits(
        train=BatchLoader(
            train_windows, batch_size, shuffle=shuffle, drop_last=True, seed=seed, pin_memory=pin_memory
        ),
        val=BatchLoader(
            val_windows, batch_size, shuffle=False, drop_last=False, seed=seed, pin_memory=pin_memory
        ),
        train_tokens=split,
        val_tokens=n - split,
    )
