"""How a run is measured while it trains: the loss on both splits, and a sample from the start context.

The train estimate reads the first ``eval_iter`` batches of a fixed order (the
loader's unshuffled epoch 0), so it is comparable from one evaluation to the
next. Under torchrun each rank computes the loss of its rows of every batch
and the sums are added up, so every rank gets the same number.
"""

from __future__ import annotations

import contextlib

import torch

from gpt_tui.engine import distributed
from gpt_tui.engine.batches import BatchLoader, DataSplits
from gpt_tui.engine.generation import generate
from gpt_tui.engine.loss import calc_loss_batch, calc_loss_loader
from gpt_tui.engine.model import GPTModel
from gpt_tui.engine.sampling_config import SamplingConfig
from gpt_tui.engine.tokenizer import text_to_token_ids, token_ids_to_text


def loader_loss(
    model: GPTModel,
    loader: BatchLoader,
    device: torch.device,
    limit: int,
    autocast: contextlib.AbstractContextManager,
    dist: distributed.DistInfo,
) -> float:
    """Mean loss of the first ``limit`` batches; under torchrun each rank computes its rows and they add up."""
    if not dist.enabled:
        return calc_loss_loader(model, loader.batches(0, 0), device, limit, autocast)
    total, count = 0.0, 0
    with torch.no_grad():
        for inputs, targets in loader.batches(0, 0):
            if count >= limit:
                break
            rows = dist.shard(inputs.shape[0])
            part = torch.zeros(2, device=device)
            if rows.stop > rows.start:
                loss = calc_loss_batch(model, inputs[rows], targets[rows], device, autocast)
                part[0] = loss.float() * targets[rows].numel()
                part[1] = targets[rows].numel()
            loss_sum, tokens = distributed.all_reduce_sum(part).tolist()
            total += loss_sum / tokens
            count += 1
    return total / count if count else float("nan")


def split_losses(
    model: GPTModel,
    splits: DataSplits,
    device: torch.device,
    limit: int,
    autocast: contextlib.AbstractContextManager,
    dist: distributed.DistInfo,
) -> tuple[float, float]:
    """The (train, validation) loss in eval mode; the model is left in the mode it was in."""
    was_training = model.training
    model.eval()
    train_loss = loader_loss(model, splits.train, device, limit, autocast, dist)
    val_loss = loader_loss(model, splits.val, device, limit, autocast, dist)
    model.train(was_training)
    return train_loss, val_loss


def sample_text(model: GPTModel, start_context: str, max_new_tokens: int, device: torch.device) -> str:
    """What the model writes after ``start_context``, with the default sampling settings."""
    prompt = text_to_token_ids(start_context).to(device)
    out = generate(model, prompt, SamplingConfig(max_new_tokens=max_new_tokens))
    return token_ids_to_text(out[0])
