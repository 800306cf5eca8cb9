"""What a corpus holds before a run starts: its parts, and once tokenized its documents and both splits' tokens.

The app shows this beside its Corpus field. Nothing is tokenized here: the
parts are looked up in the token cache, and only when every one is there are
the splits counted (from the cache entries, as a run would read them).
Torch-free and Textual-free; it reads every file once to key it, so the app
runs it in a worker thread.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from gpt_tui.engine.corpus_parts import HF_PREFIX, resolve_sources, source_list
from gpt_tui.engine.corpus_split import CorpusSplit, check_ratio, split_corpus
from gpt_tui.engine.corpus_tokens import tokenize_parts
from gpt_tui.engine.hf_source import offline, parse_hf
from gpt_tui.engine.part_cache import cached_part, part_key, tokens_cache_dir
from gpt_tui.errors import UserError


@dataclass(frozen=True)
class CorpusSummary:
    """The parts of a corpus (training and held-out together), how many are cached, and the split once all are."""

    parts: int
    size_bytes: int
    cached_parts: int
    split: CorpusSplit | None = None  # None until every part is in the token cache
    datasets: int = 0  # hf: sources not looked at (online, a look could start a download): read at Start

    def line(self) -> str:
        """One line for the settings panel."""
        files = f"{self.parts:,} part{'s' if self.parts != 1 else ''}, {_megabytes(self.size_bytes)}"
        if self.datasets:
            files = f"{files} and {self.datasets} dataset{'s' if self.datasets != 1 else ''} (looked up at Start)"
        if self.split is None:
            return f"{files}; {self.cached_parts:,} of {self.parts:,} cached (the rest is tokenized at Start)"
        s = self.split
        if s.whole is not None:  # one document, cut by tokens: both sides hold a piece of it
            return (f"{files}, 1 document split by tokens; train {s.train_tokens:,} tokens, "
                    f"val {s.val_tokens:,}; all cached")
        return (f"{files}, {s.train_documents + s.val_documents:,} documents; train {s.train_tokens:,} tokens in "
                f"{s.train_documents:,}, val{' (held out)' if s.held_out else ''} {s.val_tokens:,} in "
                f"{s.val_documents:,}; all cached")


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB" if size >= 100_000 else f"{size / 1e3:,.1f} kB"


def summarize(
    data: Any,
    *,
    train_ratio: float,
    val_data: Any = None,
    glob: str | None = None,
    text_field: str = "text",
    skip_bad_files: bool = False,
) -> CorpusSummary:
    """The summary of a corpus as a run with these options would read it; a bad source is its UserError."""
    chosen = {"glob": glob, "text_field": text_field, "skip_bad_files": skip_bad_files}
    train, held_out = source_list(data), source_list(val_data)
    deferred = [s for s in train + held_out if s.startswith(HF_PREFIX) and not offline()]
    for source in deferred:
        parse_hf(source)  # a malformed name is said now; the dataset itself is not fetched from here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a skipped file or a damaged cache entry is said when a run starts
        looked_at = [s for s in train if s not in deferred]
        parts = resolve_sources(looked_at, **chosen) if looked_at or not train else []
        held_files = [s for s in held_out if s not in deferred]
        held = resolve_sources(held_files, **chosen) if held_files else []
        cache = tokens_cache_dir()
        keys = [part_key(part) for part in parts + held]
        cached = sum(cached_part(cache, key) is not None for key in keys)
        size = sum(key.size for key in keys)
        if cached < len(keys) or deferred:
            return CorpusSummary(len(keys), size, cached, datasets=len(deferred))
        if not held:
            check_ratio(train_ratio)
        tokens = tokenize_parts(parts)
        split = split_corpus(tokens, train_ratio, tokenize_parts(held) if held else None)
    return CorpusSummary(len(keys), size, cached, split)


def summary_line(data: Any, **options: Any) -> str:
    """The summary's line, or the reason the corpus cannot be read (what a run would refuse)."""
    try:
        return summarize(data, **options).line()
    except UserError as exc:
        return str(exc)
