import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gpt_tui.engine.model import GPTModel, PRESETS, get_preset
from gpt_tui.errors import UserError

VERDICT = Path(__file__).resolve().parents[2] / "shared" / "data" / "the-verdict.txt"


def test_presets_have_gpt2_sizes():
    sizes = {name: (c.emb_dim, c.n_layers, c.n_heads) for name, c in PRESETS.items()}
    assert sizes["gpt2-small"] == (768, 12, 12)
    assert sizes["gpt2-medium"] == (1024, 24, 16)
    assert sizes["gpt2-large"] == (1280, 36, 20)
    assert sizes["gpt2-xl"] == (1600, 48, 25)
    assert get_preset("gpt2") == get_preset("124M") == PRESETS["gpt2-small"]
    with pytest.raises(UserError, match="Unknown model preset"):
        get_preset("gpt5")
    with pytest.raises(UserError, match="1024"):
        get_preset("tiny", context_length=2048)


def test_gpt2_small_parameter_count():
    with torch.device("meta"):
        untied = GPTModel(get_preset("gpt2-small", qkv_bias=True))
        tied = GPTModel(get_preset("gpt2-small", qkv_bias=True, tie_weights=True))
    # OpenAI's 124M counts the tied head once.
    assert tied.num_parameters() == 124_439_808
    assert untied.num_parameters() == 124_439_808 + 50257 * 768


def test_causal_no_future_leak():
    torch.manual_seed(0)
    model = GPTModel(get_preset("tiny", context_length=32)).eval()
    x = torch.randint(0, 50257, (2, 20))
    y = x.clone()
    y[:, 12:] = torch.randint(0, 50257, (2, 8))
    assert torch.allclose(model(x)[:, :12], model(y)[:, :12], atol=1e-5)
    assert not torch.allclose(model(x)[:, 12:], model(y)[:, 12:], atol=1e-3)


def test_kv_cache_matches_full_forward():
    torch.manual_seed(0)
    model = GPTModel(get_preset("tiny", context_length=40, qkv_bias=True)).eval()
    x = torch.randint(0, 50257, (3, 30))
    full = model(x)
    cache = model.new_cache(3)
    parts = [model(x[:, :10], cache), model(x[:, 10:11], cache), model(x[:, 11:25], cache), model(x[:, 25:], cache)]
    assert cache.length == 30
    assert torch.allclose(full, torch.cat(parts, dim=1), atol=1e-5)
    last = model(x, last_only=True)
    assert last.shape == (3, 1, 50257) and torch.allclose(last[:, 0], full[:, -1], atol=1e-5)


def test_context_overflow_is_refused():
    model = GPTModel(get_preset("tiny", context_length=8))
    with pytest.raises(ValueError, match="context"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_init_schemes_differ_in_embedding_scale():
    torch.manual_seed(0)
    book = GPTModel(get_preset("tiny"), init="book")
    gpt2 = GPTModel(get_preset("tiny"), init="gpt2")
    assert 0.9 < book.tok_emb.weight.std().item() < 1.1  # PyTorch's default N(0, 1)
    assert 0.018 < gpt2.tok_emb.weight.std().item() < 0.022
    with pytest.raises(UserError, match="Unknown init"):
        GPTModel(get_preset("tiny"), init="xavier")


def test_tied_head_shares_the_embedding():
    model = GPTModel(get_preset("tiny", tie_weights=True))
    assert model.head.weight is model.tok_emb.weight
    assert model.num_parameters() == sum(p.numel() for n, p in model.named_parameters())


def _corpus_text() -> str:
    if VERDICT.exists():
        return VERDICT.read_text(encoding="utf-8")
    from gpt_tui.engine.corpus import default_corpus_text

    return default_corpus_text()[:25_000]


@pytest.mark.parametrize("source, init", [("builtin", "book"), ("builtin", "gpt2"), ("verdict", "book")])
def test_fresh_gpt2_small_loss_near_ln_vocab(source, init):
    if source == "verdict" and not VERDICT.exists():
        pytest.skip("the-verdict.txt is not beside this checkout")
    from gpt_tui.engine.tokenizer import encode

    text = VERDICT.read_text(encoding="utf-8") if source == "verdict" else _corpus_text()
    ids = torch.tensor(encode(text)[: 2 * 256 + 1])
    inputs = torch.stack([ids[:256], ids[256:512]])
    targets = torch.stack([ids[1:257], ids[257:513]])
    torch.manual_seed(123)
    model = GPTModel(get_preset("gpt2-small", context_length=256), init=init).eval()
    with torch.no_grad():
        loss = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten()).item()
    assert 10.5 <= loss <= 11.5, loss
    assert abs(loss - math.log(50257)) < 0.7
