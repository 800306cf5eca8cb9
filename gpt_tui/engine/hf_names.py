"""Hugging Face GPT-2's tensor names beside gpt-tui's, one table for import and export alike.

Hugging Face's GPT-2 keeps its projections in Conv1D modules, which store the
weight as (in, out): the transpose of nn.Linear's (out, in). Those rows are
marked, so both directions transpose the same tensors. Names are given without
the ``transformer.`` prefix that ``GPT2LMHeadModel`` files add (and some omit).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from gpt_tui.engine.model import GPTConfig

# gpt-tui name -> Hugging Face name, outside the blocks.
EMBEDDINGS = (("tok_emb.weight", "wte.weight"), ("pos_emb.weight", "wpe.weight"))
FINAL_NORM = (("ln_f.weight", "ln_f.weight"), ("ln_f.bias", "ln_f.bias"))
HEAD = ("head.weight", "lm_head.weight")  # absent from Hugging Face files when tied to wte
# Within block i ("blocks.{i}." here, "h.{i}." there): gpt-tui suffix, Hugging Face suffix, stored transposed.
BLOCK = (
    ("ln1.weight", "ln_1.weight", False),
    ("ln1.bias", "ln_1.bias", False),
    ("attn.qkv.weight", "attn.c_attn.weight", True),
    ("attn.qkv.bias", "attn.c_attn.bias", False),
    ("attn.proj.weight", "attn.c_proj.weight", True),
    ("attn.proj.bias", "attn.c_proj.bias", False),
    ("ln2.weight", "ln_2.weight", False),
    ("ln2.bias", "ln_2.bias", False),
    ("mlp.fc.weight", "mlp.c_fc.weight", True),
    ("mlp.fc.bias", "mlp.c_fc.bias", False),
    ("mlp.proj.weight", "mlp.c_proj.weight", True),
    ("mlp.proj.bias", "mlp.c_proj.bias", False),
)
QKV_BIAS = "attn.qkv.bias"  # optional in gpt-tui (qkv_bias=False); Hugging Face's c_attn always has one


def name_pairs(layers: int, qkv_bias: bool = True) -> Iterator[tuple[str, str, bool]]:
    """(gpt-tui name, Hugging Face name, transposed) for every tensor but the head, in a file's order."""
    for ours, theirs in EMBEDDINGS:
        yield ours, theirs, False
    for i in range(layers):
        for ours, theirs, transposed in BLOCK:
            if ours == QKV_BIAS and not qkv_bias:
                continue
            yield f"blocks.{i}.{ours}", f"h.{i}.{theirs}", transposed
    for ours, theirs in FINAL_NORM:
        yield ours, theirs, False


def to_hf(state: dict[str, "torch.Tensor"], config: "GPTConfig") -> dict[str, "torch.Tensor"]:
    """gpt-tui's state renamed for ``GPT2LMHeadModel``: CPU float32, contiguous, ``transformer.`` prefixed."""
    tensors: dict[str, torch.Tensor] = {}
    for ours, theirs, transposed in name_pairs(config.n_layers):
        if ours.endswith(QKV_BIAS) and ours not in state:  # a model trained without the bias exports zeros
            tensor = torch.zeros(3 * config.emb_dim)
        else:
            tensor = state[ours]
        tensors["transformer." + theirs] = tensor.t() if transposed else tensor
    if not config.tie_weights:
        tensors[HEAD[1]] = state[HEAD[0]]
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()}
