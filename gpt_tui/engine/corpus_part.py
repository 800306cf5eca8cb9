"""One part of a corpus, the unit the token cache keys and tokenizes on its own (see gpt_tui.engine.corpus_parts)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HF_PREFIX = "hf:"  # a source that names a Hugging Face dataset


@dataclass(frozen=True)
class CorpusPart:
    """One unit of a corpus tokenized and cached on its own: a file, or a dataset split."""

    label: str  # for messages and progress: the path as given, or "hf:NAME..."
    kind: str  # "text" | "jsonl" | "json" | "csv" | "parquet" | "hf"
    path: Path | None  # the file; None for a dataset (and the built-in corpus)
    text_field: str = "text"  # the JSON key / column that holds the text (unused for "text")
    identity: str = ""  # a dataset's fingerprint (the cache key instead of file bytes); "" for files
    size_bytes: int = 0  # bytes to read, for progress and ETA (0 if unknown)
