"""Which number format the matmuls run in, chosen from the hardware, and the bf16 copy to decode with."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from gpt_tui.engine.device import model_device
from gpt_tui.engine.model import GPTModel
from gpt_tui.engine.model_build import model_from_state
from gpt_tui.errors import UserError


def cpu_has_amx_bf16() -> bool:
    """True on CPUs with AMX tiles for bf16 (Sapphire Rapids and later), where bf16 matmuls run ~6x fp32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split()
    except OSError:
        pass
    return False


def resolve_precision(device: torch.device, precision: str = "auto") -> str:
    """``auto`` picks bf16 on GPUs that support it and on AMX CPUs, fp32 elsewhere."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_amx_bf16() else "fp32"
    return "fp32"


def autocast_for(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager:
    """An autocast context for the chosen precision, or a no-op for fp32."""
    if resolve_precision(device, precision) == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_for_inference(model: nn.Module, precision: str = "auto") -> nn.Module:
    """The model to decode with: ``model`` itself in fp32, or an eval-mode bf16 copy.

    Decoding a token reads every weight once, so its speed is memory bandwidth;
    bf16 weights halve the bytes. ``auto`` picks bf16 where the hardware computes
    in it natively (GPUs with bf16, CPUs with AMX) and fp32 elsewhere. The copy is
    built directly in bf16 (no second fp32 copy in memory); the caller's model is
    never changed, so training can go on with it.
    """
    if precision not in ("auto", "fp32", "bf16"):
        raise UserError(f"precision must be auto, fp32 or bf16, got {precision!r}.")
    if not isinstance(model, GPTModel):
        return model
    device = model_device(model)
    dtype = torch.bfloat16 if resolve_precision(device, precision) == "bf16" else torch.float32
    if model.tok_emb.weight.dtype == dtype:
        return model
    return model_from_state(model.config, model.state_dict(), device, dtype).requires_grad_(False)
