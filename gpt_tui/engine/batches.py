"""Sliding windows over the token stream and reproducible batches of them.

Windows and batches are made on demand from the (memory-mapped) token stream:
one gather per batch, never a list of tensors per window. The order
of shuffled batches depends only on (seed, epoch), which makes resuming from a
batch index reproduce exactly the batches a run would have seen. With
``--sampling random`` a batch is windows drawn at random from the whole
training stream (nanoGPT's way for corpora too large for epochs); they depend
only on (seed, epoch, batch), so resuming reproduces them just as exactly.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Iterator, Union

import numpy as np
import torch

from gpt_tui.engine.token_stream import TokenStream
from gpt_tui.engine.train_options import SAMPLINGS
from gpt_tui.errors import UserError

Batch = tuple["torch.Tensor", "torch.Tensor"]
Tokens = Union[np.ndarray, TokenStream]


def _check_positive(value: object, flag: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise UserError(f"{flag} must be a positive whole number, got {value!r}.")
    return int(value)


class TokenWindows:
    """Sliding windows of ``context_length`` tokens every ``stride`` tokens; targets shifted by one.

    The count follows the book's rule, ``len(range(0, n_tokens - context_length, stride))``,
    which keeps one spare token after every window for its last target.
    """

    def __init__(self, tokens: Tokens, context_length: int, stride: int) -> None:
        if not isinstance(tokens, TokenStream) and np.ndim(tokens) != 1:
            raise ValueError(f"tokens must be a 1-D array, got shape {np.shape(tokens)}")
        self.tokens = tokens
        self._stream = TokenStream.of(tokens)
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
        block = np.asarray(self._stream.read(start, start + self.context_length + 1), dtype=np.int64)
        return torch.from_numpy(block[:-1].copy()), torch.from_numpy(block[1:].copy())

    def gather(self, indices: np.ndarray) -> Batch:
        """Inputs and targets of the given windows as ``(B, L)`` long tensors, in one gather."""
        return self.gather_at(np.asarray(indices, dtype=np.int64) * self.stride)

    def gather_at(self, starts: np.ndarray) -> Batch:
        """Inputs and targets of the windows that start at the given token offsets."""
        block = self._stream.gather(np.asarray(starts, dtype=np.int64), self.context_length + 1)
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
        self._check_start(start, shard)
        return self._iter_batches(self.order(epoch), start, shard)

    def _check_start(self, start: int, shard: tuple[int, int] | None) -> None:
        if not 0 <= start <= len(self):
            raise ValueError(f"start batch {start} out of range for {len(self)} batches")
        if shard is not None and not 0 <= shard[0] < shard[1]:
            raise ValueError(f"shard {shard} is not (rank, world) with 0 <= rank < world")

    def _iter_batches(self, order: np.ndarray, start: int, shard: tuple[int, int] | None) -> Iterator[Batch]:
        pin = self.pin_memory and _cuda_available()
        for b in range(start, len(self)):
            rows = _rank_rows(order[b * self.batch_size : (b + 1) * self.batch_size], shard)
            x, y = self.windows.gather(rows)
            if pin:
                x, y = x.pin_memory(), y.pin_memory()
            yield x, y

    def __iter__(self) -> Iterator[Batch]:
        return self.batches(0)


def _rank_rows(rows: np.ndarray, shard: tuple[int, int] | None) -> np.ndarray:
    """A rank's consecutive rows of a global batch (the first ranks get one more when they do not divide evenly)."""
    if shard is None:
        return rows
    rank, world = shard
    base, extra = divmod(len(rows), world)
    first = rank * base + min(rank, extra)
    return rows[first : first + base + (1 if rank < extra else 0)]


class RandomBatchLoader(BatchLoader):
    """Batches of windows that start anywhere in the training stream, drawn from (seed, epoch, batch) alone.

    An "epoch" is ``train tokens // (batch size * context length)`` batches:
    about as many tokens as one pass, so step counts, evaluations and samples
    per epoch mean what they do for sliding windows. ``windows`` (the sliding
    windows) stays what evaluating the training split reads.
    """

    def __init__(self, windows: TokenWindows, batch_size: int, seed: int = 0, pin_memory: bool = False) -> None:
        super().__init__(windows, batch_size, shuffle=True, drop_last=True, seed=seed, pin_memory=pin_memory)
        self._starts = len(windows.tokens) - windows.context_length  # a window and its shifted target fit from each
        self._steps = max(1, len(windows.tokens) // (self.batch_size * windows.context_length))

    def __len__(self) -> int:
        return self._steps

    def starts(self, epoch: int, batch: int) -> np.ndarray:
        """Where the windows of batch ``batch`` of ``epoch`` start."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        rng = np.random.default_rng([self.seed % (1 << 64), epoch, batch])
        return rng.integers(0, self._starts, size=self.batch_size, dtype=np.int64)

    def batches(self, epoch: int = 0, start: int = 0, shard: tuple[int, int] | None = None) -> Iterator[Batch]:
        """``(x, y)`` batches of ``epoch`` from batch index ``start`` on, as :meth:`BatchLoader.batches`."""
        self._check_start(start, shard)
        self.starts(epoch, 0)  # a bad epoch fails here, not at the first batch
        return self._iter_random(epoch, start, shard)

    def _iter_random(self, epoch: int, start: int, shard: tuple[int, int] | None) -> Iterator[Batch]:
        pin = self.pin_memory and _cuda_available()
        for b in range(start, len(self)):
            x, y = self.windows.gather_at(_rank_rows(self.starts(epoch, b), shard))
            if pin:
                x, y = x.pin_memory(), y.pin_memory()
            yield x, y


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
    tokens: Tokens,
    *,
    context_length: int,
    stride: int,
    batch_size: int,
    train_ratio: float = 0.9,
    seed: int = 0,
    shuffle: bool = True,
    pin_memory: bool = False,
    sampling: str = "windows",
) -> DataSplits:
    """Split the token array or stream (training first) and check both halves can make batches."""
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
    if isinstance(tokens, TokenStream):
        train, val = tokens.slice(0, split), tokens.slice(split, n)
    else:
        train, val = tokens[:split], tokens[split:]
    train_windows = TokenWindows(train, context_length, stride)
    val_windows = TokenWindows(val, context_length, stride)
    if len(train_windows) < batch_size:
        raise UserError(
            f"The training split makes only {len(train_windows)} windows of {context_length} "
            f"tokens (stride {stride}), fewer than --batch-size {batch_size}, so no full batch "
            "is left. Use a smaller --batch-size or --stride, a smaller --context-length, or more text."
        )
    return DataSplits(
        train=training_loader(
            train_windows, batch_size, sampling=sampling, shuffle=shuffle, seed=seed, pin_memory=pin_memory
        ),
        val=BatchLoader(
            val_windows, batch_size, shuffle=False, drop_last=False, seed=seed, pin_memory=pin_memory
        ),
        train_tokens=split,
        val_tokens=n - split,
    )


def training_loader(
    windows: TokenWindows, batch_size: int, *, sampling: str = "windows", shuffle: bool = True, seed: int = 0,
    pin_memory: bool = False,
) -> BatchLoader:
    """The training split's loader: the book's sliding windows, or random windows (``sampling``, one of SAMPLINGS)."""
    if sampling not in SAMPLINGS:
        raise UserError(f"--sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}.")
    if sampling == "random":
        return RandomBatchLoader(windows, batch_size, seed=seed, pin_memory=pin_memory)
    return BatchLoader(windows, batch_size, shuffle=shuffle, drop_last=True, seed=seed, pin_memory=pin_memory)
