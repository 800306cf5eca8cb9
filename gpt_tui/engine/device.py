"""Pick the device at call time, never at import time."""

from __future__ import annotations

import torch

from gpt_tui.errors import UserError


def available_devices() -> list[str]:
    """Devices this machine can use, best first, always ending with "cpu"."""
    found: list[str] = []
    if torch.cuda.is_available():
        found.append("cuda")
        found.extend(f"cuda:{i}" for i in range(torch.cuda.device_count()))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    found.append("cpu")
    return found


def resolve_device(name: str | None = "auto") -> "torch.device":  # noqa: F821
    """``auto`` means cuda, then mps, then cpu; a named device must exist here."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device(available_devices()[0])
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"Unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError("Device 'cuda' was asked for but this machine has no usable CUDA GPU; use --device cpu or auto.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"Device {name!r} does not exist: this machine has {torch.cuda.device_count()} CUDA GPU(s).")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UserError("Device 'mps' was asked for but Apple's Metal backend is not available here; use cpu or auto.")
    elif device.type != "cpu":
        raise UserError(f"Device {name!r} is not supported; use auto, cpu, cuda, cuda:N or mps.")
    return device


def model_device(model: "torch.nn.Module") -> "torch.device":  # noqa: F821
    """Where the model's weights are (the CPU for a model without parameters)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")
