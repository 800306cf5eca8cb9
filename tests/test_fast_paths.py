"""The fast paths compute what the plain code computes: fused loss, bf16 decoding, prefetching, sharding."""

from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as F

from gpt_tui.engine.data import BatchLoader, Prefetcher, TokenWindows
from gpt_tui.engine.generation import SamplingConfig, generate, generate_uncached
from gpt_tui.engine.fused_loss import linear_cross_entropy
from gpt_tui.engine.loss import calc_loss_batch
from gpt_tui.engine.model import GPTConfig, GPTModel
from gpt_tui.engine.precision import prepare_for_inference
from gpt_tui.errors import UserError


def small_model(seed: int = 0, **changes) -> GPTModel:
    torch.manual_seed(seed)
    base = dict(vocab_size=50257, context_length=48, emb_dim=64, n_layers=2, n_heads=4, drop_rate=0.0, qkv_bias=True)
    base.update(changes)
    return GPTModel(GPTConfig(**base))


# --- the fused cross-entropy -------------------------------------------------------


def _plain_loss_and_grads(hidden, weight, targets, autocast):
    h = hidden.detach().clone().requires_grad_()
    w = weight.detach().clone().requires_grad_()
    with autocast:
        loss = F.cross_entropy(F.linear(h, w).float(), targets)
    loss.backward()
    return loss.detach(), h.grad, w.grad


