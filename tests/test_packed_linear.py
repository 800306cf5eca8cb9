"""The bf16 decoding copy's reordered weights compute what the plain layers compute."""

from __future__ import annotations

import pytest
import torch

from gpt_tui.engine.generation import SamplingConfig, generate
from gpt_tui.engine.model import GPTConfig, GPTModel
from gpt_tui.engine.packed_linear import PackedLinear, packing_available
from gpt_tui.engine.precision import prepare_for_inference

pytestmark = pytest.mark.skipif(not packing_available(), reason="this torch's oneDNN has no bf16 weight packing")


def test_packed_rows_match_the_plain_bf16_layer():
    torch.manual_seed(2)
    layer = torch.nn.Linear(96, 200).to(torch.bfloat16)
    packed = PackedLinear(layer)
    for shape in ((1, 1, 96), (3, 1, 96), (2, 17, 96)):  # a decode row, beams, a prefill
        x = torch.randn(*shape).to(torch.bfloat16)
        got = packed(x)
        assert got.shape == (*shape[:-1], 200) and got.dtype == torch.bfloat16
        torch.testing.assert_close(got.float(), layer(x).float(), rtol=1.6e-2, atol=1e-2)


def test_the_bf16_copy_is_packed_and_decodes_the_plain_bf16_tokens():
    torch.manual_seed(3)
    model = GPTModel(GPTConfig(vocab_size=300, context_length=32, emb_dim=64, n_layers=2, n_heads=4, drop_rate=0.0,
                               qkv_bias=True, tie_weights=True)).eval()
    copy = prepare_for_inference(model, "bf16")
    assert isinstance(copy.blocks[0].attn.qkv, PackedLinear) and isinstance(copy.head, PackedLinear)
    assert copy.head.weight is copy.tok_emb.weight  # the tied head keeps its shared parameter, nothing more
    assert prepare_for_inference(copy, "fp32") is copy  # a decoding copy is not converted again
    plain = model.to(torch.bfloat16)
    sampling = SamplingConfig(max_new_tokens=20)
    prompt = torch.randint(0, 300, (1, 5), generator=torch.Generator().manual_seed(4))
    want, got = generate(plain, prompt, sampling), generate(copy, prompt, sampling)
    assert int((want == got).sum()) >= 24  # 5 prompt + at least 19 of 20 new tokens
