"""The head's weight gradient made a slice of vocabulary rows at a time equals the one-matmul gradient."""

from __future__ import annotations

import torch

from gpt_tui.engine import fused_loss
from gpt_tui.engine.fused_loss import linear_cross_entropy


def _bf16_gradients(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    h = hidden.clone().requires_grad_()
    w = weight.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        linear_cross_entropy(h, w, targets).backward()
    return h.grad, w.grad


def test_bf16_weight_gradient_in_vocabulary_slices_equals_the_one_matmul_gradient(monkeypatch):
    torch.manual_seed(4)
    hidden = torch.randn(40, 64)
    weight = torch.randn(777, 64) * 0.2
    targets = torch.randint(0, 777, (40,))
    monkeypatch.setattr(fused_loss, "CPU_GRAD_WEIGHT_ROWS", 10**6)  # the whole vocabulary in one matmul
    gh_whole, gw_whole = _bf16_gradients(hidden, weight, targets)
    monkeypatch.setattr(fused_loss, "CPU_GRAD_WEIGHT_ROWS", 100)  # 777 rows: seven whole slices and a short one
    gh_sliced, gw_sliced = _bf16_gradients(hidden, weight, targets)

    assert gw_sliced.dtype == torch.float32 and gw_sliced.is_contiguous()
    assert gw_sliced[700:].abs().sum() > 0  # the short last slice was written, not left as allocated
    # each element is the same bf16 dot product, so slicing changes no bit
    assert torch.equal(gw_sliced, gw_whole)
    assert torch.equal(gh_sliced, gh_whole)
