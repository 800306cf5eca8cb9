"""Picking the next token from the last position's logits: greedy, temperature, top-k and top-p.

Sampling draws from a private ``torch.Generator`` on the CPU: the global RNG
(and so a training run) is never disturbed, and one seed gives the same tokens
on every device.
"""

from __future__ import annotations

import torch

from gpt_tui.engine.sampling_config import SamplingConfig
from gpt_tui.errors import UserError

# top-p counts a cumulative mass within this much of p as having reached p,
# so 0.5 + 0.2 "reaches" 0.7 despite float rounding.
TOP_P_TOLERANCE = 1e-6


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set every logit outside the top-k and then the top-p nucleus to -inf, row by row.

    Top-k keeps exactly k tokens; among equal logits the lower token id wins.
    Top-p keeps the most probable tokens until their probability reaches p
    (always at least one).
    """
    out = logits
    vocab = logits.shape[-1]
    if top_k is not None and top_k < vocab:
        order = torch.sort(logits, dim=-1, descending=True, stable=True).indices
        out = out.scatter(-1, order[..., top_k:], float("-inf"))
    if top_p is not None and top_p < 1.0:
        probs = torch.softmax(out.double(), dim=-1)
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
        mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        drop_sorted = mass_before >= top_p - TOP_P_TOLERANCE
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        out = out.masked_fill(drop, float("-inf"))
    return out


def new_generator(seed: int | None) -> torch.Generator:
    """A CPU generator seeded with ``seed``, or with fresh entropy when it is None."""
    generator = torch.Generator(device="cpu")
    if seed is None:
        generator.seed()  # fresh entropy, without touching the global RNG
    else:
        generator.manual_seed(seed)
    return generator


def check_finite(logits: torch.Tensor) -> None:
    """Refuse logits with a NaN or inf in them: the weights have diverged, and any pick would be noise."""
    # One reduction instead of isfinite's three passes: a NaN or inf anywhere makes the sum NaN or inf
    # (finite logits large enough to overflow the sum belong to a diverged model too).
    if not bool(torch.isfinite(logits.sum())):
        raise UserError(
            "The model produced NaN or infinite logits, so its weights have probably diverged; "
            "load an earlier checkpoint or train with a lower learning rate."
        )


def pick_next(logits: torch.Tensor, sampling: SamplingConfig, generator: torch.Generator) -> torch.Tensor:
    """Next token ids ``(B,)`` from last-position logits ``(B, V)``."""
    check_finite(logits)
    if sampling.greedy:  # bf16 -> fp32 is exact, so the argmax needs no upcast
        return logits.argmax(dim=-1)
    logits = logits.float()
    # Shifting by the max keeps a tiny temperature from overflowing to inf.
    scaled = (logits - logits.max(dim=-1, keepdim=True).values) / sampling.temperature
    probs = torch.softmax(filter_logits(scaled, sampling.top_k, sampling.top_p), dim=-1)
    picked = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1)
    return picked.to(logits.device)
