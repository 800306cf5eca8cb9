"""Which number format the matmuls run in, per phase, chosen by measurement, and the copy to decode with."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from gpt_tui.engine.device import model_device
from gpt_tui.engine.model import GPTModel
from gpt_tui.engine.model_build import model_from_state
from gpt_tui.engine.sampling_config import QUANTIZE_CHOICES
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


def resolve_precision(device: torch.device, precision: str = "auto", phase: str = "training") -> str:
    """``auto``: bf16 on GPUs that support it; on a CPU what the calibration measured faster for ``phase``."""
    return explain_precision(device, precision, phase)[0]


def explain_precision(device: torch.device, precision: str = "auto", phase: str = "training") -> tuple[str, str]:
    """The precision ``phase`` runs in on ``device``, and why (for start lines and ``gpt-tui doctor``)."""
    if precision != "auto":
        return precision, "asked for"
    if device.type == "cuda":
        return ("bf16", "the GPU supports bf16") if torch.cuda.is_bf16_supported() else ("fp32", "the GPU lacks bf16")
    if device.type == "cpu":
        from gpt_tui.engine.calibration import calibration

        measured = calibration()
        return measured.choice(phase), measured.reason(phase)
    return "fp32", f"no bf16 measurement on {device.type}"


def precision_line(device: torch.device, precision: str, phases: tuple[str, ...]) -> str:
    """One line: ``training bf16 (batch matmuls bf16 3.9x fp32, cached), ...``."""
    parts = []
    for phase in phases:
        chosen, why = explain_precision(device, precision, phase)
        parts.append(f"{phase} {chosen} ({why})")
    return "Precision: " + "; ".join(parts)


def autocast_for(device: torch.device, precision: str = "auto", phase: str = "training") -> contextlib.AbstractContextManager:
    """An autocast context for the chosen precision, or a no-op for fp32."""
    if resolve_precision(device, precision, phase) == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_for_inference(model: nn.Module, precision: str = "auto", quantize: str = "none") -> nn.Module:
    """The model to decode with: ``model`` itself in fp32, or an eval-mode bf16 or int8 copy.

    Decoding a token reads every weight once, so its speed is memory bandwidth;
    bf16 weights halve the bytes, int8 halves them again. ``auto`` picks bf16
    where it measured faster for one-row decoding (gpt_tui.engine.calibration)
    and fp32 elsewhere. The copy is built directly in bf16 (no second fp32 copy
    in memory); the caller's model is never changed, so training can go on with it.
    """
    if precision not in ("auto", "fp32", "bf16"):
        raise UserError(f"precision must be auto, fp32 or bf16, got {precision!r}.")
    if quantize not in QUANTIZE_CHOICES:
        raise UserError(f"quantize must be one of {', '.join(QUANTIZE_CHOICES)}, got {quantize!r}.")
    from gpt_tui.engine.packed_linear import PackedLinear
    from gpt_tui.engine.quantize import is_quantized

    if not isinstance(model, GPTModel) or is_quantized(model) or isinstance(model.head, PackedLinear):
        return model  # already a decoding copy
    if quantize == "int8":
        if precision == "fp32":
            raise UserError("int8 decoding computes in bf16; drop --precision fp32, or use --quantize none for fp32.")
        from gpt_tui.engine.quantize import int8_copy

        return int8_copy(model)
    device = model_device(model)
    dtype = torch.bfloat16 if resolve_precision(device, precision, "decoding") == "bf16" else torch.float32
    if model.tok_emb.weight.dtype == dtype:
        return model
    copy = model_from_state(model.config, model.state_dict(), device, dtype).requires_grad_(False)
    if dtype == torch.bfloat16 and device.type == "cpu":
        from gpt_tui.engine.packed_linear import pack_linears

        copy = pack_linears(copy)
    return copy


def decoding_line(model: nn.Module, precision: str) -> str:
    """What a generate call decodes with, and why: for ``generate --stats``."""
    from gpt_tui.engine.quantize import decodes_in_integers, is_quantized

    if is_quantized(model):
        rows = "decoded rows rounded to 8 bits (integer kernel)" if decodes_in_integers(model) else "bf16 decoded rows"
        return f"Precision: int8 weights (--quantize int8); prefill in bf16, {rows}"
    device = model_device(model)
    chosen, why = explain_precision(device, precision, "decoding")
    return f"Precision: prefill and decoding {chosen} ({why}; one weight copy serves both)"
