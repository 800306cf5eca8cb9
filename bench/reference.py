"""The chapter-5 code as a user first writes it: the baseline every bench compares against.

Written plainly on purpose: separate query/key/value projections, attention as
an explicit masked softmax, a hand-written LayerNorm and tanh GELU, the default
``torch.optim.AdamW`` and a generate loop that re-runs the whole window for
every new token. Nothing here is tuned; making it faster would move the
baseline.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm(nn.Module):
    def __init__(self, emb_dim: int) -> None:
        super().__init__()
        self.eps = 1e-5
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)
        return self.scale * (x - mean) / torch.sqrt(var + self.eps) + self.shift


class GELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


class MultiHeadAttention(nn.Module):
    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.d_out = d_out
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("mask", torch.triu(torch.ones(context_length, context_length), diagonal=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, num_tokens, _ = x.shape
        keys = self.W_key(x).view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
        queries = self.W_query(x).view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
        values = self.W_value(x).view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
        scores = queries @ keys.transpose(2, 3)
        mask = self.mask.bool()[:num_tokens, :num_tokens]
        scores.masked_fill_(mask, -torch.inf)
        weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)
        weights = self.dropout(weights)
        context = (weights @ values).transpose(1, 2).contiguous().view(b, num_tokens, self.d_out)
        return self.out_proj(context)


class FeedForward(nn.Module):
    def __init__(self, emb_dim: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(emb_dim, 4 * emb_dim), GELU(), nn.Linear(4 * emb_dim, emb_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class TransformerBlock(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.att = MultiHeadAttention(
            cfg["emb_dim"], cfg["emb_dim"], cfg["context_length"], cfg["drop_rate"], cfg["n_heads"], cfg["qkv_bias"]
        )
        self.ff = FeedForward(cfg["emb_dim"])
        self.norm1 = LayerNorm(cfg["emb_dim"])
        self.norm2 = LayerNorm(cfg["emb_dim"])
        self.drop_shortcut = nn.Dropout(cfg["drop_rate"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.drop_shortcut(self.att(self.norm1(x)))
        x = x + shortcut
        shortcut = x
        x = self.drop_shortcut(self.ff(self.norm2(x)))
        return x + shortcut


class ReferenceGPT(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(cfg["vocab_size"], cfg["emb_dim"])
        self.pos_emb = nn.Embedding(cfg["context_length"], cfg["emb_dim"])
        self.drop_emb = nn.Dropout(cfg["drop_rate"])
        self.trf_blocks = nn.Sequential(*[TransformerBlock(cfg) for _ in range(cfg["n_layers"])])
        self.final_norm = LayerNorm(cfg["emb_dim"])
        self.out_head = nn.Linear(cfg["emb_dim"], cfg["vocab_size"], bias=False)

    def forward(self, in_idx: torch.Tensor) -> torch.Tensor:
        _, seq_len = in_idx.shape
        x = self.tok_emb(in_idx) + self.pos_emb(torch.arange(seq_len, device=in_idx.device))
        x = self.drop_emb(x)
        x = self.trf_blocks(x)
        return self.out_head(self.final_norm(x))


def reference_config(
    emb_dim: int = 768, n_layers: int = 12, n_heads: int = 12, context_length: int = 256,
    drop_rate: float = 0.1, qkv_bias: bool = False, vocab_size: int = 50257,
) -> dict[str, Any]:
    """The book's GPT_CONFIG_124M (context 256 in chapter 5) as a dict, as the book keeps it."""
    return {
        "vocab_size": vocab_size, "context_length": context_length, "emb_dim": emb_dim,
        "n_heads": n_heads, "n_layers": n_layers, "drop_rate": drop_rate, "qkv_bias": qkv_bias,
    }


def calc_loss_batch(input_batch: torch.Tensor, target_batch: torch.Tensor, model: nn.Module) -> torch.Tensor:
    logits = model(input_batch)
    return F.cross_entropy(logits.flatten(0, 1), target_batch.flatten())


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """One step of the book's ``train_model_simple`` loop."""
    optimizer.zero_grad()
    loss = calc_loss_batch(inputs, targets, model)
    loss.backward()
    optimizer.step()
    return loss.item()


def make_optimizer(model: nn.Module, lr: float = 4e-4, weight_decay: float = 0.1) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)


