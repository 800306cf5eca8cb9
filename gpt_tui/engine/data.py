"""From a corpus to training batches: cached token ids, sliding windows, reproducible batches.

Each step has its own module; this one gathers the names callers use:

- gpt_tui.engine.corpus_encoding: a corpus to token ids, in chunks that encode
  to the same ids as the whole text;
- gpt_tui.engine.token_cache / part_cache: the ids kept on disk, keyed by each
  part's bytes, so a file is tokenized once;
- gpt_tui.engine.corpus_tokens: a corpus of many parts tokenized side by side
  into one TokenStream (gpt_tui.engine.token_stream), read without copying;
- gpt_tui.engine.batches: sliding windows and batches whose order depends only
  on (seed, epoch), or random windows drawn from (seed, epoch, batch), so a
  resumed run sees the very batches it would have;
- gpt_tui.engine.prefetch: batches built ahead on a thread for a GPU.
"""

from __future__ import annotations

from gpt_tui.engine.batches import Batch, BatchLoader, DataSplits, TokenWindows, make_loaders
from gpt_tui.engine.corpus_encoding import DEFAULT_CHUNK_BYTES, ProgressCallback, encode_text, iter_text_chunks
from gpt_tui.engine.prefetch import Prefetcher
from gpt_tui.engine.token_cache import CACHE_FORMAT, tokenize_corpus, tokens_cache_dir

__all__ = [
    "CACHE_FORMAT",
    "DEFAULT_CHUNK_BYTES",
    "Batch",
    "BatchLoader",
    "DataSplits",
    "Prefetcher",
    "ProgressCallback",
    "TokenWindows",
    "encode_text",
    "iter_text_chunks",
    "make_loaders",
    "tokenize_corpus",
    "tokens_cache_dir",
]
