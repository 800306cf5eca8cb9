"""Which number format the matmuls run in, chosen from the hardware."""

from __future__ import annotations

import contextlib

import torch


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