def generate_text_simple(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, context_size: int) -> torch.Tensor:
    """Greedy decoding with no cache: the whole window goes through the model for each token."""
    for _ in range(max_new_tokens):
        idx_cond = idx[:, -context_size:]
        with torch.no_grad():
            logits = model(idx_cond)
        logits = logits[:, -1, :]
        idx_next = torch.argmax(logits, dim=-1, keepdim=True)
        idx = torch.cat((idx, idx_next), dim=1)
    return idx


# --- weights shared with gpt-tui, so both sides start from the same model ---------------

def to_gpt_tui_state(ref: ReferenceGPT) -> dict[str, torch.Tensor]:
    """The reference's weights under gpt-tui's parameter names (q, k, v stacked into one matrix)."""
    state: dict[str, torch.Tensor] = {
        "tok_emb.weight": ref.tok_emb.weight, "pos_emb.weight": ref.pos_emb.weight,
        "ln_f.weight": ref.final_norm.scale, "ln_f.bias": ref.final_norm.shift,
        "head.weight": ref.out_head.weight,
    }
    for i, block in enumerate(ref.trf_blocks):
        att = block.att
        p = f"blocks.{i}."
        state[p + "ln1.weight"], state[p + "ln1.bias"] = block.norm1.scale, block.norm1.shift
        state[p + "ln2.weight"], state[p + "ln2.bias"] = block.norm2.scale, block.norm2.shift
        state[p + "attn.qkv.weight"] = torch.cat([att.W_query.weight, att.W_key.weight, att.W_value.weight])
        if att.W_query.bias is not None:
            state[p + "attn.qkv.bias"] = torch.cat([att.W_query.bias, att.W_key.bias, att.W_value.bias])
        state[p + "attn.proj.weight"], state[p + "attn.proj.bias"] = att.out_proj.weight, att.out_proj.bias
        fc, proj = block.ff.layers[0], block.ff.layers[2]
        state[p + "mlp.fc.weight"], state[p + "mlp.fc.bias"] = fc.weight, fc.bias
        state[p + "mlp.proj.weight"], state[p + "mlp.proj.bias"] = proj.weight, proj.bias
    return {k: v.detach().clone() for k, v in state.items()}


def from_gpt_tui_state(ref: ReferenceGPT, state: dict[str, torch.Tensor]) -> None:
    """Load gpt-tui weights into the reference model (q, k, v split back apart; a tied head copied)."""
    d = ref.tok_emb.weight.shape[1]
    head = state.get("head.weight", state["tok_emb.weight"])
    with torch.no_grad():
        ref.tok_emb.weight.copy_(state["tok_emb.weight"])
        ref.pos_emb.weight.copy_(state["pos_emb.weight"])
        ref.final_norm.scale.copy_(state["ln_f.weight"])
        ref.final_norm.shift.copy_(state["ln_f.bias"])
        ref.out_head.weight.copy_(head)
        for i, block in enumerate(ref.trf_blocks):
            p = f"blocks.{i}."
            att = block.att
            q, k, v = state[p + "attn.qkv.weight"].split(d)
            att.W_query.weight.copy_(q)
            att.W_key.weight.copy_(k)
            att.W_value.weight.copy_(v)
            if att.W_query.bias is not None:
                qb, kb, vb = state[p + "attn.qkv.bias"].split(d)
                att.W_query.bias.copy_(qb)
                att.W_key.bias.copy_(kb)
                att.W_value.bias.copy_(vb)
            att.out_proj.weight.copy_(state[p + "attn.proj.weight"])
            att.out_proj.bias.copy_(state[p + "attn.proj.bias"])
            block.norm1.scale.copy_(state[p + "ln1.weight"])
            block.norm1.shift.copy_(state[p + "ln1.bias"])
            block.norm2.scale.copy_(state[p + "ln2.weight"])
            block.norm2.shift.copy_(state[p + "ln2.bias"])
            fc, proj = block.ff.layers[0], block.ff.layers[2]
            fc.weight.copy_(state[p + "mlp.fc.weight"])
            fc.bias.copy_(state[p + "mlp.fc.bias"])
            proj.weight.copy_(state[p + "mlp.proj.weight"])
            proj.bias.copy_(state[p + "mlp.proj.bias"])
