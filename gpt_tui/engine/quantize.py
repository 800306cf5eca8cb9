"""Int8 weight-only decoding: every linear layer's weights in int8 with one scale per output channel.

Decoding one token reads every weight once, so bytes per weight set the speed:
int8 weights are half of bf16's. Each row is scaled by its largest magnitude /
127 and rounded to the nearest step, so a weight is off by at most half a step.
A decoded token's few rows go through fbgemm's dynamic int8 kernel where torch
has it (x86): the rows are rounded to 8 bits over their range, much as
llama.cpp's q8_0 rounds its activations, and the product is taken in integers
(VNNI), about twice as fast as ``aten._weight_int8pack_mm`` with bf16 rows
(measured 7.1 vs 13.1 ms for GPT-2 124M's layers, one thread), which serves
elsewhere. A prefill's many rows multiply faster by the
weights expanded to bf16. The embeddings, layer norms and the residual stream
stay fp32. The copy is for decoding only (no gradients, no fused training loss).
"""

from __future__ import annotations

import threading
import warnings
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


def _cpu_has_vnni() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def dynamic_int8_pack(qweight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None) -> object | None:
    """``qweight`` with its scales packed for torch's dynamic int8 linear (fbgemm on x86), or None without it.

    The int8 steps are taken as they are (no second rounding), so both kernels multiply by the same weights.
    """
    if qweight.device.type != "cpu" or torch.backends.quantized.engine not in ("x86", "fbgemm"):
        return None
    try:
        zeros = torch.zeros(qweight.shape[0], dtype=torch.long)
        with warnings.catch_warnings():  # torch 2.13 marks quantized tensors deprecated; without them, None
            warnings.simplefilter("ignore", UserWarning)
            weight = torch._make_per_channel_quantized_tensor(qweight, scales.double(), zeros, 0)
        packed = torch.ops.quantized.linear_prepack(weight, None if bias is None else bias.float())
        torch.ops.quantized.linear_dynamic(torch.zeros(1, qweight.shape[1]), packed, REDUCE_RANGE)
    except (AttributeError, RuntimeError, NotImplementedError):
        return None
    return packed


# Without VNNI the kernel sums pairs of u8*s8 products in int16, which can saturate unless inputs use 7 bits.
REDUCE_RANGE = not _cpu_has_vnni()


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
        # Opaque, never saved; its bias stays fp32, as its output does.
        self.packed = dynamic_int8_pack(self.qweight, scales, None if bias is None else bias.detach())

    def dequantized(self) -> torch.Tensor:
        return self.qweight.to(torch.bfloat16) * self.scales.unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        if self.packed is not None and rows.shape[0] <= INT8_KERNEL_ROWS:
            y = torch.ops.quantized.linear_dynamic(rows.float(), self.packed, REDUCE_RANGE)
            return y.view(*x.shape[:-1], self.out_features)
        rows = rows.to(torch.bfloat16)
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


def decodes_in_integers(model: nn.Module) -> bool:
    """Whether a decoded token's rows go through the integer kernel (fbgemm) rather than bf16 rows."""
    head = getattr(model, "head", None)
    return isinstance(head, Int8Linear) and head.packed is not None
