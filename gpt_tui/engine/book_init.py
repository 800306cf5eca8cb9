"""Fresh weights drawn as the book's chapter-4 model draws them: same generator, same calls, same order.

The book builds its GPTModel module by module: the token and position
embeddings (``normal_``), then per block the query, key and value projections,
the output projection and the two feed-forward layers (``nn.Linear``'s
Kaiming-uniform weight, then its bias), and last the output head. Its LayerNorms
start at ones and zeros and draw nothing. gpt-tui stacks query, key and value
into one ``qkv`` matrix; each third is drawn on its own, as the book's separate
layers draw it, so the generator ends where the book's ends and the next draw
(the first shuffle) is the book's too.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gpt_tui.engine.model import GPTModel


def _linear_draws(out_features: int, in_features: int, bias: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What ``nn.Linear(in_features, out_features, bias)`` draws when it is built."""
    weight = torch.empty(out_features, in_features)
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    if not bias:
        return weight, None
    bound = 1 / math.sqrt(in_features) if in_features > 0 else 0.0
    return weight, torch.empty(out_features).uniform_(-bound, bound)


def book_init_(model: GPTModel, seed: int) -> None:
    """Seed torch's global generator with ``seed`` and give ``model`` the book's initial weights.

    Leaves the generator where the book's ``torch.manual_seed(seed); GPTModel(cfg)`` leaves it.
    """
    config = model.config
    d, layers = config.emb_dim, config.n_layers
    torch.manual_seed(seed)
    with torch.no_grad():
        model.tok_emb.weight.copy_(torch.empty(config.vocab_size, d).normal_())
        model.pos_emb.weight.copy_(torch.empty(config.context_length, d).normal_())
        for block in model.blocks[:layers]:
            for third in range(3):  # W_query, W_key, W_value
                weight, bias = _linear_draws(d, d, config.qkv_bias)
                block.attn.qkv.weight[third * d : (third + 1) * d].copy_(weight)
                if bias is not None:
                    block.attn.qkv.bias[third * d : (third + 1) * d].copy_(bias)
            for linear, (fan_out, fan_in) in (
                (block.attn.proj, (d, d)), (block.mlp.fc, (4 * d, d)), (block.mlp.proj, (d, 4 * d)),
            ):
                weight, bias = _linear_draws(fan_out, fan_in, True)
                linear.weight.copy_(weight)
                linear.bias.copy_(bias)
            for norm in (block.ln1, block.ln2):
                norm.weight.fill_(1.0)
                norm.bias.zero_()
        model.ln_f.weight.fill_(1.0)
        model.ln_f.bias.zero_()
        head, _ = _linear_draws(config.vocab_size, d, False)
        if not config.tie_weights:
            model.head.weight.copy_(head)
