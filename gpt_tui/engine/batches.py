"""Sliding windows over the token array and reproducible batches of them.

Windows and batches are made on demand from the (memory-mapped) token array:
one vectorised gather per batch, never a list of tensors per window. The order
of shuffled batches depends only on (seed, epoch), which makes resuming from a
batch index reproduce exactly the batches a run would have seen.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from gpt_tui.errors import UserError

Batch = tuple["torch.Tensor", "torch.Tensor"]


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
    return torch.cuda.is_available()


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
