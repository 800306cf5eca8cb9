"""The book's chapter-4 forward pass over gpt-tui's parameters: the plain path the book recipe trains with.

gpt-tui's own forward fuses attention, LayerNorm, GELU and the loss; each is
the same function, but rounds differently, and dropout draws its masks in
other shapes. Over a run those last bits reach a printed digit. This path does
what the book's modules do, op for op: separate query, key and value products,
a masked softmax with dropout on the weights, hand-written LayerNorm and GELU,
one ``nn.Dropout`` after the embeddings and after each residual branch, and the
loss as ``cross_entropy`` of the full logits. Its masks are torch's, drawn in
the book's order.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gpt_tui.engine.model import GPTModel

_SQRT_2_OVER_PI = torch.sqrt(torch.tensor(2.0 / math.pi))


def _layer_norm(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    return scale * ((x - mean) / torch.sqrt(var + eps)) + shift


def _gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1 + torch.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * torch.pow(x, 3))))


def _dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    return F.dropout(x, p, training)


def _attention(block: torch.nn.Module, x: torch.Tensor, n_heads: int, p: float, training: bool) -> torch.Tensor:
    b, t, d = x.shape
    head_dim = d // n_heads
    qkv = block.attn.qkv
    bias = qkv.bias
    parts = {}
    for third in (1, 0, 2):  # the book's W_key, W_query, W_value, in the order it calls them (autograd sums so)
        rows = slice(third * d, (third + 1) * d)
        parts[third] = F.linear(x, qkv.weight[rows], None if bias is None else bias[rows])
    queries, keys, values = (parts[i].view(b, t, n_heads, head_dim).transpose(1, 2) for i in range(3))
    scores = queries @ keys.transpose(2, 3)
    mask = torch.triu(torch.ones(t, t, device=x.device), diagonal=1).bool()
    scores.masked_fill_(mask, -torch.inf)
    weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)
    weights = _dropout(weights, p, training)
    context = (weights @ values).transpose(1, 2).reshape(b, t, d)
    return F.linear(context, block.attn.proj.weight, block.attn.proj.bias)


def book_logits(model: GPTModel, idx: torch.Tensor) -> torch.Tensor:
    """Logits ``(B, T, vocab)`` as the book's GPTModel computes them (dropout when ``model.training``)."""
    config, training = model.config, model.training
    p = config.drop_rate
    t = idx.shape[1]
    x = F.embedding(idx, model.tok_emb.weight) + F.embedding(torch.arange(t, device=idx.device), model.pos_emb.weight)
    x = _dropout(x, p, training)
    for block in model.blocks:
        shortcut = x
        x = _attention(block, _layer_norm(x, block.ln1.weight, block.ln1.bias), config.n_heads, p, training)
        x = _dropout(x, p, training) + shortcut
        shortcut = x
        h = _layer_norm(x, block.ln2.weight, block.ln2.bias)
        h = F.linear(_gelu(F.linear(h, block.mlp.fc.weight, block.mlp.fc.bias)), block.mlp.proj.weight, block.mlp.proj.bias)
        x = _dropout(h, p, training) + shortcut
    x = _layer_norm(x, model.ln_f.weight, model.ln_f.bias)
    return F.linear(x, model.head.weight)


def book_loss(model: GPTModel, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The book's ``calc_loss_batch``: mean cross-entropy of the full logits."""
    logits = book_logits(model, inputs)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def book_generate(model: GPTModel, idx: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """The book's ``generate_text_simple``: greedy, the whole window re-run for every token."""
    context_size = model.pos_emb.weight.shape[0]
    for _ in range(max_new_tokens):
        with torch.no_grad():
            logits = book_logits(model, idx[:, -context_size:])
        idx = torch.cat((idx, torch.argmax(logits[:, -1, :], dim=-1, keepdim=True)), dim=1)
    return idx
