"""The token cache: each corpus part is tokenized once, and its ids read back memory-mapped on every later run.

Tokenizing is the slow part and depends only on a part's bytes, so its result
is kept under ``cache_dir()/tokens`` as raw uint16 files keyed by the sha256 of
those bytes (with the part's kind and text field, or a dataset's fingerprint),
with a JSON sidecar that records what it holds. A part of more than
``SHARD_TOKENS`` ids is kept in several files, so no count needs 64 bits. The key is the
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

import numpy as np

from gpt_tui import fileio, paths
from gpt_tui.engine import corpus
from gpt_tui.engine import corpus_encoding
from gpt_tui.engine.corpus_encoding import DEFAULT_CHUNK_BYTES, CorpusSource, ProgressCallback
from gpt_tui.engine.corpus_parts import CorpusPart, iter_documents
from gpt_tui.engine.tokenizer import TOKENIZER_NAME, VOCAB_SIZE
from gpt_tui.errors import Notice, UserError

CACHE_FORMAT = 3  # 2: the sidecar records the token file's CRC-32; 3: an entry per part, in shards, with its documents
SHARD_TOKENS = 1 << 31  # ids in one token file at most (a count that fits 32 bits); a longer part takes several
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



@dataclass(frozen=True)
class PartKey:
    """What a part's cache entry is named by: the digest of its bytes (or a dataset's fingerprint)."""

    part: CorpusPart
    digest: str
    size: int  # the bytes hashed (a dataset: as its part says)
    open: Callable[[], BinaryIO] | None = None  # a text part's bytes, read again to tokenize them

    @property
    def stem(self) -> str:
        return _part_stem(self.part, self.digest)


@dataclass(frozen=True)
class PartEntry:
    """A part's ids, memory-mapped, in one or more shards, and where each of its documents starts."""

    shards: list[np.ndarray]
    doc_starts: np.ndarray  # int64 offsets into the part's ids

    @property
    def tokens(self) -> int:
        return sum(len(s) for s in self.shards)


def _part_stem(part: CorpusPart, digest: str) -> str:
    if part.kind == "text":  # a text file's entry is named by its bytes alone, as every version named it
        return f"{digest}.{TOKENIZER_NAME}"
    key = hashlib.sha256(f"{part.kind}\0{part.text_field}\0{digest}".encode()).hexdigest()
    return f"{key}.{TOKENIZER_NAME}"


def part_key(part: CorpusPart) -> PartKey:
    """The part read once through to learn its digest and size (its size on disk is not trusted: /proc says 0)."""
    if part.kind == "hf":
        return PartKey(part, hashlib.sha256(part.identity.encode()).hexdigest(), part.size_bytes)
    if part.path is None:
        data = corpus.default_corpus_text().encode("utf-8")
        return PartKey(part, hashlib.sha256(data).hexdigest(), len(data), lambda: io.BytesIO(data))
    file = corpus.check_corpus_file(str(part.path))
    try:
        with _HashingReader(corpus.open_corpus(file, part.label)) as reader:
            while reader.read(1 << 20):
                pass
    except OSError as exc:
        raise UserError(f"Cannot read corpus {part.label}: {exc.strerror or exc}.") from None
    if reader.size == 0:
        raise corpus.empty_corpus_error(part.label)
    return PartKey(part, reader.digest.hexdigest(), reader.size, lambda: corpus.open_corpus(file, part.label))


def tokens_cache_dir() -> Path:
    return paths.cache_dir() / "tokens"


def cache_write_error(cache: Path, exc: OSError) -> UserError:
    return UserError(
        f"Cannot write the token cache in {cache}: {exc.strerror or exc}. Free some space "
        "or set GPT_TUI_CACHE_DIR to a writable directory."
    )


def load_part(
    key: PartKey,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    num_threads: int | None = None,
    on_progress: ProgressCallback | None = None,
) -> PartEntry:
    """The part's entry: from the cache when it checks out, else tokenized into a new one."""
    cache = tokens_cache_dir()
    fileio.sweep_stale_temps(cache)  # what tokenizations killed midway left behind
    cached = cached_part(cache, key)
    if cached is not None:
        return cached
    try:
        cache.mkdir(parents=True, exist_ok=True)
        return tokenize_part(cache, key, chunk_bytes, num_threads, on_progress)
    except OSError as exc:
        raise cache_write_error(cache, exc) from None


