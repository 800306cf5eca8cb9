"""The GPT-2 model family: config, presets, and the transformer itself.

Parameter names (the state-dict layout every loader maps onto):

    tok_emb.weight                      (vocab, d)
    pos_emb.weight                      (context, d)
    blocks.N.ln1.{weight,bias}
    blocks.N.attn.qkv.{weight,bias}     (3d, d): q, k, v stacked in that order
    blocks.N.attn.proj.{weight,bias}    (d, d)
    blocks.N.ln2.{weight,bias}
    blocks.N.mlp.fc.{weight,bias}       (4d, d)
    blocks.N.mlp.proj.{weight,bias}     (d, 4d)
    ln_f.{weight,bias}
    head.weight                         (vocab, d), the same tensor as tok_emb.weight when tied
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gpt_tui.errors import UserError

MAX_CONTEXT = 1024


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 50257
    context_length: int = 1024
    emb_dim: int = 768
    n_layers: int = 12
    n_heads: int = 12
    drop_rate: float = 0.1
    qkv_bias: bool = False
    tie_weights: bool = False

    def __post_init__(self) -> None:
        if self.emb_dim % self.n_heads:
            raise UserError(
                f"emb_dim {self.emb_dim} is not divisible by n_heads {self.n_heads}; "
                "pick a width that is a multiple of the head count."
            )
        if not 1 <= self.context_length:
            raise UserError(f"context_length must be at least 1, got {self.context_length}.")
        if not 0.0 <= self.drop_rate < 1.0:
            raise UserError(f"drop_rate must be in [0, 1), got {self.drop_rate}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GPTConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def with_(self, **changes: Any) -> "GPTConfig":
        return replace(self, **changes)


# The four GPT-2 sizes use the book's from-scratch settings (no q/k/v bias,
# untied head, dropout 0.1); imported OpenAI weights set bias and tying from the files.
PRESETS: dict[str, GPTConfig] = {
    "tiny": GPTConfig(context_length=128, emb_dim=128, n_layers=2, n_heads=4, drop_rate=0.0),
    "mini": GPTConfig(context_length=256, emb_dim=256, n_layers=4, n_heads=4, drop_rate=0.1),
    "gpt2-small": GPTConfig(emb_dim=768, n_layers=12, n_heads=12),
    "gpt2-medium": GPTConfig(emb_dim=1024, n_layers=24, n_heads=16),
    "gpt2-large": GPTConfig(emb_dim=1280, n_layers=36, n_heads=20),
    "gpt2-xl": GPTConfig(emb_dim=1600, n_layers=48, n_heads=25),
}
ALIASES = {"gpt2": "gpt2-small", "124M": "gpt2-small", "355M": "gpt2-medium", "774M": "gpt2-large", "1558M": "gpt2-xl"}
DEFAULT_PRESET = "tiny"


def preset_names() -> list[str]:
    return list(PRESETS)


def get_preset(name: str, **overrides: Any) -> GPTConfig:
    """A named configuration, with optional overrides (``context_length=256``...)."""
    key = ALIASES.get(name, name)
    if key not in PRESETS:
        choices = ", ".join(list(PRESETS) + list(ALIASES))
        raise UserError(f"Unknown model preset {name!r}; choose one of: {choices}.")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    ctx = overrides.get("context_length")
    if ctx is not None and not 1 <= ctx <= MAX_CONTEXT:
        raise UserError(f"context_length {ctx} is outside 1..{MAX_CONTEXT}, the most GPT-2's position table allows.")
    return PRESETS[key].with_(**overrides)


class KVCache:
    """Preallocated keys and values for every layer, so a decode step never concatenates."""

    def __init__(self, config: GPTConfig, batch_size: int, device: torch.device, dtype: torch.dtype) -> None:
        head_dim = config.emb_dim // config.n_heads
        shape = (batch_size, config.n_heads, config.context_length, head_dim)
        self.keys = [torch.empty(shape, device=device, dtype=dtype) for _ in range(config.n_layers)]
        self.values = [torch.empty(shape, device=device, dtype=dtype) for _ in range(config.n_layers)]
        self.length = 0  # positions filled so far
        self.capacity = config.context_length

    def reset(self) -> None:
        self.length = 0

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` of the batch (beam search reshuffles its beams)."""
        for i in range(len(self.keys)):
            self.keys[i] = self.keys[i].index_select(0, index)
            self.values[i] = self.values[i].index_select(0, index)


