"""The head's cross-entropy computed from hidden states, without fp32 copies of the logits.

The head's logits are the largest tensor of a step (tokens x 50257), and the
textbook ``cross_entropy(logits.float(), targets)`` makes several full-size
fp32 copies of them (the upcast, log-softmax, its gradient). ``linear_cross_entropy``
computes the same loss from the final hidden states and the head weight: the
logits exist once, in the matmul's own precision, and are turned into their
gradient in place, a cache-sized slice at a time. The gradients are finished
in the forward pass, so the backward pass only scales them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

# fp32 elements of one slice of logits: ~2 MB on a CPU (stays in cache),
# ~512 MB on a GPU (few kernel launches per step).
CPU_SLICE_ELEMENTS = 1 << 19
GPU_SLICE_ELEMENTS = 1 << 27
# Vocabulary rows of the head's weight gradient made per matmul on a CPU (see ``_grad_weight``).
CPU_GRAD_WEIGHT_ROWS = 8192


def _compute_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The matmul's dtype: autocast's when it is on (as ``nn.Linear`` would run), else the inputs'."""
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return torch.promote_types(hidden.dtype, weight.dtype)


def _losses_and_grad_logits(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    compute_dtype: torch.dtype,
    pad_to: int,
    want_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed loss; and, with ``want_grad``, the logits buffer overwritten by d(mean loss)/d(logits)."""
    n, vocab = hidden.shape[0], weight.shape[0]
    h = hidden.to(compute_dtype)
    w = weight.to(compute_dtype)
    if pad_to > 1 and vocab % pad_to:
        # Rows of zeros up to a multiple of pad_to keep the GPU matmul's output aligned; their columns are ignored.
        w = F.pad(w, (0, 0, 0, pad_to - vocab % pad_to))
    logits = h @ w.t()
    slice_elements = GPU_SLICE_ELEMENTS if hidden.device.type == "cuda" else CPU_SLICE_ELEMENTS
    rows = max(1, slice_elements // logits.shape[1])
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    scale = 1.0 / n
    for start in range(0, n, rows):
        end = min(start + rows, n)
        view = logits[start:end, :vocab]
        target = targets[start:end].unsqueeze(1)
        picked = view.gather(1, target).float()
        peak = view.amax(dim=1, keepdim=True).float()
        # exp(logit - max) in fp32, computed once for both the loss and the softmax; subtracting
        # upcasts bf16 logits on the way, and fp32 logits that become gradients are worked on in place.
        block = view.sub_(peak) if want_grad and view.dtype == torch.float32 else torch.sub(view, peak)
        block.exp_()
        mass = block.sum(dim=1, keepdim=True)
        total += (mass.log() + peak - picked).sum()
        if want_grad:
            # (softmax - one_hot) / n = (exp - mass * one_hot) * (1 / (n * mass)), written back in the logits' dtype
            block.scatter_add_(1, target, -mass)
            torch.mul(block, scale / mass, out=view)
    if want_grad and logits.shape[1] > vocab:
        logits[:, vocab:] = 0
    return total, logits, h, w


def _grad_weight(grad_logits: torch.Tensor, h: torch.Tensor, vocab: int, dtype: torch.dtype) -> torch.Tensor:
    """``(grad_logits.T @ h)[:vocab]`` in ``dtype``.

    Under bf16 autocast on a CPU the product is made a slice of vocabulary rows
    at a time and each slice is widened to fp32 while it is still in cache:
    one whole bf16 product widened afterwards is an extra pass over a
    head-sized tensor, and the one large matmul runs slower besides (measured
    270 vs 350 ms for 512 tokens x 50257 on one thread). Each element is the
    same dot product either way.
    """
    if h.device.type != "cpu" or h.dtype == dtype:
        return (grad_logits.t() @ h)[:vocab].to(dtype)
    out = torch.empty(vocab, h.shape[1], dtype=dtype, device=h.device)
    for start in range(0, vocab, CPU_GRAD_WEIGHT_ROWS):
        end = min(start + CPU_GRAD_WEIGHT_ROWS, vocab)
        out[start:end] = grad_logits[:, start:end].t() @ h
    return out


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        compute_dtype: torch.dtype,
        pad_to: int,
    ) -> torch.Tensor:
        device_type = hidden.device.type
        with torch.autocast(device_type=device_type, enabled=False):
            total, grad_logits, h, w = _losses_and_grad_logits(hidden, weight, targets, compute_dtype, pad_to, True)
            vocab = weight.shape[0]
            ctx.grad_hidden = (grad_logits @ w).to(hidden.dtype) if ctx.needs_input_grad[0] else None
            ctx.grad_weight = _grad_weight(grad_logits, h, vocab, weight.dtype) if ctx.needs_input_grad[1] else None
        return total / hidden.shape[0]

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        grad_hidden, grad_weight = ctx.grad_hidden, ctx.grad_weight
        ctx.grad_hidden = ctx.grad_weight = None
        # A plain loss.backward() passes 1.0: skip a pass over the head-sized gradient
        # (a GPU is not asked: reading the value would wait for it).
        if grad_output.device.type != "cpu" or float(grad_output) != 1.0:
            for grad in (grad_hidden, grad_weight):
                if grad is not None:
                    grad.mul_(grad_output.to(grad.dtype))  # these tensors belong to this call alone
        return grad_hidden, grad_weight, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *, pad_to: int = 1
) -> torch.Tensor:
    """Mean cross-entropy of ``hidden @ weight.T`` against ``targets`` without fp32 copies of the logits.

    ``hidden`` is ``(..., d)``, ``weight`` ``(vocab, d)``, ``targets`` the matching
    ``(...)`` ids. Under autocast the matmuls run in autocast's dtype, as the
    head's ``nn.Linear`` would; the softmax is always fp32. ``pad_to`` pads the
    vocabulary dimension of the matmul (64 suits GPU tensor cores); the
    result does not depend on it.
    """
    hidden = hidden.reshape(-1, hidden.shape[-1])
    targets = targets.reshape(-1)
    if targets.shape[0] != hidden.shape[0]:
        raise ValueError(f"{targets.shape[0]} targets for {hidden.shape[0]} hidden states")
    compute_dtype = _compute_dtype(hidden, weight)
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return _LinearCrossEntropy.apply(hidden, weight, targets, compute_dtype, pad_to)
    with torch.autocast(device_type=hidden.device.type, enabled=False):
        total, _, _, _ = _losses_and_grad_logits(hidden, weight, targets, compute_dtype, pad_to, False)
    return total / hidden.shape[0]
