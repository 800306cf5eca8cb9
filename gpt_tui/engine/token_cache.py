"""The corpus's token ids from the token cache (gpt_tui.engine.part_cache), by the names callers know.

``tokenize_corpus`` gives one text file's ids as a single memory-mapped
array, as every caller before corpora had parts used them; a corpus of many
parts is a stream (gpt_tui.engine.corpus_tokens.tokenize_parts).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from gpt_tui.engine import corpus
from gpt_tui.engine.corpus_encoding import DEFAULT_CHUNK_BYTES, ProgressCallback
from gpt_tui.engine.corpus_parts import CorpusPart, builtin_part, kind_of, resolve_sources
from gpt_tui.engine.corpus_tokens import CorpusTokens, TokenizeCallback, tokenize_parts
from gpt_tui.engine.part_cache import CACHE_FORMAT, SHARD_TOKENS, load_part, part_key, tokens_cache_dir
from gpt_tui.errors import UserError

__all__ = ["CACHE_FORMAT", "CorpusTokens", "tokenize_corpus", "tokenize_parts", "tokens_cache_dir"]


def tokenize_corpus(
    path: str | os.PathLike[str] | Sequence[str] | None = None,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    on_progress: ProgressCallback | None = None,
    num_threads: int | None = None,
    progress: TokenizeCallback | None = None,
) -> np.ndarray:
    """The corpus's token ids, read-only and memory-mapped; tokenized only on a cache miss.

    ``on_progress(done_bytes, total_bytes)`` is called as one file's text is
    encoded (not on a cache hit). Several sources are read through
    ``resolve_sources`` and must fit one array.
    """
    if path is not None and not isinstance(path, (str, os.PathLike)):
        parts = resolve_sources(list(path))
        tokens = tokenize_parts(parts, progress=progress, chunk_bytes=chunk_bytes, num_threads=num_threads)
        try:
            return tokens.stream.as_array()
        except ValueError as exc:
            raise UserError(f"The corpus spans several token files ({exc}).") from None
    path_str = None if path is None else os.fspath(path)
    if corpus.is_builtin(path_str):
        corpus.check_builtin_name(path_str)
        part = builtin_part()
    else:
        assert path_str is not None
        part = CorpusPart(path_str, kind_of(path_str), corpus.check_corpus_file(path_str))
    entry = load_part(part_key(part), chunk_bytes=chunk_bytes, num_threads=num_threads, on_progress=on_progress)
    if len(entry.shards) != 1:
        raise UserError(f"Corpus {path_str} holds more than {SHARD_TOKENS:,} tokens; read it as a token stream.")
    return entry.shards[0]
