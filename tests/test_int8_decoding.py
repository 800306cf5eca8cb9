"""Int8 weight-only decoding of a trained model: the same greedy text as fp32, the same validation loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gpt_tui.engine.generation import SamplingConfig, generate
from gpt_tui.engine.model import GPTConfig, GPTModel
from gpt_tui.engine.precision import prepare_for_inference
from gpt_tui.engine.quantize import REDUCE_RANGE, Int8Linear, int8_copy, int8_kernel_available, is_quantized
from gpt_tui.engine.tokenizer import encode
from gpt_tui.errors import UserError
from textgen import sample_text

pytestmark = pytest.mark.skipif(int8_kernel_available(torch.device("cpu")) is not None, reason="no int8 kernel in this torch")

CONTEXT = 48


@pytest.fixture(scope="module")
def trained():
    """A small model trained for a few hundred steps on English-like text, over the corpus's own small vocabulary."""
    ids = encode(sample_text(6000, seed=3))
    vocab = sorted(set(ids))
    tokens = torch.tensor([vocab.index(i) for i in ids])
    split = int(0.9 * len(tokens))
    train, val = tokens[:split], tokens[split:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model gains nothing from a second thread, and a busy core stalls it
    torch.manual_seed(0)
    model = GPTModel(GPTConfig(vocab_size=len(vocab), context_length=256, emb_dim=64, n_layers=2, n_heads=4,
                               drop_rate=0.0, qkv_bias=True), init="gpt2")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    for _ in range(200):
        starts = torch.randint(0, len(train) - CONTEXT - 1, (16,), generator=gen)
        x = torch.stack([train[s : s + CONTEXT] for s in starts])
        y = torch.stack([train[s + 1 : s + CONTEXT + 1] for s in starts])
        loss = model(x, targets=y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    yield model.eval(), val
    torch.set_num_threads(threads)


def _val_loss(model, val: torch.Tensor) -> float:
    n = (len(val) - 1) // CONTEXT
    x = val[: n * CONTEXT].view(n, CONTEXT)
    y = val[1 : n * CONTEXT + 1].view(n, CONTEXT)
    with torch.inference_mode():
        logits = model(x)
    return F.cross_entropy(logits.float().flatten(0, 1), y.flatten()).item()


def test_int8_greedy_decoding_agrees_with_fp32_and_keeps_the_loss(trained):
    model, val = trained
    fp32_loss = _val_loss(model, val)
    assert fp32_loss < 0.8 * torch.log(torch.tensor(float(model.config.vocab_size))).item()  # it did learn
    quantized = int8_copy(model)
    assert is_quantized(quantized) and isinstance(quantized.blocks[0].mlp.fc, Int8Linear)
    assert quantized.blocks[0].mlp.fc.qweight.dtype == torch.int8
    sampling = SamplingConfig(max_new_tokens=200)
    prompt = val[:8].unsqueeze(0)
    want = generate(model, prompt, sampling)[0, 8:]
    got = generate(model, prompt, sampling.with_(quantize="int8"))[0, 8:]  # the option, through the public API
    agree = int((want == got).sum())
    int8_loss = _val_loss(quantized, val)
    print(f"int8 agrees on {agree}/200 greedy tokens; validation loss fp32 {fp32_loss:.4f}, int8 {int8_loss:.4f}")
    assert agree >= 190, f"int8 agreed with fp32 on {agree} of 200 greedy tokens"
    assert abs(int8_loss - fp32_loss) <= 0.01 * fp32_loss


def test_int8_copy_is_made_once_per_weights_and_leaves_the_model_alone(trained):
    model, _ = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    first = int8_copy(model)
    assert int8_copy(model) is first and int8_copy(first) is first
    assert prepare_for_inference(model, "auto", "int8") is first
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    with torch.no_grad():
        model.ln_f.bias.add_(0.0)  # an in-place change, as an optimizer step makes
    assert int8_copy(model) is not first


def test_int8_rows_round_to_half_a_step_per_channel():
    torch.manual_seed(4)
    layer = torch.nn.Linear(64, 40)
    layer.weight.data[3] *= 50  # one loud channel must not coarsen the others
    q = Int8Linear(layer)
    step = q.scales.float().unsqueeze(1)
    err = (q.qweight.float() * step - layer.weight).abs()
    assert bool((err <= 0.5 * step + 1e-6).all())
    assert err[0].max() < err[3].max() / 10
    plain = torch.nn.Linear(64, 40)
    q = Int8Linear(plain)
    x = torch.randn(1, 1, 64)
    torch.testing.assert_close(q(x).float(), plain(x), rtol=0.05, atol=0.05)
    many = torch.randn(20, 64)  # a prefill's rows go through the dequantized weights
    torch.testing.assert_close(q(many).float(), plain(many), rtol=0.05, atol=0.05)


def test_int8_with_fp32_is_refused_in_one_line(trained):
    model, _ = trained
    with pytest.raises(UserError, match="int8 decoding computes in bf16"):
        prepare_for_inference(model, "fp32", "int8")
    with pytest.raises(UserError, match="quantize"):
        prepare_for_inference(model, "auto", "int4")



@pytest.mark.skipif(torch.backends.quantized.engine not in ("x86", "fbgemm"), reason="no fbgemm in this torch")
def test_a_decoded_row_takes_the_dynamic_int8_kernel_within_its_rounding():
    torch.manual_seed(8)
    layer = torch.nn.Linear(96, 50)
    q = Int8Linear(layer)
    assert q.packed is not None
    weight = q.qweight.float() * q.scales.float().unsqueeze(1)  # the weights both kernels multiply by
    levels = 127.0 if REDUCE_RANGE else 255.0
    for _ in range(5):
        x = torch.randn(1, 1, 96) * 3
        got = q(x)
        assert got.dtype == torch.float32  # the row's product comes out fp32, for the fp32 residual stream
        want = x @ weight.T + layer.bias.detach()
        # The row is rounded to 8 bits over its range (zero included), off by at most half a step per input.
        step = (max(float(x.max()), 0.0) - min(float(x.min()), 0.0)) / levels
        bound = 0.5 * step * weight.abs().sum(dim=1) + 1e-4
        assert bool(((got - want).abs()[0, 0] <= bound).all())
