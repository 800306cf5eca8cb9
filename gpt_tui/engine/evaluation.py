"""How a run is measured while it trains: the loss on both splits, and a sample from the start context.

Each split's loss is the mean over a set of windows fixed for the whole run,
so one evaluation compares with the next (and a resumed run reads the same
ones): by default the whole split, or a seeded stratified sample of it when
it is large (gpt_tui.engine.eval_coverage says which and why); with
``eval_iter`` the book's first N batches of the loader's fixed epoch-0 order.
Under torchrun each rank scores its rows of every batch and the sums are
added up, so every rank gets the same number.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch

from gpt_tui.engine import distributed
from gpt_tui.engine.batches import BatchLoader, DataSplits
from gpt_tui.engine.eval_coverage import BOOK_EVAL_FREQ, default_interval, default_sizes
from gpt_tui.engine.generation import generate
from gpt_tui.engine.loss import calc_loss_batch
from gpt_tui.engine.model import GPTModel
from gpt_tui.engine.sampling_config import SamplingConfig
from gpt_tui.engine.tokenizer import text_to_token_ids, token_ids_to_text
from gpt_tui.engine.train_options import TrainConfig

SAMPLE_STREAM = 0x5A3E  # keeps the sample's random numbers apart from any other use of the run's seed


def stratified_sample(num_windows: int, size: int, seed: int, split: int) -> np.ndarray:
    """``size`` window indices, one drawn from each of ``size`` equal stretches of the split, in order."""
    rng = np.random.default_rng([seed % (1 << 64), SAMPLE_STREAM, split])
    edges = np.arange(size + 1, dtype=np.int64) * num_windows // size
    return edges[:-1] + (rng.random(size) * (edges[1:] - edges[:-1])).astype(np.int64)


def eval_windows(loader: BatchLoader, eval_iter: int | None, *, seed: int, split: int, sample: int | None) -> np.ndarray:
    """The windows an evaluation of ``loader``'s split reads, in order; the same at every evaluation.

    ``eval_iter`` given: its first N batches (the book's meaning). Otherwise a
    stratified ``sample`` seeded by ``seed`` and ``split`` (0 train, 1 val),
    or the whole split when ``sample`` is None or not smaller than it.
    """
    if eval_iter is not None:
        return loader.order(0)[: min(eval_iter, len(loader)) * loader.batch_size]
    if sample is None or sample >= loader.num_windows:
        return np.arange(loader.num_windows, dtype=np.int64)
    return stratified_sample(loader.num_windows, sample, seed, split)


def windows_loss(
    model: torch.nn.Module,
    loader: BatchLoader,
    windows: np.ndarray,
    device: torch.device | str,
    autocast: contextlib.AbstractContextManager | None,
    dist: distributed.DistInfo = distributed.SINGLE,
    on_batch: Callable[[int, int], None] | None = None,
) -> float:
    """Mean loss of the given windows, read in batches of the loader's size; NaN when there are none.

    ``on_batch(done, total)`` hears of each batch scored: a long evaluation can show its progress.
    """
    total = torch.zeros(2, device=device)
    batch = loader.batch_size
    batches = -(-len(windows) // batch)
    with torch.no_grad():
        for start in range(0, len(windows), batch):
            rows = windows[start : start + batch]
            if dist.enabled:
                rows = rows[dist.shard(len(rows))]
            if len(rows):
                inputs, targets = loader.windows.gather(rows)
                total[0] += calc_loss_batch(model, inputs, targets, device, autocast).float() * len(rows)
                total[1] += len(rows)
            if on_batch is not None:
                on_batch(start // batch + 1, batches)
    if dist.enabled:
        total = distributed.all_reduce_sum(total)
    loss_sum, count = total.tolist()
    return loss_sum / count if count else float("nan")


@dataclass(frozen=True)
class SplitLosses:
    """One evaluation: each split's loss and how many predictions it scored, of how many in the split."""

    train_loss: float  # the evaluation's estimate on the training split, not a step's loss
    val_loss: float
    train_tokens: int
    val_tokens: int
    train_split_tokens: int
    val_split_tokens: int

    def event_fields(self) -> dict[str, Any]:
        return asdict(self)


def _default_sizes(config: TrainConfig, splits: DataSplits) -> tuple[int | None, int | None]:
    between = (config.eval_freq or BOOK_EVAL_FREQ) * config.grad_accum * splits.train.batch_size  # windows trained
    context = splits.val.windows.context_length
    return default_sizes(splits.train.num_windows, splits.val.num_windows, context, between)


def eval_interval(config: TrainConfig, splits: DataSplits) -> int:
    """Steps between evaluations: ``eval_freq`` when given; else the book's 5, or more for a large default read."""
    if config.eval_freq is not None:
        return config.eval_freq
    if config.eval_iter is not None:
        return BOOK_EVAL_FREQ
    sizes = _default_sizes(config, splits)
    read = sum(loader.num_windows if size is None else size for size, loader in zip(sizes, (splits.train, splits.val)))
    return default_interval(read, config.grad_accum * splits.train.batch_size)


def split_losses(
    model: GPTModel,
    splits: DataSplits,
    device: torch.device,
    config: TrainConfig,
    autocast: contextlib.AbstractContextManager,
    dist: distributed.DistInfo,
) -> SplitLosses:
    """The losses of both splits in eval mode, over the windows ``config`` asks for; the model keeps its mode."""
    was_training = model.training
    model.eval()
    sizes = _default_sizes(config, splits)
    found: dict[str, Any] = {}
    for split, (name, loader) in enumerate((("train", splits.train), ("val", splits.val))):
        windows = eval_windows(loader, config.eval_iter, seed=config.seed, split=split, sample=sizes[split])
        found[f"{name}_loss"] = windows_loss(model, loader, windows, device, autocast, dist)
        found[f"{name}_tokens"] = len(windows) * loader.windows.context_length
        found[f"{name}_split_tokens"] = loader.num_windows * loader.windows.context_length
    model.train(was_training)
    return SplitLosses(**found)


def sample_text(model: GPTModel, start_context: str, max_new_tokens: int, device: torch.device) -> str:
    """What the model writes after ``start_context``, with the default sampling settings."""
    prompt = text_to_token_ids(start_context).to(device)
    out = generate(model, prompt, SamplingConfig(max_new_tokens=max_new_tokens))
    return token_ids_to_text(out[0])
