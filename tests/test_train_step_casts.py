"""Under bf16 with micro-batches each weight is cast once per optimizer step, to the same result as before."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from gpt_tui.engine import distributed
from gpt_tui.engine.model import GPTConfig, GPTModel
from gpt_tui.engine.train_options import TrainConfig
from gpt_tui.engine.train_step import TrainStep, make_optimizer

CONFIG = GPTConfig(vocab_size=97, context_length=16, emb_dim=32, n_layers=2, n_heads=4, drop_rate=0.1)
QKV_SHAPE = (3 * CONFIG.emb_dim, CONFIG.emb_dim)


class WeightCasts(TorchDispatchMode):
    """Counts fp32 -> bf16 casts of tensors shaped like an attention's qkv weight."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        source = args[0] if args else None
        if (
            func is torch.ops.aten._to_copy.default
            and isinstance(source, torch.Tensor)
            and source.dtype == torch.float32
            and tuple(source.shape) == QKV_SHAPE
            and kwargs.get("dtype") == torch.bfloat16
        ):
            self.count += 1
        return func(*args, **kwargs)


def _train(steps: int, grad_accum: int, mode: contextlib.AbstractContextManager, monkeypatch=None):
    torch.manual_seed(0)
    model = GPTModel(CONFIG).train()
    config = TrainConfig(data=None, grad_accum=grad_accum, precision="bf16", batch_size=2, lr=1e-3)
    optimizer = make_optimizer(model, torch.device("cpu"), config)
    step = TrainStep(model, optimizer, config, torch.device("cpu"), distributed.SINGLE)
    if monkeypatch is not None:  # the former way: an autocast region per micro-batch
        monkeypatch.setattr(step, "_cast_regions", lambda: (contextlib.nullcontext(), contextlib.nullcontext()))
    gen = torch.Generator().manual_seed(1)
    shape = (2, CONFIG.context_length)
    batches = iter([
        (torch.randint(0, CONFIG.vocab_size, shape, generator=gen), torch.randint(0, CONFIG.vocab_size, shape, generator=gen))
        for _ in range(steps * grad_accum)
    ])
    losses = []
    with mode:
        for _ in range(steps):
            loss, _ = step(batches, 1e-3)
            losses.append(float(loss))
    return model.state_dict(), losses


@pytest.mark.parametrize("grad_accum", [1, 3])
def test_each_weight_is_cast_once_per_optimizer_step(grad_accum):
    counter = WeightCasts()
    _train(steps=2, grad_accum=grad_accum, mode=counter)
    assert counter.count == 2 * CONFIG.n_layers  # one cast per layer per step, however many micro-batches


def test_one_cast_per_step_trains_to_the_same_bits(monkeypatch):
    kept, kept_losses = _train(steps=2, grad_accum=3, mode=contextlib.nullcontext())
    recast, recast_losses = _train(steps=2, grad_accum=3, mode=contextlib.nullcontext(), monkeypatch=monkeypatch)
    assert kept_losses == recast_losses
    for name, tensor in kept.items():
        assert torch.equal(tensor, recast[name]), name
