"""bf16 linear layers with their weights reordered once into oneDNN's blocked layout, for CPU decoding.

``F.linear`` on a plain bf16 weight re-reads it in a layout the kernel does
not stream well; reordered once when the decoding copy is made, the same
product streams the weights about 1.6x faster for one row (measured 12.3 vs
7.5 GB/s on one thread) and is no slower for a prompt's many rows. The
results are the same numbers: only the memory order of the weights changes.
"""

from __future__ import annotations

import torch
from torch import nn


def packing_available() -> bool:
    """Whether this torch's oneDNN can reorder and multiply bf16 weights on this CPU."""
    try:
        if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
            return False
        packed = torch.ops.mkldnn._reorder_linear_weight(torch.zeros(8, 16, dtype=torch.bfloat16), 1)
        torch.ops.mkldnn._linear_pointwise(torch.zeros(1, 16, dtype=torch.bfloat16), packed, None, "none", [], "")
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    return True


class PackedLinear(nn.Module):
    """``linear(x)`` for bf16 ``x`` through a reordered copy of the weight; the plain weight is not kept.

    A head tied to the token embedding keeps that shared parameter as ``weight``
    (it costs nothing extra), so a loss computed on the copy still finds it.
    """

    def __init__(self, linear: nn.Linear, keep_weight: bool = False) -> None:
        super().__init__()
        weight = linear.weight.detach()
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, 1)  # opaque: not a buffer, never saved
        self.bias = None if linear.bias is None else linear.bias.detach()
        if keep_weight:
            self.weight = linear.weight
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        y = torch.ops.mkldnn._linear_pointwise(rows, self.packed, self.bias, "none", [], "")
        return y.view(*x.shape[:-1], self.out_features)


def pack_linears(model: nn.Module) -> nn.Module:
    """Replace every bf16 ``nn.Linear`` of a CPU decoding copy by a PackedLinear, in place; unchanged if unavailable."""
    if not packing_available():
        return model
    tied = getattr(getattr(model, "tok_emb", None), "weight", None)
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and module.weight.dtype == torch.bfloat16 and module.weight.device.type == "cpu":
            parent, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, leaf, PackedLinear(module, module.weight is tied))
    return model
