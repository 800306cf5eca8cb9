"""gpt-tui's parameters under the book's names, written out here as the book's GPTModel names them (an oracle, not the engine's mapping)."""

from __future__ import annotations

import torch

from gpt_tui.engine.model import GPTModel


def book_names(model: GPTModel, *, masks: bool = False) -> dict[str, torch.Tensor]:
    """How the book's state_dict of ``model`` reads: its names in its order, q, k and v apart; ``masks`` adds its causal-mask buffers."""
    d, out = model.config.emb_dim, {}
    out["tok_emb.weight"], out["pos_emb.weight"] = model.tok_emb.weight, model.pos_emb.weight
    for i, block in enumerate(model.blocks):
        src = f"trf_blocks.{i}."
        for j, name in enumerate(("W_query", "W_key", "W_value")):
            out[f"{src}att.{name}.weight"] = block.attn.qkv.weight[j * d:(j + 1) * d]
        out[f"{src}att.out_proj.weight"], out[f"{src}att.out_proj.bias"] = block.attn.proj.weight, block.attn.proj.bias
        out[f"{src}ff.layers.0.weight"], out[f"{src}ff.layers.0.bias"] = block.mlp.fc.weight, block.mlp.fc.bias
        out[f"{src}ff.layers.2.weight"], out[f"{src}ff.layers.2.bias"] = block.mlp.proj.weight, block.mlp.proj.bias
        out[f"{src}norm1.scale"], out[f"{src}norm1.shift"] = block.ln1.weight, block.ln1.bias
        out[f"{src}norm2.scale"], out[f"{src}norm2.shift"] = block.ln2.weight, block.ln2.bias
        if masks:
            n = model.config.context_length
            out[f"{src}att.mask"] = torch.triu(torch.ones(n, n), diagonal=1)
    out["final_norm.scale"], out["final_norm.shift"] = model.ln_f.weight, model.ln_f.bias
    out["out_head.weight"] = model.head.weight
    return out
