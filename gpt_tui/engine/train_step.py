"""One optimizer step and its inputs: autocast, accumulation, clipping, and the one device sync that reads it.

The loop (gpt_tui.engine.trainer) asks for a step and gets back its loss and
gradient norm; how the gradients are made — micro-batches fed from this
rank's rows of each batch, mixed precision, a compiled or DDP-wrapped module,
gradients all-reduced on the last micro-batch only — stays here.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from gpt_tui.engine import distributed
from gpt_tui.engine.batches import BatchLoader
from gpt_tui.engine.loss import calc_loss_batch
from gpt_tui.engine.model import GPTModel
from gpt_tui.engine.precision import autocast_for
from gpt_tui.engine.prefetch import Prefetcher
from gpt_tui.engine.runtime import configure_for_training
from gpt_tui.engine.train_options import TrainConfig

Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]


def make_optimizer(model: GPTModel, device: torch.device, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; 2-D weights decay, biases and LayerNorm gains do not; fused kernel where torch has one."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    kwargs: dict[str, Any] = {"lr": config.lr, "betas": (config.beta1, config.beta2)}
    if device.type in ("cuda", "cpu"):
        try:
            return torch.optim.AdamW(groups, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.AdamW(groups, **kwargs)


def training_module(model: GPTModel, device: torch.device, compiled: bool, dist: distributed.DistInfo) -> torch.nn.Module:
    """What the step calls: the model, compiled if asked, wrapped in DDP under torchrun."""
    configure_for_training(device)
    module: torch.nn.Module = model
    if compiled:
        module = torch.compile(module)  # type: ignore[assignment]
    if dist.enabled:
        module = distributed.wrap(module, device)
    return module


def clip_gradients(model: GPTModel, max_norm: float | None, device: torch.device) -> torch.Tensor:
    """The global gradient norm, after clipping to ``max_norm`` when it is set.

    The same arithmetic as ``clip_grad_norm_``, which multiplies every
    gradient by a coefficient clamped to 1 even when there is nothing to
    clip. On a CPU, where looking at the norm costs no device sync, that
    pass over all the gradients is skipped when it would multiply by 1.
    """
    params = [p for p in model.parameters() if p.grad is not None]
    get_total_norm = getattr(torch.nn.utils, "get_total_norm", None)
    if device.type != "cpu" or get_total_norm is None:
        return torch.nn.utils.clip_grad_norm_(params, max_norm or float("inf"))
    norm = get_total_norm([p.grad for p in params])
    if max_norm and float(max_norm / (norm + 1e-6)) < 1.0:
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
    return norm


class TrainStep:
    """The model's optimizer step, as the loop calls it once per ``grad_accum`` micro-batches."""

    def __init__(
        self,
        model: GPTModel,
        optimizer: torch.optim.Optimizer,
        config: TrainConfig,
        device: torch.device,
        dist: distributed.DistInfo,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.device = device
        self.dist = dist
        self.grad_accum = config.grad_accum
        self.grad_clip = config.grad_clip
        self.autocast = autocast_for(device, config.precision)
        self.module = training_module(model, device, config.compile, dist)

    def _grad_sync(self, last_micro_step: bool) -> contextlib.AbstractContextManager:
        """DDP all-reduces gradients on the last micro-batch of a step only."""
        if self.dist.enabled and not last_micro_step:
            return self.module.no_sync()  # type: ignore[operator]
        return contextlib.nullcontext()

    def _cast_regions(self) -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
        """With micro-batches under autocast: one region around them all, and autocast off for each backward.

        autocast keeps the low-precision copies of the weights it casts until
        its outermost region ends, so a region per micro-batch cast every
        weight again for each one. The weights change only at the optimizer
        step: one region per step casts each of them once, to the same bits.
        The backward passes run outside autocast, as they do without it.
        """
        if self.grad_accum > 1 and isinstance(self.autocast, torch.autocast):
            device_type = self.autocast.device
            return torch.autocast(device_type, dtype=self.autocast.fast_dtype), torch.autocast(device_type, enabled=False)
        return contextlib.nullcontext(), contextlib.nullcontext()

    def __call__(self, batches: Batches, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Take the next micro-batches and update the weights at ``lr``; the summed loss and the gradient norm.

        Both stay on the device: reading them is the step's one sync (see ``step_report``).
        """
        loss_sum = torch.zeros((), device=self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        step_region, backward_region = self._cast_regions()
        with step_region:
            for micro in range(self.grad_accum):
                inputs, targets = next(batches)
                inputs = inputs.to(self.device, non_blocking=True)
                targets = targets.to(self.device, non_blocking=True)
                with self._grad_sync(micro == self.grad_accum - 1):
                    loss = calc_loss_batch(self.module, inputs, targets, autocast=self.autocast) / self.grad_accum
                    with backward_region:
                        loss.backward()
                loss_sum += loss.detach()
        grad_norm = clip_gradients(self.model, self.grad_clip, self.device)
        self.optimizer.step()
        return loss_sum, grad_norm


class TrainFeed:
    """This rank's training batches, epoch by epoch; built ahead on a thread when a GPU waits for them."""

    def __init__(self, loader: BatchLoader, dist: distributed.DistInfo, *, prefetch: bool) -> None:
        self._loader = loader
        self._shard = (dist.rank, dist.world_size) if dist.enabled else None
        self._prefetch = prefetch
        self._prefetcher: Prefetcher | None = None

    def epoch(self, epoch: int, start: int) -> Batches:
        """The batches of ``epoch`` from batch ``start`` on; the previous epoch's thread is stopped."""
        self.close()
        batches = self._loader.batches(epoch, start, shard=self._shard)
        if self._prefetch:
            self._prefetcher = batches = Prefetcher(batches)
        return batches

    def close(self) -> None:
        if self._prefetcher is not None:
            self._prefetcher.close()
            self._prefetcher = None


@dataclass(frozen=True)
class StepReport:
    loss: float  # averaged over ranks
    grad_norm: float
    stop: bool  # some rank was asked to stop (always False on one process: its own flag is read directly)
    checkpoint: bool  # some rank was asked for a checkpoint (likewise)


def step_report(
    loss_sum: torch.Tensor, grad_norm: torch.Tensor, dist: distributed.DistInfo, *, stop: bool, checkpoint: bool
) -> StepReport:
    """The step's loss (averaged over ranks) and gradient norm, read in one device sync.

    Under torchrun the same all-reduce also agrees on stop and checkpoint
    requests, so every rank leaves the loop (or saves) at the same step.
    """
    if not dist.enabled:
        loss, norm = torch.stack([loss_sum.float(), grad_norm.float()]).tolist()
        return StepReport(loss, norm, stop=False, checkpoint=False)
    flags = [float(stop), float(checkpoint)]
    packed = torch.cat([loss_sum.float().reshape(1), torch.tensor(flags, device=loss_sum.device)])
    loss_total, stop_sum, save_sum = distributed.all_reduce_sum(packed).tolist()
    return StepReport(loss_total / dist.world_size, float(grad_norm), stop=stop_sum > 0, checkpoint=save_sum > 0)