def _linear(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """``layer(x)``; one bf16 row on a CPU (decoding a single sequence) takes the matrix-vector
    kernel, which streams bf16 weights about 1.5x faster than the matrix-matrix one."""
    weight = layer.weight
    one_row = x.numel() == x.shape[-1]
    if one_row and x.dtype == weight.dtype == torch.bfloat16 and x.device.type == "cpu":
        row = x.reshape(-1)
        y = torch.mv(weight, row) if layer.bias is None else torch.addmv(layer.bias, weight, row)
        return y.view(*x.shape[:-1], weight.shape[0])
    return layer(x)


def _dropout(x: torch.Tensor, p: float) -> torch.Tensor:
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
    import numpy as np

    n = x.numel()
    seed = int(torch.randint(0, 2**62, (1,)))
    words = np.random.SFC64(seed).random_raw((n + 3) // 4)
    lanes = torch.from_numpy(words.view(np.int16)[:n]).view(x.shape)
    keep = lanes < round((1.0 - p) * 65536) - 32768  # int16 lanes are uniform over [-32768, 32767]
    return x * keep.to(x.dtype).mul_(1.0 / (1.0 - p))


def _causal_attention_with_dropout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: float) -> torch.Tensor:
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
    return _dropout(weights, p) @ v


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.head_dim = config.emb_dim // config.n_heads
        self.qkv = nn.Linear(config.emb_dim, 3 * config.emb_dim, bias=config.qkv_bias)
        self.proj = nn.Linear(config.emb_dim, config.emb_dim)
        self.drop_rate = config.drop_rate
        self.resid_drop = nn.Dropout(config.drop_rate)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = _linear(x, self.qkv).view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        dropout = self.drop_rate if self.training else 0.0
        if cache is None and dropout > 0.0 and x.device.type == "cpu" and not torch.compiler.is_compiling():
            y = _causal_attention_with_dropout(q, k, v, dropout)
        elif cache is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=t > 1)
        else:
            start = cache.length
            end = start + t
            cache.keys[layer].narrow(2, start, t).copy_(k)
            cache.values[layer].narrow(2, start, t).copy_(v)
            k = cache.keys[layer].narrow(2, 0, end)
            v = cache.values[layer].narrow(2, 0, end)
            if t == 1:
                mask = None
            else:  # query i (absolute position start+i) sees keys 0..start+i
                rows = torch.arange(start, end, device=x.device).unsqueeze(1)
                mask = torch.arange(end, device=x.device).unsqueeze(0) <= rows
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        y = _linear(y.transpose(1, 2).reshape(b, t, d), self.proj)
        return _dropout(y, self.drop_rate) if self.training else y


class FeedForward(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.emb_dim, 4 * config.emb_dim)
        self.proj = nn.Linear(4 * config.emb_dim, config.emb_dim)
        self.drop = nn.Dropout(config.drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _linear(F.gelu(_linear(x, self.fc), approximate="tanh"), self.proj)
        return _dropout(y, self.drop.p) if self.training else y


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.emb_dim, eps=1e-5)
        self.attn = CausalSelfAttention(config)
        self.ln2 = nn.LayerNorm(config.emb_dim, eps=1e-5)
        self.mlp = FeedForward(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache, layer)
        return x + self.mlp(self.ln2(x))


INIT_SCHEMES = ("book", "gpt2")


class GPTModel(nn.Module):
    def __init__(self, config: GPTConfig, init: str = "gpt2") -> None:
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.emb_dim)
        self.pos_emb = nn.Embedding(config.context_length, config.emb_dim)
        self.drop = nn.Dropout(config.drop_rate)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.emb_dim, eps=1e-5)
        self.head = nn.Linear(config.emb_dim, config.vocab_size, bias=False)
        if config.tie_weights:
            self.head.weight = self.tok_emb.weight
        self.reset_parameters(init)

    def reset_parameters(self, init: str = "gpt2") -> None:
        """Fresh weights: ``gpt2`` or ``book``.

        ``gpt2`` is GPT-2's scheme: N(0, 0.02), residual projections scaled by
        1/sqrt(2 * layers); it suits long pre-training. ``book`` is PyTorch's
        default initialisation, which the book's model uses (embeddings
        N(0, 1)); on a short text it memorises much faster, which is what
        chapter 5's table shows. A tied head always uses ``gpt2``.
        """
        if init not in INIT_SCHEMES:
            raise UserError(f"Unknown init {init!r}; choose one of: {', '.join(INIT_SCHEMES)}.")
        if init == "book" and not self.config.tie_weights:
            for module in self.modules():
                if isinstance(module, (nn.Linear, nn.Embedding, nn.LayerNorm)):
                    module.reset_parameters()
            return
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layers)
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, mean=0.0, std=residual_std)
            nn.init.normal_(block.mlp.proj.weight, mean=0.0, std=residual_std)

    def num_parameters(self) -> int:
        """Unique parameters (a tied head counts once)."""
        return sum(p.numel() for p in self.parameters())

    def new_cache(self, batch_size: int, dtype: torch.dtype | None = None) -> KVCache:
        weight = self.tok_emb.weight
        return KVCache(self.config, batch_size, weight.device, dtype or weight.dtype)

    def forward(
        self,
        idx: torch.Tensor,
        cache: KVCache | None = None,
        last_only: bool = False,
        targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits ``(B, T, vocab)`` for ids ``(B, T)``; with ``last_only`` just ``(B, 1, vocab)``.

        With a cache the ids continue the cached sequence at position ``cache.length``.
        With ``targets`` ``(B, T)`` it returns the mean cross-entropy instead, computed
        without materialising fp32 logits (see ``loss.linear_cross_entropy``); the loss
        is taken inside ``forward`` so that wrappers such as DDP see the whole step.
        """
        b, t = idx.shape
        start = cache.length if cache is not None else 0
        if start + t > self.config.context_length:
            raise ValueError(
                f"sequence of {start + t} tokens exceeds the model's context of {self.config.context_length}"
            )
        x = self.tok_emb(idx) + self.pos_emb.weight[start : start + t]  # the same rows pos_emb(arange) gives
        if self.training:
            x = _dropout(x, self.drop.p)
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i)
        if cache is not None:
            cache.length = start + t
        if last_only:
            x = x[:, -1:, :]
        x = self.ln_f(x)
        if targets is None:
            return _linear(x, self.head)
        if torch.compiler.is_compiling():  # the compiler fuses the plain loss itself
            return F.cross_entropy(self.head(x).flatten(0, 1).float(), targets.flatten())
        from gpt_tui.engine.loss import linear_cross_entropy

        # A vocabulary padded to a multiple of 64 keeps GPU matmuls aligned; logits never show the padding.
        pad_to = 64 if x.device.type == "cuda" else 1
        return linear_cross_entropy(x, self.head.weight, targets, pad_to=pad_to)
