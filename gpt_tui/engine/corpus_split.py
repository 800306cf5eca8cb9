"""Where the training split ends and the validation split begins.

One document (a single text file, the built-in corpus) is split by tokens at
``train_ratio``, as the book does, so the chapter-5 numbers do not change. A
corpus of several documents is split on the document boundary nearest the
ratio, so no document is read partly in training and partly in validation
(its second half would be an easy validation loss). A held-out set
(``--val-data``) replaces the split: every training document trains.
Torch-free: the app's corpus summary uses it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from gpt_tui.engine.token_stream import TokenStream
from gpt_tui.errors import UserError


class Tokens(Protocol):
    """What the split reads of a tokenized corpus (gpt_tui.engine.token_cache's CorpusTokens)."""

    stream: Any  # a TokenStream
    doc_starts: np.ndarray
    documents: int


@dataclass(frozen=True)
class CorpusSplit:
    """The two token streams and how much of the corpus each holds."""

    train: TokenStream
    val: TokenStream
    train_documents: int
    val_documents: int
    held_out: bool = False  # val is a separate set (--val-data), not a share of the corpus
    whole: TokenStream | None = None  # one document: the stream the book's token split was cut from

    @property
    def train_tokens(self) -> int:
        return len(self.train)

    @property
    def val_tokens(self) -> int:
        return len(self.val)

    def summary(self) -> str:
        """How the corpus was split, for a run's header: tokens and documents on both sides."""
        how = "held-out set" if self.held_out else "split"
        return (
            f"training: {self.train_tokens:,} tokens in {_docs(self.train_documents)}; "
            f"validation ({how}): {self.val_tokens:,} tokens in {_docs(self.val_documents)}"
        )


def _docs(n: int) -> str:
    return f"{n:,} document" + ("" if n == 1 else "s")


def check_ratio(train_ratio: float) -> None:
    if isinstance(train_ratio, bool) or not isinstance(train_ratio, (int, float)) or not 0.0 < train_ratio < 1.0:
        raise UserError(
            f"--train-ratio must be between 0 and 1 (exclusive), got {train_ratio!r}; "
            "0.9 trains on 90% of the tokens and validates on the rest."
        )


def document_boundary(doc_starts: np.ndarray, total: int, train_ratio: float) -> int:
    """The index of the first validation document: the boundary nearest ``train_ratio`` of the tokens.

    Both splits keep at least one document; a tie goes to the earlier boundary.
    """
    starts = np.asarray(doc_starts, dtype=np.int64)
    if len(starts) < 2:
        raise ValueError("a document split needs two documents or more")
    target = train_ratio * total
    boundaries = starts[1:]
    return 1 + int(np.argmin(np.abs(boundaries - target)))


def split_corpus(tokens: Tokens, train_ratio: float, held_out: Tokens | None = None) -> CorpusSplit:
    """The training and validation streams of ``tokens`` (``held_out``, when given, is the validation set)."""
    stream = TokenStream.of(tokens.stream)
    n = len(stream)
    if held_out is not None:
        return CorpusSplit(stream, TokenStream.of(held_out.stream), tokens.documents, held_out.documents, True)
    check_ratio(train_ratio)
    if tokens.documents < 2:
        split = int(train_ratio * n)  # the book's split, token by token
        return CorpusSplit(stream.slice(0, split), stream.slice(split, n), 1, 1, whole=stream)
    first_val = document_boundary(tokens.doc_starts, n, train_ratio)
    split = int(tokens.doc_starts[first_val])  # the separator before it ends the training split
    return CorpusSplit(
        stream.slice(0, split), stream.slice(split, n), first_val, tokens.documents - first_val
    )


def load_split(
    data: Any,
    *,
    train_ratio: float,
    val_data: Any = None,
    glob: str | None = None,
    text_field: str = "text",
    skip_bad_files: bool = False,
    progress: Any = None,
) -> CorpusSplit:
    """The sources resolved (both sets, before anything is tokenized), tokenized through the cache, and split."""
    from gpt_tui.engine.corpus_parts import resolve_sources, source_list
    from gpt_tui.engine.corpus_tokens import tokenize_parts

    if not source_list(val_data):
        check_ratio(train_ratio)
    chosen = {"glob": glob, "text_field": text_field, "skip_bad_files": skip_bad_files}
    parts = resolve_sources(source_list(data), **chosen)
    held_parts = resolve_sources(source_list(val_data), **chosen) if source_list(val_data) else None
    extra = {} if progress is None else {"progress": progress}
    tokens = tokenize_parts(parts, **extra)
    held_out = tokenize_parts(held_parts, **extra) if held_parts is not None else None
    return split_corpus(tokens, train_ratio, held_out)