class _IdFeed:
    """Ids from an encoder, handed out a shard at a time."""

    def __init__(self, ids: Iterator[np.ndarray], on_ids: Callable[[int], None] | None = None) -> None:
        self._ids = ids
        self._on_ids = on_ids
        self._held: np.ndarray | None = None

    def _next(self) -> np.ndarray | None:
        block, self._held = self._held, None
        while block is None or not len(block):
            block = next(self._ids, None)
            if block is None:
                return None
        return block

    def exhausted(self) -> bool:
        self._held = self._next()
        return self._held is None

    def fill(self, out: BinaryIO, limit: int) -> tuple[int, int]:
        """Write up to ``limit`` ids to ``out``; their count and CRC-32."""
        writer, count = _ChecksumWriter(out), 0
        while count < limit and (block := self._next()) is not None:
            if len(block) > limit - count:
                block, self._held = block[: limit - count], block[limit - count :]
            writer.write(block.tobytes())
            count += len(block)
            if self._on_ids is not None:
                self._on_ids(len(block))
        return count, writer.crc


def tokenize_part(
    cache: Path,
    key: PartKey,
    chunk_bytes: int,
    num_threads: int | None,
    on_progress: ProgressCallback | None,
    on_ids: Callable[[int], None] | None = None,
) -> PartEntry:
    """Encode a part into a new cache entry: its shards first, then its documents, then the sidecar that vouches for them."""
    part = key.part
    readers: list[_HashingReader] = []
    starts: list[np.ndarray] = []
    if part.kind == "text":
        assert key.open is not None
        opener = key.open

        def open_hashed() -> _HashingReader:
            readers.append(_HashingReader(opener()))
            return readers[-1]

        source = CorpusSource(part.label, key.size, key.digest, open_hashed)  # type: ignore[arg-type]
        ids = corpus_encoding.iter_encoded(source, chunk_bytes, num_threads, on_progress)
        starts.append(np.zeros(1, dtype=np.int64))
    else:
        ids = _document_ids(part, key.size, chunk_bytes, num_threads, on_progress, starts)
    feed = _IdFeed(ids, on_ids)
    shards: list[tuple[str, int, int]] = []

    def final_stem() -> str:
        return _part_stem(part, readers[-1].digest.hexdigest()) if readers else key.stem

    def write_shard(out: BinaryIO) -> str:
        count, crc = feed.fill(out, SHARD_TOKENS)
        if not shards and count == 0:
            raise corpus.empty_corpus_error(part.label)
        stem = final_stem() if feed.exhausted() else key.stem
        name = f"{stem}.u16" if not shards else f"{stem}.{len(shards)}.u16"
        shards.append((name, count, crc))
        return name

    while not shards or not feed.exhausted():
        fileio.atomic_write_named(cache, write_shard, durable=False)  # checked when read: no flush per file
    stem = final_stem()
    names = [f"{stem}.u16"] + [f"{stem}.{k}.u16" for k in range(1, len(shards))]
    for (written, _, _), name in zip(shards, names):
        if written != name:  # the part changed while it was read: its ids go under the name of what was read
            os.replace(cache / written, cache / name)
    digest, size = (readers[-1].digest.hexdigest(), readers[-1].size) if readers else (key.digest, key.size)
    if digest != key.digest:
        warnings.warn(
            f"corpus {part.label} changed while it was read; training on the text as it was read the second time.",
            Notice,
            stacklevel=3,
        )
    doc_starts = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
    meta: dict[str, Any] = {
        "format": CACHE_FORMAT,
        "tokenizer": TOKENIZER_NAME,
        "kind": part.kind,
        "text_field": part.text_field if part.kind != "text" else None,
        "tokens": sum(count for _, count, _ in shards),
        "shards": [[count, crc] for _, count, crc in shards],
        "documents": len(doc_starts),
        "source": part.label,
        "source_bytes": size,
        "source_sha256": digest,
    }
    if len(doc_starts) > 1:
        data = doc_starts.astype("<i8").tobytes()
        meta["documents_crc32"] = zlib.crc32(data)
        fileio.atomic_write_bytes(cache / f"{stem}.docs", data, durable=False)
    fileio.atomic_write_bytes(cache / f"{stem}.json", json.dumps(meta, indent=1).encode(), durable=False)
    mapped = [np.memmap(cache / name, dtype=np.uint16, mode="r", shape=(count,)) for name, (_, count, _) in zip(names, shards)]
    return PartEntry(mapped, doc_starts)


