"""Faster CPU versions of standard ops the model runs: a linear layer, dropout, attention with dropout, one-query attention.

Each computes what its plain PyTorch counterpart computes; they exist because
on a CPU the plain ops take a slow path (a matrix-matrix kernel for a single
row, a one-by-one mask sampler). On GPUs and under the compiler they hand over
to PyTorch.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def linear(x: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """``layer(x)``: a linear layer or a decoding copy's stand-in for one.

    The stand-ins are int8 weights (gpt_tui.engine.quantize) and bf16 weights
    reordered for oneDNN (gpt_tui.engine.packed_linear). A plain bf16 row goes
    through ``F.linear`` too: oneDNN streams bf16 weights faster than
    ``torch.mv`` (measured 15.1 vs 8.3 GB/s on one thread).
    """
    return layer(x)


def dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout for training; on a CPU with a fast sampler for the mask.

    torch's CPU sampler draws every Bernoulli variable from its Mersenne twister
    one by one, which costs more than the rest of a dropout layer several times
    over. Here each element gets 16 random bits from numpy's SFC64 generator,
    seeded from torch's global generator, so runs and resumed runs stay exactly
    reproducible; an element is kept with probability 1 - p rounded to 1/65536.
    """
    if p <= 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0 or torch.compiler.is_compiling():  # GPUs and the compiler have fast samplers
        return F.dropout(x, p, training=True)
    n = x.numel()
    seed = int(torch.randint(0, 2**62, (1,)))
    words = np.random.SFC64(seed).random_raw((n + 3) // 4)
    lanes = torch.from_numpy(words.view(np.int16)[:n]).view(x.shape)
    keep = lanes < round((1.0 - p) * 65536) - 32768  # int16 lanes are uniform over [-32768, 32767]
    return x * keep.to(x.dtype).mul_(1.0 / (1.0 - p))


def causal_attention_with_dropout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: float) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + causal mask) with dropout, then v: what SDPA computes, for CPU training.

    The CPU's fused attention kernels have no dropout, so SDPA falls back to
    this same sequence of ops but with torch's slow mask sampler.
    """
    b, h, t, d = q.shape
    future = torch.full((t, t), float("-inf"), dtype=q.dtype, device=q.device).triu_(1)
    # One baddbmm scales the scores and adds the mask in the same pass.
    keys_t = k.reshape(b * h, t, d).transpose(1, 2)
    scores = torch.baddbmm(future, q.reshape(b * h, t, d), keys_t, alpha=1.0 / math.sqrt(d))
    weights = torch.softmax(scores.view(b, h, t, t), dim=-1)
    return dropout(weights, p) @ v


def one_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Attention of one new query over the cached keys, computed in the cache's dtype (fp32 on a CPU).

    With a single query bf16 SDPA on a CPU costs several times fp32 (measured 6.6x
    at 313 keys, 7.8x at 1,000), so the query is raised to the keys' precision and
    the result handed back in the query's.
    """
    y = F.scaled_dot_product_attention(q.to(k.dtype), k, v)
    return y.to(q.dtype)