@pytest.mark.parametrize("pad_to", [1, 64])
def test_linear_cross_entropy_matches_the_textbook_loss_in_fp32(pad_to):
    torch.manual_seed(1)
    hidden = torch.randn(70, 48)
    weight = torch.randn(1001, 48) * 0.3  # 1001 is no multiple of 64, so padding is exercised
    targets = torch.randint(0, 1001, (70,))
    loss_ref, gh_ref, gw_ref = _plain_loss_and_grads(hidden, weight, targets, torch.autocast("cpu", enabled=False))
    h = hidden.clone().requires_grad_()
    w = weight.clone().requires_grad_()
    loss = linear_cross_entropy(h, w, targets, pad_to=pad_to)
    (2.5 * loss).backward()  # the upstream gradient must scale what the forward prepared
    assert loss.dtype == torch.float32 and loss.shape == ()
    torch.testing.assert_close(loss, loss_ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(h.grad, 2.5 * gh_ref, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(w.grad, 2.5 * gw_ref, rtol=1e-5, atol=1e-7)
    with torch.no_grad():
        torch.testing.assert_close(linear_cross_entropy(hidden, weight, targets, pad_to=pad_to), loss_ref, rtol=1e-6, atol=1e-6)


def test_linear_cross_entropy_under_bf16_autocast_matches_the_autocast_head():
    torch.manual_seed(2)
    hidden = torch.randn(33, 64)
    weight = torch.randn(777, 64) * 0.2
    targets = torch.randint(0, 777, (33,))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16)
    loss_ref, gh_ref, gw_ref = _plain_loss_and_grads(hidden, weight, targets, autocast)
    h = hidden.clone().requires_grad_()
    w = weight.clone().requires_grad_()
    with autocast:
        loss = linear_cross_entropy(h, w, targets)
    loss.backward()
    assert h.grad.dtype == torch.float32 and w.grad.dtype == torch.float32
    torch.testing.assert_close(loss, loss_ref, rtol=1e-5, atol=1e-5)
    # the same bf16 roundings happen on both sides: logits, then their gradient
    torch.testing.assert_close(h.grad, gh_ref, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(w.grad, gw_ref, rtol=1e-5, atol=1e-7)


def test_linear_cross_entropy_spans_many_slices():
    """More rows than one slice holds, so the slicing loop is exercised end to end."""
    from gpt_tui.engine import fused_loss as loss_module

    torch.manual_seed(3)
    rows = loss_module.CPU_SLICE_ELEMENTS // 500 * 3 + 7
    hidden = torch.randn(rows, 8)
    weight = torch.randn(500, 8)
    targets = torch.randint(0, 500, (rows,))
    loss_ref, gh_ref, gw_ref = _plain_loss_and_grads(hidden, weight, targets, torch.autocast("cpu", enabled=False))
    h = hidden.clone().requires_grad_()
    w = weight.clone().requires_grad_()
    linear_cross_entropy(h, w, targets).backward()
    torch.testing.assert_close(h.grad, gh_ref, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(w.grad, gw_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("tied", [False, True])
def test_model_loss_equals_cross_entropy_of_its_logits(tied):
    model = small_model(tie_weights=tied).train()
    inputs = torch.randint(0, 50257, (3, 20))
    targets = torch.randint(0, 50257, (3, 20))
    plain = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
    plain.backward()
    plain_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    fused = calc_loss_batch(model, inputs, targets)
    fused.backward()
    torch.testing.assert_close(fused, plain.detach(), rtol=1e-6, atol=1e-6)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, plain_grads[name], rtol=1e-4, atol=1e-7, msg=name)


def test_fused_loss_follows_the_same_training_curve_in_bf16():
    """A few AdamW steps under bf16 autocast: the fused head loss tracks the plain fp32-softmax loss."""
    losses = {}
    inputs = torch.randint(0, 4096, (2, 24), generator=torch.Generator().manual_seed(5))
    targets = torch.roll(inputs, -1, dims=1)
    for fused in (False, True):
        model = small_model(seed=4, vocab_size=4096).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        curve = []
        for _ in range(6):
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                if fused:
                    loss = model(inputs, targets=targets)
                else:
                    loss = F.cross_entropy(model(inputs).flatten(0, 1).float(), targets.flatten())
            loss.backward()
            optimizer.step()
            curve.append(loss.item())
        losses[fused] = curve
    assert losses[True][-1] < losses[True][0] - 1.0  # it learns
    for plain, fused in zip(losses[False], losses[True]):
        assert abs(plain - fused) < 0.02 * abs(plain)


# --- decoding ------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 2])
def test_fast_decoding_samples_the_same_tokens_as_the_plain_loop_in_fp32(batch):
    model = small_model(seed=6, vocab_size=2048, context_length=24)
    with torch.no_grad():
        model.head.weight.mul_(8)  # spread the logits so float noise cannot flip a draw
    prompt = torch.randint(0, 2048, (batch, 5), generator=torch.Generator().manual_seed(7))
    sampling = SamplingConfig(max_new_tokens=40, temperature=0.9, top_k=40, top_p=0.95, seed=11)
    fast = generate(prepare_for_inference(model, "fp32"), prompt, sampling)  # cached, past the context of 24
    plain = generate_uncached(model, prompt, sampling)
    assert torch.equal(fast, plain)


def test_bf16_inference_copy_leaves_the_model_alone_and_stays_close():
    model = small_model(seed=8, tie_weights=True).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    copy = prepare_for_inference(model, "bf16")
    assert copy is not model and not copy.training
    assert copy.tok_emb.weight.dtype == torch.bfloat16 and copy.head.weight is copy.tok_emb.weight
    assert all(not p.requires_grad for p in copy.parameters())
    assert model.training and model.tok_emb.weight.dtype == torch.float32
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert prepare_for_inference(model, "fp32") is model
    ids = torch.randint(0, 50257, (1, 12), generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        want = model.eval()(ids)[:, -1]
        cache = copy.new_cache(1)
        copy(ids[:, :11], cache)
        got = copy(ids[:, 11:], cache, last_only=True)[:, -1].float()  # the single-row decode kernel
    assert cache.keys[0].dtype == torch.float32  # on a CPU one-query attention runs in fp32
    scale = want.abs().max()
    assert (got - want).abs().max() < 0.05 * scale
    with pytest.raises(UserError, match="precision"):
        prepare_for_inference(model, "fp16")


def test_single_row_bf16_projection_matches_the_matmul_kernel():
    from gpt_tui.engine.kernels import linear as _linear

    torch.manual_seed(10)
    layer = torch.nn.Linear(96, 200).to(torch.bfloat16)
    x = torch.randn(1, 1, 96).to(torch.bfloat16)
    fast = _linear(x, layer)
    assert fast.shape == (1, 1, 200) and fast.dtype == torch.bfloat16
    torch.testing.assert_close(fast.float(), layer(x).float(), rtol=2e-2, atol=2e-2)
    many = torch.randn(3, 1, 96).to(torch.bfloat16)
    assert torch.equal(_linear(many, layer), layer(many))  # several rows keep the ordinary path


# --- batches: shards and prefetching ----------------------------------------------------


def _loader(batch_size: int = 5, drop_last: bool = True) -> BatchLoader:
    import numpy as np

    tokens = np.arange(400, dtype=np.uint16)
    return BatchLoader(TokenWindows(tokens, 8, 3), batch_size, shuffle=True, drop_last=drop_last, seed=3)


@pytest.mark.parametrize("world", [2, 3])
def test_shards_partition_each_batch_in_order(world):
    loader = _loader(batch_size=5, drop_last=False)
    whole = list(loader.batches(1, 2))
    shards = [list(loader.batches(1, 2, shard=(rank, world))) for rank in range(world)]
    for index, (x, y) in enumerate(whole):
        parts = [shard[index] for shard in shards]
        assert torch.equal(torch.cat([p[0] for p in parts]), x)
        assert torch.equal(torch.cat([p[1] for p in parts]), y)
        sizes = [p[0].shape[0] for p in parts]
        assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError):
        loader.batches(0, 0, shard=(2, 2))


def test_prefetcher_yields_the_same_batches_and_stops():
    loader = _loader()
    expected = list(loader.batches(2, 1))
    got = list(Prefetcher(loader.batches(2, 1), depth=2))
    assert len(got) == len(expected) > 3
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(got, expected))

    def failing():
        yield expected[0]
        raise RuntimeError("disk went away")

    prefetched = Prefetcher(failing())
    next(prefetched)
    with pytest.raises(RuntimeError, match="disk went away"):
        next(prefetched)

    endless = Prefetcher(iter(lambda: expected[0], None), depth=1)
    next(endless)
    endless.close()
    assert not endless._thread.is_alive()
    assert not any(t.name == "batch-prefetch" and t is endless._thread for t in threading.enumerate())


def test_malloc_tuning_is_idempotent():
    from gpt_tui.engine import runtime

    first = runtime.tune_malloc()
    assert isinstance(first, bool)
    assert runtime.tune_malloc() is first


# --- dropout and attention for CPU training ---------------------------------------------


def test_cpu_dropout_keeps_the_right_share_and_is_reproducible():
    from gpt_tui.engine.kernels import dropout as _dropout

    x = torch.ones(400, 1000)
    torch.manual_seed(0)
    first = _dropout(x, 0.1)
    torch.manual_seed(0)
    again = _dropout(x, 0.1)
    assert torch.equal(first, again)  # the mask follows torch's global generator, so resumed runs repeat it
    kept = first != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.003  # 400k draws: the std of the share is ~0.0005
    assert torch.allclose(first[kept], torch.full_like(first[kept], 1 / 0.9))
    assert not torch.equal(_dropout(x, 0.1), first)  # the generator moved on
    rows_kept = kept.float().mean(dim=1)  # no lane or position is biased
    assert rows_kept.min() > 0.8 and kept.float().mean(dim=0).std() < 0.03
    assert _dropout(x, 0.0) is x
    grad_in = torch.ones(50, 50, requires_grad=True)
    out = _dropout(grad_in, 0.5)
    out.sum().backward()
    assert torch.equal(grad_in.grad, out.detach())  # d(out)/d(in) is the scaled mask itself


def test_attention_with_dropout_is_sdpa_when_nothing_is_dropped(monkeypatch):
    from gpt_tui.engine import kernels

    torch.manual_seed(12)
    q, k, v = (torch.randn(2, 3, 9, 8) for _ in range(3))
    monkeypatch.setattr(kernels, "dropout", lambda x, p: x)
    got = kernels.causal_attention_with_dropout(q, k, v, 0.1)
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
