"""Faster CPU versions of three standard ops the model runs: a linear layer, dropout, attention with dropout.

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


def linear(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """``layer(x)``; one bf16 row on a CPU (decoding a single sequence) takes the matrix-vector
    kernel, which streams bf16 weights about 1.5x faster than the matrix-matrix one."""
    weight = layer.weight
    one_row = x.numel() == x.shape[-1]
    if one_row and x.dtype == weight.dtype == torch.bfloat16 and x.device.type == "cpu":
        row = x.reshape(-1)
        y = torch.mv(weight, row) if layer.bias is None else torch.addmv(layer.bias, weight, row)
        return y.view(*x.shape[:-1], weight.shape[0])
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
