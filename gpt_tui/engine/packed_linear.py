"""bf16 linear layers with their weights reordered once into oneDNN's blocked layout, for CPU decoding.

``F.linear`` on a plain bf16 weight re-reads it in a layout the kernel does
not stream well; reordered once when the decoding copy is made, the same
product streams the weights about 1.6x faster for one row (measured 12.3 vs
7.5 GB/s on one thread) and is no slower for a prompt's many rows. The
results are the same numbers: only the memory order of the weights changes.

fp32 decoding gains the same way, from MKL's packed sgemm or oneDNN's blocked
layout per shape (``fp32_decoding_model``); that copy is made for a decoded
row only, so a prompt's many rows still multiply by the plain weights.
"""

from __future__ import annotations

import functools
import threading
import weakref

import torch
import torch.nn.functional as F
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


# Below this many weights a model sits in the CPU's caches and the plain kernels are as fast.
FP32_PACK_MIN_PARAMETERS = 8_000_000


def _fp32_kind(out_features: int, in_features: int) -> str:
    """The fastest one-row fp32 kernel for a weight of this shape, as measured on one thread streaming from memory.

    MKL's packed sgemm for the wide layers (qkv, fc, the head: 16 vs 11 GB/s, the
    head 19 vs 12), oneDNN's blocked layout for the narrow mlp.proj (16 vs 14),
    the plain kernel for a square one, which both packings made slower.
    """
    if out_features > in_features and torch.backends.mkl.is_available():
        return "mkl"
    if out_features < in_features and torch.backends.mkldnn.is_available():
        return "mkldnn"
    return "plain"


class Fp32PackedLinear(nn.Module):
    """``linear(x)`` for fp32 ``x``: one row through a packed copy of the weight, more rows through the weight itself.

    ``weight`` and ``bias`` are the source layer's own tensors (shared, not copied),
    so only the packed copy costs memory.
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.kind = _fp32_kind(self.out_features, self.in_features)
        weight = self.weight.detach()
        if self.kind == "mkl":
            self.packed = torch.ops.mkl._mkl_reorder_linear_weight(weight, 1)
        elif self.kind == "mkldnn":
            self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        if rows.shape[0] != 1 or self.kind == "plain" or rows.dtype != torch.float32:
            y = F.linear(rows, self.weight, self.bias)
        elif self.kind == "mkl":
            y = torch.ops.mkl._mkl_linear(rows, self.packed, self.weight, self.bias, 1)
        else:
            y = torch.ops.mkldnn._linear_pointwise(rows, self.packed, self.bias, "none", [], "")
        return y.view(*x.shape[:-1], self.out_features)


_fp32_copies: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple[int, ...], nn.Module]]" = weakref.WeakKeyDictionary()
_fp32_lock = threading.Lock()


def fp32_decoding_model(model: nn.Module, min_parameters: int = FP32_PACK_MIN_PARAMETERS) -> nn.Module:
    """A CPU fp32 model with its linear layers' weights packed for one-row decoding, else ``model`` itself.

    The copy shares every tensor with ``model`` and adds only the packed weights;
    it is made once and remade when the weights change (an optimizer step).
    """
    from gpt_tui.engine.model import GPTModel
    from gpt_tui.engine.model_build import model_from_state

    weight = getattr(getattr(model, "tok_emb", None), "weight", None)
    if (not isinstance(model, GPTModel) or weight is None or weight.device.type != "cpu"
            or weight.dtype != torch.float32 or not isinstance(model.head, nn.Linear)
            or sum(p.numel() for p in model.parameters()) < min_parameters or not fp32_packing_available()):
        return model
    signature = tuple(p._version for p in model.parameters())
    with _fp32_lock:
        known = _fp32_copies.get(model)
        if known is not None and known[0] == signature:
            return known[1]
        copy = model_from_state(model.config, model.state_dict(), weight.device).requires_grad_(False)
        for name, module in list(copy.named_modules()):
            if isinstance(module, nn.Linear):
                parent, _, leaf = name.rpartition(".")
                setattr(copy.get_submodule(parent) if parent else copy, leaf, Fp32PackedLinear(module))
        _fp32_copies[model] = (signature, copy)
        return copy


@functools.cache
def fp32_packing_available() -> bool:
    """Whether both packings run here (one row, fp32)."""
    try:
        for shape in ((16, 8), (8, 16)):
            Fp32PackedLinear(nn.Linear(shape[1], shape[0]))(torch.zeros(1, shape[1]))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    return True
