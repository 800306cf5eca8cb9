"""Cross-entropy of a batch and of a loader, and perplexity (SPEC §1.4).

A ``GPTModel`` takes the targets and computes its loss itself (see
``fused_loss``), inside ``forward`` so that wrappers such as DDP see the whole
step; any other module is scored from its logits.
"""

from __future__ import annotations

import contextlib
from typing import Iterable

import torch
import torch.nn.functional as F

from gpt_tui.engine.model import GPTModel
from gpt_tui.engine.perplexity import perplexity  # noqa: F401  (re-exported: `gpt-tui eval` prints it)


def _builds_own_loss(model: torch.nn.Module) -> bool:
    """Whether ``model`` (or the model a DDP / compile wrapper holds) takes ``targets`` and returns the loss."""
    inner = getattr(model, "module", model)
    inner = getattr(inner, "_orig_mod", inner)
    return isinstance(inner, GPTModel)


def calc_loss_batch(
    model: "GPTModel | torch.nn.Module",
    inputs: torch.Tensor,
    targets: torch.Tensor,
    device: torch.device | str | None = None,
    autocast: contextlib.AbstractContextManager | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of the logits flattened over batch and time against the flat targets."""
    if device is not None:
        inputs = inputs.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
    with autocast or contextlib.nullcontext():
        if _builds_own_loss(model):
            return model(inputs, targets=targets)
        logits = model(inputs)
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


@torch.no_grad()
def calc_loss_loader(
    model: "GPTModel | torch.nn.Module",
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device | str | None = None,
    num_batches: int | None = None,
    autocast: contextlib.AbstractContextManager | None = None,
) -> float:
    """Mean batch loss over the first ``num_batches`` batches (all by default); NaN when there are none."""
    total, count = 0.0, 0
    for inputs, targets in batches:
        if num_batches is not None and count >= num_batches:
            break
        total += calc_loss_batch(model, inputs, targets, device, autocast).item()
        count += 1
    return total / count if count else float("nan")
