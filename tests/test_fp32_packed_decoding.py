"""The fp32 decoding copy: packed weights per shape, the same products and tokens as the plain model, tensors shared."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gpt_tui.engine.decoding import stream_tokens
from gpt_tui.engine.generation import SamplingConfig, decoding_model
from gpt_tui.engine.model import GPTConfig, GPTModel
from gpt_tui.engine.packed_linear import Fp32PackedLinear, fp32_decoding_model, fp32_packing_available

pytestmark = pytest.mark.skipif(not fp32_packing_available(), reason="this torch has neither MKL nor oneDNN packing")


def _model() -> GPTModel:
    torch.manual_seed(5)
    return GPTModel(GPTConfig(vocab_size=300, context_length=40, emb_dim=64, n_layers=2, n_heads=4, drop_rate=0.0,
                              qkv_bias=True, tie_weights=True)).eval()


def test_each_shape_gets_its_kernel_and_one_row_matches_the_plain_layer():
    torch.manual_seed(6)
    kinds = set()
    for out_features, in_features in ((192, 64), (64, 256), (64, 64)):
        layer = torch.nn.Linear(in_features, out_features)
        packed = Fp32PackedLinear(layer)
        kinds.add(packed.kind)
        assert packed.weight is layer.weight  # shared, not copied
        for shape in ((1, 1, in_features), (2, 7, in_features)):  # a decoded row, a prompt's rows
            x = torch.randn(*shape)
            with torch.inference_mode():
                got = packed(x)
            assert got.shape == (*shape[:-1], out_features) and got.dtype == torch.float32
            torch.testing.assert_close(got, F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)
    assert kinds == {"mkl", "mkldnn", "plain"} or not torch.backends.mkl.is_available()


def test_the_copy_shares_the_weights_decodes_the_same_tokens_and_follows_training():
    model = _model()
    assert fp32_decoding_model(model) is model  # a small model stays as it is: its weights sit in cache
    copy = fp32_decoding_model(model, min_parameters=0)
    assert copy is not model and isinstance(copy.head, Fp32PackedLinear)
    assert copy.tok_emb.weight.data_ptr() == model.tok_emb.weight.data_ptr()
    assert copy.blocks[1].mlp.fc.weight.data_ptr() == model.blocks[1].mlp.fc.weight.data_ptr()
    assert fp32_decoding_model(model, min_parameters=0) is copy  # made once per weights
    sampling = SamplingConfig(max_new_tokens=30)
    prompt = torch.randint(0, 300, (1, 6), generator=torch.Generator().manual_seed(7))
    want = torch.stack(list(stream_tokens(model, prompt, sampling)), 1)
    got = torch.stack(list(stream_tokens(copy, prompt, sampling)), 1)
    assert torch.equal(want, got)
    with torch.no_grad():
        model.blocks[0].mlp.fc.weight.mul_(1.5)  # an optimizer step changes the weights in place
    again = fp32_decoding_model(model, min_parameters=0)
    assert again is not copy
    with torch.inference_mode():
        row = torch.randn(1, 1, 64)
        torch.testing.assert_close(again.blocks[0].mlp.fc(row), model.blocks[0].mlp.fc(row), rtol=1e-5, atol=1e-5)
    assert decoding_model(model, sampling) is model  # below the size where packing pays, generation decodes as is
