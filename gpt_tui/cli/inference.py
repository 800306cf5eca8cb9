"""The model a reading command (``generate``, ``eval``) runs: any weights source, on the device asked for."""

from __future__ import annotations

from typing import Any

# Deferred imports: torch and the weight readers load only when a model is, keeping `gpt-tui --help` light.


def load_for_inference(source: str, device: str) -> Any:
    """The ``GPTModel`` in ``source`` (a checkpoint, run or foreign weights) on ``device``; torch loads here."""
    from gpt_tui.engine.device import resolve_device
    from gpt_tui.engine.weights import load_model

    return load_model(source, resolve_device(device)).model
