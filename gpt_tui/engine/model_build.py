"""Models built from tensors already in hand, on the meta device first.

A model about to receive a full state dict gains nothing from random
initialisation, and allocating its parameters first would hold every weight
twice while the state is copied in. Built on the meta device, it has the names
and shapes only; the state then becomes (or fills) its parameters.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from gpt_tui.engine.model import GPTConfig, GPTModel, tie_head


class StateMismatch(RuntimeError):
    """The tensors do not fit the config (a missing, unexpected or differently shaped tensor); torch's message."""


def meta_model(config: GPTConfig) -> GPTModel:
    """``config``'s model with every parameter on the meta device: names and shapes, no memory."""
    with torch.device("meta"):
        return GPTModel(config)


def model_from_state(
    config: GPTConfig,
    state: Mapping[str, torch.Tensor],
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> GPTModel:
    """``config``'s model holding ``state`` on ``device``, in eval mode.

    Without ``dtype`` the state's own tensors become the parameters, so a loaded
    file is never held twice; they are moved to ``device`` afterwards. With
    ``dtype`` fresh storage of that type is allocated on ``device`` and filled
    from ``state``, which stays untouched (a bf16 copy of a model still training).
    Raises ``StateMismatch`` when the tensors do not fit ``config``.
    """
    model = meta_model(config)
    if dtype is not None:
        model = tie_head(model.to(dtype).to_empty(device=device))
    try:
        model.load_state_dict(state, strict=True, assign=dtype is None)
    except RuntimeError as exc:
        raise StateMismatch(str(exc)) from exc
    if dtype is None:
        model = tie_head(model).to(device)
    return tie_head(model).eval()
