"""Batches of both splits of a corpus, with the document counts a run reports next to the token counts.

A single document goes through ``make_loaders`` unchanged (the book's split,
its numbers and messages); a split on a document boundary or a held-out set
is made into windows here, each side checked to hold at least one window, with
a message that says which side is short and what to change.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from gpt_tui.engine.batches import BatchLoader, DataSplits, TokenWindows, make_loaders, training_loader
from gpt_tui.engine.corpus_split import CorpusSplit
from gpt_tui.engine.token_stream import TokenStream
from gpt_tui.errors import UserError


@dataclass(frozen=True)
class CorpusData(DataSplits):
    """The two splits' batches, and how many documents each holds."""

    train_documents: int = 1
    val_documents: int = 1
    held_out: bool = False  # validation is a separate set (--val-data)


def _windowable(stream: TokenStream) -> Any:
    """A stream of one token file as its array (a view of the memory map); several stay a stream."""
    return stream.as_array() if stream.pieces <= 1 else stream


def split_loaders(
    split: CorpusSplit,
    *,
    context_length: int,
    stride: int,
    batch_size: int,
    train_ratio: float,
    seed: int = 0,
    shuffle: bool = True,
    pin_memory: bool = False,
    sampling: str = "windows",
) -> CorpusData:
    """Both splits' batch loaders; a side too short for one window is a UserError naming the fix."""
    if split.whole is not None:  # one document: the book's split, by make_loaders itself
        base = make_loaders(
            _windowable(split.whole), context_length=context_length, stride=stride, batch_size=batch_size,
            train_ratio=train_ratio, seed=seed, shuffle=shuffle, pin_memory=pin_memory, sampling=sampling,
        )
        return _with_counts(base, split)
    needed = context_length + 1
    sides = (("training split", split.train_tokens, split.train_documents),
             ("validation split", split.val_tokens, split.val_documents))
    for name, count, documents in sides:
        if count < needed:
            raise UserError(_short_message(split, name, count, documents, context_length, train_ratio))
    train_windows = TokenWindows(_windowable(split.train), context_length, stride)
    val_windows = TokenWindows(_windowable(split.val), context_length, stride)
    if len(train_windows) < batch_size:
        raise UserError(
            f"The training split makes only {len(train_windows)} windows of {context_length} tokens (stride {stride}), "
            f"fewer than --batch-size {batch_size}, so no full batch is left. Use a smaller --batch-size or --stride, "
            "a smaller --context-length, or more text."
        )
    base = DataSplits(
        train=training_loader(train_windows, batch_size, sampling=sampling, shuffle=shuffle, seed=seed, pin_memory=pin_memory),
        val=BatchLoader(val_windows, batch_size, shuffle=False, drop_last=False, seed=seed, pin_memory=pin_memory),
        train_tokens=split.train_tokens,
        val_tokens=split.val_tokens,
    )
    return _with_counts(base, split)


def _short_message(
    split: CorpusSplit, name: str, count: int, documents: int, context_length: int, train_ratio: float
) -> str:
    needs = f"needs at least {context_length + 1:,} (--context-length {context_length} + 1 for the shifted target)"
    if split.held_out and name.startswith("validation"):
        return (f"The held-out validation set (--val-data) has {count:,} tokens but {needs}; give a longer "
                "--val-data or use a smaller --context-length.")
    if split.held_out:
        return f"The training data has {count:,} tokens but {needs}; give more text or a smaller --context-length."
    hint = "a higher" if name.startswith("training") else "a lower"
    return (f"The {name} has {count:,} tokens but {needs}; it holds {documents:,} document{'s' if documents != 1 else ''} "
            f"and documents are not cut between the splits, so use {hint} --train-ratio (now {train_ratio}), a smaller "
            "--context-length, --val-data with a held-out set, or more text.")


def _with_counts(base: DataSplits, split: CorpusSplit) -> CorpusData:
    values = {f.name: getattr(base, f.name) for f in fields(DataSplits)}
    return CorpusData(**values, train_documents=split.train_documents, val_documents=split.val_documents,
                      held_out=split.held_out)


def split_counts(splits: DataSplits) -> dict[str, int]:
    """The StartEvent fields that say how big each split is."""
    return {
        "train_tokens": splits.train_tokens,
        "val_tokens": splits.val_tokens,
        "train_documents": getattr(splits, "train_documents", 1),
        "val_documents": getattr(splits, "val_documents", 1),
    }
