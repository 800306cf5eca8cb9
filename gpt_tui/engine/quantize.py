"""Int8 weight-only decoding: every linear layer's weights in int8 with one scale per output channel.

Decoding one token reads every weight once, so bytes per weight set the speed:
int8 weights are half of bf16's. A layer's input is rounded to bf16, which is
what torch's int8 kernel (``aten._weight_int8pack_mm``) is fast with (fp32
inputs take a path about ten times slower), and so is its output (the head's
excepted); the embeddings, layer norms and the residual stream stay fp32. Each row is scaled by its largest magnitude / 127 and
rounded to the nearest step, so a weight is off by at most half a step. The
copy is for decoding only (no gradients, no fused training loss).
"""

from __future__ import annotations

import threading
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from gpt_tui.engine.device import model_device
from gpt_tui.engine.model import GPTModel
from gpt_tui.engine.model_build import model_from_state
from gpt_tui.errors import UserError

# Up to this many rows the int8 kernel wins; a longer prompt's prefill multiplies faster by bf16 weights.
INT8_KERNEL_ROWS = 8


def int8_kernel_available(device: torch.device) -> str | None:
    """None when int8 decoding works on ``device``, else why not (one line)."""
    op = getattr(torch.ops.aten, "_weight_int8pack_mm", None)
    if op is None:
        return f"this torch ({torch.__version__}) has no int8 weight kernel (aten._weight_int8pack_mm)"
    try:
        x = torch.zeros(1, 32, dtype=torch.bfloat16, device=device)
        op(x, torch.zeros(8, 32, dtype=torch.int8, device=device), torch.ones(8, dtype=torch.bfloat16, device=device))
    except (RuntimeError, NotImplementedError) as exc:
        return f"torch's int8 weight kernel does not run on {device} ({str(exc).splitlines()[0][:120]})"
    return None


class Int8Linear(nn.Module):
    """``linear(x)`` with int8 weights, per-output-channel bf16 scales and a bf16 bias."""

    def __init__(self, linear: nn.Linear, out_dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        self.out_dtype = out_dtype
        weight = linear.weight.detach().float()
        scales = (weight.abs().amax(dim=1) / 127.0).clamp(min=1e-12).to(torch.bfloat16)
        # Rounded with the bf16 scale the kernel multiplies by, so the rounding is the only error.
        steps = torch.round(weight / scales.float().unsqueeze(1)).clamp_(-127, 127)
        self.register_buffer("qweight", steps.to(torch.int8))
        self.register_buffer("scales", scales)
        bias = linear.bias
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.bfloat16))
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def dequantized(self) -> torch.Tensor:
        return self.qweight.to(torch.bfloat16) * self.scales.unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(torch.bfloat16)
        if rows.shape[0] <= INT8_KERNEL_ROWS:
            y = torch.ops.aten._weight_int8pack_mm(rows, self.qweight, self.scales)
            if self.bias is not None:
                y = y.add_(self.bias)
        else:
            y = F.linear(rows, self.dequantized(), self.bias)
        return y.view(*x.shape[:-1], self.out_features).to(self.out_dtype)


def quantize_int8(model: GPTModel) -> GPTModel:
    """A decoding copy of ``model`` with int8 linear layers (the head too); ``model`` is left alone."""
    device = model_device(model)
    problem = int8_kernel_available(device)
    if problem is not None:
        raise UserError(f"Cannot decode in int8: {problem}. Use --quantize none (bf16 or fp32 weights) instead.")
    # Embeddings, layer norms and the residual stream stay fp32: a few vectors per token, and
    # rounding them to bf16 would add to the weights' rounding at every layer.
    copy = model_from_state(model.config, model.state_dict(), device, torch.float32)
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear):
            parent, _, leaf = name.rpartition(".")
            # Rounded from the source's own weights (fp32 in training), not from the bf16 copy.
            # bf16 outputs: added to the fp32 residual they promote, and the next layer takes bf16 anyway;
            # the head's logits come out fp32, so near ties are ranked as finely as in fp32.
            out_dtype = torch.float32 if name == "head" else torch.bfloat16
            setattr(copy.get_submodule(parent) if parent else copy, leaf, Int8Linear(module, out_dtype).to(device))
    return copy.requires_grad_(False).eval()


_copies: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple[int, ...], GPTModel]]" = weakref.WeakKeyDictionary()
_copies_lock = threading.Lock()


def int8_copy(model: GPTModel) -> GPTModel:
    """The int8 copy of ``model``, made once and remade when its weights change (an optimizer step)."""
    if is_quantized(model):
        return model
    signature = tuple(p._version for p in model.parameters())
    with _copies_lock:
        known = _copies.get(model)
        if known is not None and known[0] == signature:
            return known[1]
        copy = quantize_int8(model)
        _copies[model] = (signature, copy)
        return copy


def is_quantized(model: nn.Module) -> bool:
    return isinstance(getattr(model, "head", None), Int8Linear)
