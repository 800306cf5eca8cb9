"""The token cache: a corpus is tokenized once, and its ids read back memory-mapped on every later run.

Tokenizing is the slow part and depends only on the corpus bytes, so its result
is kept under ``cache_dir()/tokens`` as a raw uint16 file keyed by the sha256 of
those bytes, with a JSON sidecar that records what it holds. The file is written
atomically and checked against the sidecar on every use, so an interrupted run
never leaves a cache entry that would be trusted; the temporary file a killed
tokenization leaves behind is swept once it is an hour old.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np

from gpt_tui import fileio, paths
from gpt_tui.engine import corpus
from gpt_tui.engine.corpus_encoding import DEFAULT_CHUNK_BYTES, CorpusSource, ProgressCallback, encode_stream
from gpt_tui.engine.tokenizer import TOKENIZER_NAME
from gpt_tui.errors import UserError

CACHE_FORMAT = 1


def _corpus_source(path: str | None) -> CorpusSource:
    if corpus.is_builtin(path):
        corpus.check_builtin_name(path)
        data = corpus.default_corpus_text().encode("utf-8")
        return CorpusSource(
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
    return CorpusSource(str(path), size, digest.hexdigest(), lambda: open(file, "rb"))


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
    fileio.sweep_stale_temps(cache)  # what tokenizations killed midway left behind
    tokens_file, meta_file = cache / f"{stem}.u16", cache / f"{stem}.json"
    cached = _cached_tokens(tokens_file, meta_file, source.size)
    if cached is not None:
        return cached
    try:
        cache.mkdir(parents=True, exist_ok=True)
        count = 0

        def write_tokens(out: BinaryIO) -> None:
            nonlocal count
            count = encode_stream(source, out, chunk_bytes, num_threads, on_progress)

        fileio.atomic_write(tokens_file, write_tokens)
        meta = {
            "format": CACHE_FORMAT,
            "tokenizer": TOKENIZER_NAME,
            "tokens": count,
            "source": source.name,
            "source_bytes": source.size,
            "source_sha256": source.sha256,
        }
        fileio.atomic_write_bytes(meta_file, json.dumps(meta, indent=1).encode())
    except OSError as exc:
        raise UserError(
            f"Cannot write the token cache in {cache}: {exc.strerror or exc}. Free some space "
            "or set GPT_TUI_CACHE_DIR to a writable directory."
        ) from None
    return np.memmap(tokens_file, dtype=np.uint16, mode="r", shape=(count,))


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