def _document_ids(
    part: CorpusPart,
    size: int,
    chunk_bytes: int,
    num_threads: int | None,
    on_progress: ProgressCallback | None,
    starts: list[np.ndarray],
) -> Iterator[np.ndarray]:
    """A part's documents' ids with one ``<|endoftext|>`` between documents; each document's start goes to ``starts``."""
    at = 0
    for ids, local, read in corpus_encoding.iter_encoded_documents(iter_documents(part), chunk_bytes, num_threads):
        if at:
            yield corpus_encoding.SEPARATOR
            at += 1
        starts.append(local + at)
        at += len(ids)
        if on_progress is not None:
            on_progress(min(read, size) if size else read, size)
        yield ids
    if at == 0:
        raise corpus.empty_corpus_error(part.label)


def cached_part(cache: Path, key: PartKey) -> PartEntry | None:
    """The cached entry when it is whole and what its sidecar says, else None (rebuild).

    An entry that is there but does not check out is said to be damaged before it is rebuilt.
    """
    stem = key.stem
    tokens_file, meta_file = cache / f"{stem}.u16", cache / f"{stem}.json"
    if not os.path.lexists(tokens_file) and not os.path.lexists(meta_file):
        return None  # a plain miss
    entry = None
    try:
        meta: Any = json.loads(meta_file.read_text(encoding="utf-8"))
        problem = _entry_problem(meta, key)
        if problem is None:
            entry, problem = _read_entry(cache, stem, meta)
    except FileNotFoundError:
        problem = "half of it is missing"
    except (OSError, ValueError) as exc:
        problem = f"it cannot be read ({getattr(exc, 'strerror', None) or exc})"
    if problem == "":
        return None  # written by another version of gpt-tui: replaced without a word
    if problem is None:
        return entry
    warnings.warn(
        f"the token cache entry for {key.part.label} is damaged ({problem}); tokenizing the corpus again.",
        Notice,
        stacklevel=3,
    )
    return None


def _read_entry(cache: Path, stem: str, meta: dict[str, Any]) -> tuple[PartEntry | None, str | None]:
    """The entry's shards and document starts once every file matches its record, or what does not."""
    shards = []
    for k, (count, crc) in enumerate(meta["shards"]):
        file = cache / (f"{stem}.u16" if k == 0 else f"{stem}.{k}.u16")
        size = file.stat().st_size
        if size != 2 * count:
            return None, f"the file holds {size} bytes where its record says {count} tokens"
        tokens = np.memmap(file, dtype=np.uint16, mode="r", shape=(count,))
        problem = _content_problem(tokens, crc)
        if problem is not None:
            return None, problem
        shards.append(tokens)
    documents = meta["documents"]
    if documents == 1:
        return PartEntry(shards, np.zeros(1, dtype=np.int64)), None
    data = (cache / f"{stem}.docs").read_bytes()
    if len(data) != 8 * documents or zlib.crc32(data) != meta.get("documents_crc32"):
        return None, "its record of where documents start does not match"
    starts = np.frombuffer(data, dtype="<i8").astype(np.int64)
    if starts[0] != 0 or np.any(np.diff(starts) <= 0) or starts[-1] >= meta["tokens"]:
        return None, "its record of where documents start is out of order"
    return PartEntry(shards, starts), None


def _entry_problem(meta: Any, key: PartKey) -> str | None:
    """What is wrong with a sidecar ("" for another cache format), or None."""
    if not isinstance(meta, dict):
        return "its record is not a JSON object"
    if meta.get("format") != CACHE_FORMAT or meta.get("tokenizer") != TOKENIZER_NAME:
        return ""
    count, shards, documents = meta.get("tokens"), meta.get("shards"), meta.get("documents")
    if meta.get("source_sha256") != key.digest or meta.get("source_bytes") != key.size or meta.get("kind") != key.part.kind:
        return "its record is of another text"
    valid = (
        type(count) is int and 0 < count and (key.part.kind == "hf" or count <= key.size)
        and isinstance(shards, list) and shards
        and all(isinstance(s, list) and len(s) == 2 and all(type(v) is int for v in s) and s[0] > 0 for s in shards)
        and type(documents) is int and 0 < documents <= count
    )
    if not valid:
        return "its record holds no valid token count and checksum"
    if sum(s[0] for s in shards) != count:
        return f"its shards hold {sum(s[0] for s in shards)} tokens where its record says {count}"
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
