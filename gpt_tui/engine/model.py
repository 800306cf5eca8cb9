"""The GPT-2 model family: config, presets, and the transformer itself.

The layers read as chapter 4 of the book writes them; where a CPU needs a
faster route through a standard op, the call goes to ``kernels``, and the
training loss to ``fused_loss``.

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

from gpt_tui.engine import kernels
from gpt_tui.engine.fused_loss import linear_cross_entropy
from gpt_tui.engine.presets import PRESET_SIZES, check_context_length, resolve_preset
from gpt_tui.errors import UserError


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


# Names and sizes live in ``presets`` (torch-free, for forms and parsers); here they become configs.
PRESETS: dict[str, GPTConfig] = {name: GPTConfig(**sizes) for name, sizes in PRESET_SIZES.items()}


def preset_names() -> list[str]:
    return list(PRESETS)


def get_preset(name: str, **overrides: Any) -> GPTConfig:
    """A named configuration, with optional overrides (``context_length=256``...)."""
    key = resolve_preset(name)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    ctx = overrides.get("context_length")
    if ctx is not None:
        check_context_length(ctx)
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


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.head_dim = config.emb_dim // config.n_heads
        self.qkv = nn.Linear(config.emb_dim, 3 * config.emb_dim, bias=config.qkv_bias)
        self.proj = nn.Linear(config.emb_dim, config.emb_dim)
        self.drop_rate = config.drop_rate

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = kernels.linear(x, self.qkv).view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        dropout = self.drop_rate if self.training else 0.0
        if cache is None and dropout > 0.0 and x.device.type == "cpu" and not torch.compiler.is_compiling():
            y = kernels.causal_attention_with_dropout(q, k, v, dropout)
        elif cache is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=t > 1)
        else:
            start = cache.length
            end = start + t
            cache.keys[layer].narrow(2, start, t).copy_(k)
            cache.values[layer].narrow(2, start, t).copy_(v)
            if start == 0:  # a prefill sees only its own keys: the uncached computation, in the model's dtype
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=t > 1)
            elif t == 1:
                y = kernels.one_query_attention(q, cache.keys[layer][:, :, :end], cache.values[layer][:, :, :end])
            else:  # query i (absolute position start+i) sees keys 0..start+i
                rows = torch.arange(start, end, device=x.device).unsqueeze(1)
                mask = torch.arange(end, device=x.device).unsqueeze(0) <= rows
                keys, values = cache.keys[layer][:, :, :end], cache.values[layer][:, :, :end]
                y = F.scaled_dot_product_attention(q.to(keys.dtype), keys, values, attn_mask=mask).to(q.dtype)
        y = kernels.linear(y.transpose(1, 2).reshape(b, t, d), self.proj)
        return kernels.dropout(y, self.drop_rate) if self.training else y


class FeedForward(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.emb_dim, 4 * config.emb_dim)
        self.proj = nn.Linear(4 * config.emb_dim, config.emb_dim)
        self.drop = nn.Dropout(config.drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = kernels.linear(F.gelu(kernels.linear(x, self.fc), approximate="tanh"), self.proj)
        return kernels.dropout(y, self.drop.p) if self.training else y


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
        tie_head(self)
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
        """A cache in fp32 on a CPU, where one-query attention is fastest in fp32; else the weights' dtype."""
        weight = self.tok_emb.weight
        default = torch.float32 if weight.device.type == "cpu" else weight.dtype
        return KVCache(self.config, batch_size, weight.device, dtype or default)

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
        without materialising fp32 logits (see ``fused_loss.linear_cross_entropy``); the loss
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
            x = kernels.dropout(x, self.drop.p)
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i)
        if cache is not None:
            cache.length = start + t
        if last_only:
            x = x[:, -1:, :]
        x = self.ln_f(x)
        if targets is None:
            return kernels.linear(x, self.head)
        if torch.compiler.is_compiling():  # the compiler fuses the plain loss itself
            return F.cross_entropy(self.head(x).flatten(0, 1).float(), targets.flatten())
        # A vocabulary padded to a multiple of 64 keeps GPU matmuls aligned; logits never show the padding.
        pad_to = 64 if x.device.type == "cuda" else 1
        return linear_cross_entropy(x, self.head.weight, targets, pad_to=pad_to)


def tie_head(model: GPTModel) -> GPTModel:
    """Make the head share the token embedding's parameter when the config ties them.

    Moving or re-allocating a model (``.to``, ``to_empty``, ``load_state_dict(assign=True)``)
    replaces each module's parameter on its own, which quietly unties a shared one; each
    such step is followed by this call.
    """
    if model.config.tie_weights:
        model.head.weight = model.tok_emb.weight
    return model
