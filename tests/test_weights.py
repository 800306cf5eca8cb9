"""Loading GPT-2 weights in every format, checked against transformers as the oracle.

transformers is a test-only dependency: random GPT2LMHeadModels of several
shapes are saved the ways people have them, loaded through gpt-tui, and must
give Hugging Face's logits and greedy tokens.
"""

from __future__ import annotations

import json
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from gpt_tui.engine.crc32c import crc32c, unmask_crc
from gpt_tui.engine.generation import SamplingConfig, generate
from gpt_tui.engine.model import GPTConfig, GPTModel
from gpt_tui.engine.tf_checkpoint import TFCheckpoint
from gpt_tui.engine.weights import export_hf, import_weights, load_model
from gpt_tui.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures"
TF_FIXTURE = FIXTURES / "tf_gpt2_tiny"
TF_FIXTURE_HF = FIXTURES / "tf_gpt2_tiny_hf"
VOCAB = 50257

# (width, heads, context, layers, tied): widths 64, 48 and 72 (72 is not a multiple of 64).
SHAPES = {
    "w64-tied": (64, 4, 40, 2, True),
    "w48-untied": (48, 4, 36, 2, False),
    "w72-h3": (72, 3, 48, 2, True),
}


@pytest.fixture(autouse=True)
def _user_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPT_TUI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GPT_TUI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GPT_TUI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def make_hf_model(shape: str, seed: int = 0, vocab: int = VOCAB) -> GPT2LMHeadModel:
    width, heads, context, layers, tied = SHAPES[shape]
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab,
        n_positions=context,
        n_embd=width,
        n_layer=layers,
        n_head=heads,
        tie_word_embeddings=tied,
    )
    model = GPT2LMHeadModel(config).eval()
    # Random init leaves biases at zero and LayerNorm at identity; perturb every tensor so each mapping matters.
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    return model


@pytest.fixture(scope="module")
def hf_models() -> dict[str, GPT2LMHeadModel]:
    return {name: make_hf_model(name, seed=i) for i, name in enumerate(SHAPES)}


def save_safetensors(model: GPT2LMHeadModel, folder: Path) -> Path:
    model.save_pretrained(folder)
    assert (folder / "model.safetensors").is_file()
    return folder


def save_bin(model: GPT2LMHeadModel, folder: Path) -> Path:
    """transformers 5 always writes safetensors, so the .bin is written the way older releases did."""
    folder.mkdir(parents=True)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    model.config.to_json_file(str(folder / "config.json"))
    return folder


def hf_logits(model: GPT2LMHeadModel, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


def our_logits(model: GPTModel, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids)


def random_ids(context: int, seed: int = 1, batch: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (batch, context), generator=generator)


# ---------------------------------------------------------------------------
# Hugging Face layout against the transformers oracle.


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_hf_logits_and_greedy_tokens_match_transformers(shape: str, fmt: str, hf_models, tmp_path: Path) -> None:
    hf = hf_models[shape]
    width, heads, context, layers, tied = SHAPES[shape]
    folder = (save_safetensors if fmt == "safetensors" else save_bin)(hf, tmp_path / "model")

    loaded = load_model(str(folder))

    assert loaded.kind == "huggingface"
    assert loaded.config == GPTConfig(
        vocab_size=VOCAB, context_length=context, emb_dim=width, n_layers=layers, n_heads=heads,
        drop_rate=0.0, qkv_bias=True, tie_weights=tied,
    )
    assert not loaded.model.training
    ids = random_ids(context)
    torch.testing.assert_close(our_logits(loaded.model, ids), hf_logits(hf, ids), atol=1e-4, rtol=0)

    prompt = random_ids(5, seed=7, batch=1)
    ours = generate(loaded.model, prompt, SamplingConfig(max_new_tokens=30, temperature=0.0))
    hf.generation_config.eos_token_id = None
    theirs = hf.generate(prompt, max_new_tokens=30, min_new_tokens=30, do_sample=False, pad_token_id=0)
    assert ours.shape == (1, 35)
    assert ours.tolist() == theirs.tolist()


def test_single_hf_weights_file_uses_config_beside_it(hf_models, tmp_path: Path) -> None:
    hf = hf_models["w72-h3"]
    folder = save_safetensors(hf, tmp_path / "model")
    loaded = load_model(str(folder / "model.safetensors"))
    assert loaded.config.n_heads == 3
    ids = random_ids(10)
    torch.testing.assert_close(our_logits(loaded.model, ids), hf_logits(hf, ids), atol=1e-4, rtol=0)


def test_sharded_hf_checkpoint(hf_models, tmp_path: Path) -> None:
    hf = hf_models["w48-untied"]
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="5MB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    assert len(list((tmp_path / "sharded").glob("model-*.safetensors"))) > 1
    loaded = load_model(str(tmp_path / "sharded"))
    ids = random_ids(12)
    torch.testing.assert_close(our_logits(loaded.model, ids), hf_logits(hf, ids), atol=1e-4, rtol=0)


def test_hf_keys_without_transformer_prefix_and_with_mask_buffers(hf_models, tmp_path: Path) -> None:
    hf = hf_models["w64-tied"]
    state = {k.removeprefix("transformer."): v for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    # Older transformers releases saved the causal mask with the weights.
    state["h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 40, 40))
    state["h.0.attn.masked_bias"] = torch.tensor(-1e4)
    path = tmp_path / "gpt2.bin"
    torch.save(state, path)
    with pytest.raises(UserError, match="attention heads"):
        load_model(str(path))  # width 64 is no standard size and nothing says the head count
    hf.config.to_json_file(str(tmp_path / "config.json"))
    loaded = load_model(str(path))
    assert loaded.config.n_heads == 4 and loaded.config.tie_weights
    ids = random_ids(12)
    torch.testing.assert_close(our_logits(loaded.model, ids), hf_logits(hf, ids), atol=1e-4, rtol=0)


def test_padded_vocabulary_is_cut_back_to_gpt2(tmp_path: Path) -> None:
    hf = make_hf_model("w64-tied", seed=3, vocab=50304)
    folder = save_safetensors(hf, tmp_path / "padded")
    loaded = load_model(str(folder))
    assert loaded.config.vocab_size == VOCAB
    assert any("50304" in note for note in loaded.notes)
    ids = random_ids(8)
    torch.testing.assert_close(our_logits(loaded.model, ids), hf_logits(hf, ids)[..., :VOCAB], atol=1e-4, rtol=0)


# ---------------------------------------------------------------------------
# Export, import, native checkpoints.


def test_export_round_trips_through_from_pretrained(hf_models, tmp_path: Path) -> None:
    from gpt_tui.cli import main

    for shape in ("w48-untied", "w72-h3"):
        hf = hf_models[shape]
        source = save_safetensors(hf, tmp_path / shape)
        out = tmp_path / f"{shape}-export"
        assert main(["export", "--checkpoint", str(source), "--to", "hf", str(out)]) == 0
        reloaded = GPT2LMHeadModel.from_pretrained(str(out)).eval()
        ids = random_ids(SHAPES[shape][2])
        torch.testing.assert_close(hf_logits(reloaded, ids), hf_logits(hf, ids), atol=1e-4, rtol=0)


def test_export_of_a_from_scratch_model_without_qkv_bias(tmp_path: Path) -> None:
    from gpt_tui.engine.checkpoint import save_checkpoint

    torch.manual_seed(5)
    config = GPTConfig(vocab_size=VOCAB, context_length=24, emb_dim=32, n_layers=2, n_heads=2, qkv_bias=False, tie_weights=False)
    model = GPTModel(config).eval()
    path = save_checkpoint(tmp_path / "scratch.safetensors", model)
    out = export_hf(str(path), tmp_path / "hf")
    reloaded = GPT2LMHeadModel.from_pretrained(str(out)).eval()
    ids = random_ids(24)
    torch.testing.assert_close(hf_logits(reloaded, ids), our_logits(model, ids), atol=1e-4, rtol=0)


def test_export_rejects_unknown_format(hf_models, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gpt_tui.cli import main

    source = save_safetensors(hf_models["w64-tied"], tmp_path / "m")
    assert main(["export", "--checkpoint", str(source), "--to", "onnx", str(tmp_path / "out")]) == 2
    assert "hf" in capsys.readouterr().err


def test_import_then_load_by_path_name_and_run_dir(hf_models, tmp_path: Path) -> None:
    from gpt_tui.engine.checkpoint import CHECKPOINTS_SUBDIR, checkpoint_name, save_checkpoint
    from gpt_tui.paths import models_dir

    hf = hf_models["w48-untied"]
    source = save_safetensors(hf, tmp_path / "some-gpt2")
    path = import_weights(str(source))
    assert path == models_dir() / "some-gpt2.safetensors"
    ids = random_ids(20)
    expected = hf_logits(hf, ids)
    for ref in (str(path), "some-gpt2"):
        loaded = load_model(ref)
        assert loaded.kind == "gpt-tui"
        assert loaded.config.tie_weights is False and loaded.config.qkv_bias is True
        torch.testing.assert_close(our_logits(loaded.model, ids), expected, atol=1e-4, rtol=0)

    run_dir = tmp_path / "run"
    save_checkpoint(run_dir / CHECKPOINTS_SUBDIR / checkpoint_name(7), load_model("some-gpt2").model)
    torch.testing.assert_close(our_logits(load_model(str(run_dir)).model, ids), expected, atol=1e-4, rtol=0)


def test_cli_import_and_generate(hf_models, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gpt_tui.cli import main
    from gpt_tui.engine.tokenizer import text_to_token_ids, token_ids_to_text

    hf = hf_models["w64-tied"]
    source = save_safetensors(hf, tmp_path / "m")
    assert main(["import", str(source), "--name", "tiny-gpt2"]) == 0
    assert "tiny-gpt2" in capsys.readouterr().out
    prompt = "Every effort moves you"
    assert main(["generate", "--checkpoint", "tiny-gpt2", "--prompt", prompt, "--max-new-tokens", "6", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    hf.generation_config.eos_token_id = None
    ids = hf.generate(text_to_token_ids(prompt), max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0)
    assert printed.rstrip("\n") == token_ids_to_text(ids)


def test_import_rejects_bad_name(hf_models, tmp_path: Path) -> None:
    source = save_safetensors(hf_models["w64-tied"], tmp_path / "m")
    with pytest.raises(UserError, match="letters, digits"):
        import_weights(str(source), name="../escape")


def test_fine_tune_from_imported_weights(hf_models, tmp_path: Path) -> None:
    from gpt_tui.cli import main

    source = save_safetensors(hf_models["w64-tied"], tmp_path / "m")
    import_weights(str(source), name="base")
    text = tmp_path / "corpus.txt"
    text.write_text("Every effort moves you closer to the end of the line. " * 60)
    run_dir = tmp_path / "finetune"
    args = ["train", "--init-from", "base", "--data", str(text), "--context-length", "32", "--batch-size", "2",
            "--max-steps", "2", "--eval-freq", "1", "--eval-iter", "1", "--sample-tokens", "2",
            "--device", "cpu", "--run-dir", str(run_dir), "--quiet"]
    assert main(args) == 0
    tuned = load_model(str(run_dir))
    assert tuned.config.emb_dim == 64 and tuned.config.qkv_bias and tuned.config.tie_weights


# ---------------------------------------------------------------------------
# The book's naming and plain state dicts.


def book_state_from_hf(hf: GPT2LMHeadModel) -> dict[str, torch.Tensor]:
    """The book's load_weights_into_gpt, written out: split c_attn into W_query/W_key/W_value, transpose Conv1D."""
    sd = hf.state_dict()
    d = hf.config.n_embd
    out = {"tok_emb.weight": sd["transformer.wte.weight"].clone(), "pos_emb.weight": sd["transformer.wpe.weight"].clone()}
    for i in range(hf.config.n_layer):
        h, b = f"transformer.h.{i}.", f"trf_blocks.{i}."
        q_w, k_w, v_w = torch.split(sd[h + "attn.c_attn.weight"], d, dim=-1)
        q_b, k_b, v_b = torch.split(sd[h + "attn.c_attn.bias"], d, dim=-1)
        out[b + "att.W_query.weight"], out[b + "att.W_key.weight"], out[b + "att.W_value.weight"] = q_w.T, k_w.T, v_w.T
        out[b + "att.W_query.bias"], out[b + "att.W_key.bias"], out[b + "att.W_value.bias"] = q_b, k_b, v_b
        out[b + "att.out_proj.weight"] = sd[h + "attn.c_proj.weight"].T
        out[b + "att.out_proj.bias"] = sd[h + "attn.c_proj.bias"]
        out[b + "att.mask"] = torch.triu(torch.ones(hf.config.n_positions, hf.config.n_positions), diagonal=1)
        out[b + "ff.layers.0.weight"] = sd[h + "mlp.c_fc.weight"].T
        out[b + "ff.layers.0.bias"] = sd[h + "mlp.c_fc.bias"]
        out[b + "ff.layers.2.weight"] = sd[h + "mlp.c_proj.weight"].T
        out[b + "ff.layers.2.bias"] = sd[h + "mlp.c_proj.bias"]
        out[b + "norm1.scale"], out[b + "norm1.shift"] = sd[h + "ln_1.weight"], sd[h + "ln_1.bias"]
        out[b + "norm2.scale"], out[b + "norm2.shift"] = sd[h + "ln_2.weight"], sd[h + "ln_2.bias"]
    out["final_norm.scale"], out["final_norm.shift"] = sd["transformer.ln_f.weight"], sd["transformer.ln_f.bias"]
    out["out_head.weight"] = sd["lm_head.weight"].clone()
    return {k: v.contiguous() for k, v in out.items()}


def test_book_state_dict_matches_transformers(hf_models, tmp_path: Path) -> None:
    hf = hf_models["w72-h3"]
    path = tmp_path / "book.pth"
    torch.save({"model_state_dict": book_state_from_hf(hf), "optimizer_state_dict": {}}, path)

    with pytest.raises(UserError, match="n_heads"):
        load_model(str(path))  # width 72 is no standard size: the head count must be given
    (tmp_path / "book.json").write_text(json.dumps({"emb_dim": 72, "n_heads": 3}))

    loaded = load_model(str(path))
    assert loaded.kind == "book-state-dict"
    assert loaded.config.qkv_bias and loaded.config.tie_weights  # out_head equals tok_emb
    ids = random_ids(48)
    torch.testing.assert_close(our_logits(loaded.model, ids), hf_logits(hf, ids), atol=1e-4, rtol=0)


def test_book_model_from_scratch_untied_without_bias(tmp_path: Path) -> None:
    torch.manual_seed(11)
    config = GPTConfig(vocab_size=VOCAB, context_length=16, emb_dim=128, n_layers=2, n_heads=4, qkv_bias=False, tie_weights=False)
    model = GPTModel(config).eval()
    sd = model.state_dict()
    book: dict[str, torch.Tensor] = {"tok_emb.weight": sd["tok_emb.weight"], "pos_emb.weight": sd["pos_emb.weight"]}
    for i in range(2):
        q, k, v = sd[f"blocks.{i}.attn.qkv.weight"].chunk(3, dim=0)
        b = f"trf_blocks.{i}."
        book.update({b + "att.W_query.weight": q, b + "att.W_key.weight": k, b + "att.W_value.weight": v})
        for ours, theirs in [("attn.proj", "att.out_proj"), ("mlp.fc", "ff.layers.0"), ("mlp.proj", "ff.layers.2")]:
            book[b + theirs + ".weight"] = sd[f"blocks.{i}.{ours}.weight"]
            book[b + theirs + ".bias"] = sd[f"blocks.{i}.{ours}.bias"]
        for ours, theirs in [("ln1", "norm1"), ("ln2", "norm2")]:
            book[b + theirs + ".scale"] = sd[f"blocks.{i}.{ours}.weight"]
            book[b + theirs + ".shift"] = sd[f"blocks.{i}.{ours}.bias"]
    book.update({"final_norm.scale": sd["ln_f.weight"], "final_norm.shift": sd["ln_f.bias"], "out_head.weight": sd["head.weight"]})
    path = tmp_path / "model.pth"
    torch.save({k: v.clone() for k, v in book.items()}, path)
    loaded = load_model(str(path))  # width 128 is gpt-tui's tiny preset: 4 heads
    assert loaded.config == config.with_(drop_rate=0.0)
    ids = random_ids(16)
    torch.testing.assert_close(our_logits(loaded.model, ids), our_logits(model, ids), atol=1e-5, rtol=0)


def test_plain_state_dict_in_gpt_tui_naming(tmp_path: Path) -> None:
    torch.manual_seed(2)
    config = GPTConfig(vocab_size=300, context_length=12, emb_dim=40, n_layers=1, n_heads=5, qkv_bias=True, tie_weights=True)
    model = GPTModel(config).eval()
    path = tmp_path / "weights.pt"
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, path)  # as DataParallel saves
    (tmp_path / "config.json").write_text(json.dumps({"n_heads": 5}))
    loaded = load_model(str(path))
    assert loaded.kind == "state-dict" and loaded.config == config.with_(drop_rate=0.0)
    ids = torch.randint(0, 300, (2, 12))
    torch.testing.assert_close(our_logits(loaded.model, ids), our_logits(model, ids), atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------
# The Hugging Face cache, by model id, without network.


def place_in_hf_cache(hub_dir: Path, repo_id: str, source: Path) -> Path:
    """The cache layout huggingface_hub writes: refs/main -> commit, snapshots/<commit>/<files>."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    entry = hub_dir / f"models--{repo_id.replace('/', '--')}"
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(commit)
    snapshot = entry / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(source / name, snapshot / name)
    return snapshot


@pytest.mark.parametrize("layout", ["HF_HUB_CACHE", "HF_HOME", "legacy-id"])
def test_model_id_from_local_hf_cache(layout: str, hf_models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hf = hf_models["w64-tied"]
    source = save_safetensors(hf, tmp_path / "src")
    if layout == "HF_HOME":
        monkeypatch.delenv("HF_HUB_CACHE")
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        place_in_hf_cache(tmp_path / "hf-home" / "hub", "openai-community/gpt2", source)
    elif layout == "legacy-id":
        place_in_hf_cache(tmp_path / "hf-hub", "gpt2", source)
    else:
        place_in_hf_cache(tmp_path / "hf-hub", "openai-community/gpt2", source)
    loaded = load_model("gpt2")
    assert loaded.kind == "huggingface"
    ids = random_ids(40)
    torch.testing.assert_close(our_logits(loaded.model, ids), hf_logits(hf, ids), atol=1e-4, rtol=0)


def test_model_id_missing_from_cache_says_how_to_get_it() -> None:
    with pytest.raises(UserError, match="gpt-tui download gpt2-medium"):
        load_model("gpt2-medium")


# ---------------------------------------------------------------------------
# OpenAI's TensorFlow checkpoint, written by real TensorFlow (scripts/make_tf_fixture.py).


def test_tf_reader_reads_the_bytes_tensorflow_wrote() -> None:
    from safetensors.numpy import load_file

    bundle = TFCheckpoint(TF_FIXTURE / "model.ckpt")
    hparams = json.loads((TF_FIXTURE / "hparams.json").read_text())
    assert bundle.num_shards == 1
    assert bundle.entries["model/wte"].shape == (hparams["n_vocab"], hparams["n_embd"])
    assert bundle.entries["model/h1/attn/c_attn/w"].shape == (1, hparams["n_embd"], 3 * hparams["n_embd"])
    reference = load_file(str(TF_FIXTURE_HF / "model.safetensors"))  # same values, written from numpy directly
    arrays = bundle.read_all()
    assert len(arrays) == len(reference) == 4 + 12 * hparams["n_layer"]
    np.testing.assert_array_equal(arrays["model/wte"], reference["transformer.wte.weight"])
    np.testing.assert_array_equal(arrays["model/h1/mlp/c_proj/w"][0], reference["transformer.h.1.mlp.c_proj.weight"])
    np.testing.assert_array_equal(arrays["model/ln_f/g"], reference["transformer.ln_f.weight"])


def test_tf_checkpoint_logits_match_hf_path_and_transformers() -> None:
    from_tf = load_model(str(TF_FIXTURE))
    from_hf = load_model(str(TF_FIXTURE_HF))
    oracle = GPT2LMHeadModel.from_pretrained(str(TF_FIXTURE_HF)).eval()
    assert from_tf.kind == "tensorflow"
    assert from_tf.config == from_hf.config
    assert from_tf.config.vocab_size == VOCAB and from_tf.config.n_heads == 2
    ids = random_ids(32)
    tf_logits = our_logits(from_tf.model, ids)
    torch.testing.assert_close(tf_logits, our_logits(from_hf.model, ids), atol=0, rtol=0)
    torch.testing.assert_close(tf_logits, hf_logits(oracle, ids), atol=1e-4, rtol=0)
    # The prefix and the index file name the same checkpoint.
    for ref in (TF_FIXTURE / "model.ckpt", TF_FIXTURE / "model.ckpt.index"):
        torch.testing.assert_close(our_logits(load_model(str(ref)).model, ids), tf_logits, atol=0, rtol=0)


def test_tf_checkpoint_through_cli_generate_and_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gpt_tui.cli import main
    from gpt_tui.engine.tokenizer import text_to_token_ids, token_ids_to_text

    prompt = "Every effort moves you"
    assert main(["generate", "--checkpoint", str(TF_FIXTURE), "--prompt", prompt, "--max-new-tokens", "5", "--device", "cpu"]) == 0
    oracle = GPT2LMHeadModel.from_pretrained(str(TF_FIXTURE_HF)).eval()
    oracle.generation_config.eos_token_id = None
    ids = oracle.generate(text_to_token_ids(prompt), max_new_tokens=5, min_new_tokens=5, do_sample=False, pad_token_id=0)
    assert capsys.readouterr().out.rstrip("\n") == token_ids_to_text(ids)

    text = tmp_path / "eval.txt"
    text.write_text("Every effort moves you closer to the end of the line. " * 20)
    args = ["eval", "--checkpoint", str(TF_FIXTURE), "--data", str(text), "--context-length", "16", "--batch-size", "2", "--device", "cpu"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "train: loss" in out and "val:   loss" in out


def test_crc32c_known_answer_and_vectorised_path() -> None:
    from gpt_tui.engine.crc32c import _crc_update_py

    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    assert crc32c(b"") == 0
    rng = np.random.default_rng(0)
    for size in (16384, 70001, 1 << 20):
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        assert crc32c(data) == _crc_update_py(0xFFFFFFFF, data) ^ 0xFFFFFFFF


@pytest.fixture()
def tf_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "tf"
    shutil.copytree(TF_FIXTURE, folder)
    return folder


def test_tf_truncated_data_file(tf_copy: Path) -> None:
    data = tf_copy / "model.ckpt.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:-1000])
    with pytest.raises(UserError, match=r"model\.ckpt\.data-00000-of-00001.*truncated"):
        load_model(str(tf_copy))


def test_tf_corrupted_tensor_bytes(tf_copy: Path) -> None:
    data = tf_copy / "model.ckpt.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    data.write_bytes(bytes(raw))
    with pytest.raises(UserError, match=r"data-00000-of-00001.*checksum mismatch"):
        load_model(str(tf_copy))


def test_tf_truncated_or_damaged_index(tf_copy: Path) -> None:
    index = tf_copy / "model.ckpt.index"
    original = index.read_bytes()
    index.write_bytes(original[:-10])
    with pytest.raises(UserError, match=r"model\.ckpt\.index"):
        load_model(str(tf_copy))
    damaged = bytearray(original)
    damaged[20] ^= 0xFF
    index.write_bytes(bytes(damaged))
    with pytest.raises(UserError, match=r"model\.ckpt\.index.*checksum"):
        load_model(str(tf_copy))


def test_tf_missing_data_file(tf_copy: Path) -> None:
    (tf_copy / "model.ckpt.data-00000-of-00001").unlink()
    with pytest.raises(UserError, match="missing"):
        load_model(str(tf_copy))


def test_tf_compressed_blocks_are_refused_clearly(tf_copy: Path) -> None:
    index = tf_copy / "model.ckpt.index"
    raw = bytearray(index.read_bytes())
    footer = raw[-48:]
    # Footer: metaindex handle, then the index block handle (varints); mark the index block snappy-compressed.
    pos = 0
    values = []
    for _ in range(4):
        value, shift = 0, 0
        while True:
            byte = footer[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        values.append(value)
    offset, size = values[2], values[3]
    raw[offset + size] = 1
    crc = crc32c(bytes(raw[offset : offset + size + 1]))
    masked = ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF
    assert unmask_crc(masked) == crc
    raw[offset + size + 1 : offset + size + 5] = struct.pack("<I", masked)
    index.write_bytes(bytes(raw))
    with pytest.raises(UserError, match="snappy"):
        load_model(str(tf_copy))


# ---------------------------------------------------------------------------
# Untrusted and damaged files.


class _CreatesFile:
    """Unpickling this calls open(path, "w"), which creates the file: code execution a loader must refuse."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (self.path, "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
@pytest.mark.parametrize("suffix", [".bin", ".pth"])
def test_pickle_that_runs_code_is_refused(writer: str, suffix: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned.txt"
    path = tmp_path / f"evil{suffix}"
    payload = {"tok_emb.weight": torch.zeros(2, 2), "boom": _CreatesFile(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with path.open("wb") as f:
            pickle.dump(payload, f, protocol=2)
    with pytest.raises(UserError, match="Refused to load .*evil"):
        load_model(str(path))
    assert not marker.exists()


def test_pickle_refused_through_cli_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gpt_tui.cli import main

    marker = tmp_path / "pwned.txt"
    folder = tmp_path / "hf"
    folder.mkdir()
    torch.save({"boom": _CreatesFile(marker)}, folder / "pytorch_model.bin")
    (folder / "config.json").write_text("{}")
    assert main(["generate", "--checkpoint", str(folder), "--prompt", "hi", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "Refused" in err and "Traceback" not in err
    assert not marker.exists()


def test_truncated_safetensors(hf_models, tmp_path: Path) -> None:
    folder = save_safetensors(hf_models["w64-tied"], tmp_path / "m")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(UserError, match=r"model\.safetensors is corrupt or truncated"):
        load_model(str(folder))


def test_truncated_and_garbage_torch_files(hf_models, tmp_path: Path) -> None:
    folder = save_bin(hf_models["w64-tied"], tmp_path / "m")
    weights = folder / "pytorch_model.bin"
    weights.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(UserError, match=r"pytorch_model\.bin is corrupt"):
        load_model(str(folder))
    garbage = tmp_path / "noise.pth"
    garbage.write_bytes(b"\x80\x02" + bytes(range(256)) * 4)
    with pytest.raises(UserError, match=r"noise\.pth"):
        load_model(str(garbage))


def test_wrong_shapes_name_the_tensor(hf_models, tmp_path: Path) -> None:
    hf = hf_models["w64-tied"]
    state = dict(hf.state_dict())
    state["transformer.h.1.mlp.c_fc.weight"] = torch.zeros(64, 100)
    path = tmp_path / "bad.bin"
    torch.save(state, path)
    hf.config.to_json_file(str(tmp_path / "config.json"))
    with pytest.raises(UserError, match=r"bad\.bin.*h\.1\.mlp\.c_fc\.weight has shape \[100, 64\]"):
        load_model(str(path))


def test_config_that_disagrees_with_weights(hf_models, tmp_path: Path) -> None:
    folder = save_safetensors(hf_models["w64-tied"], tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["n_layer"] = 5
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="n_layer = 5"):
        load_model(str(folder))


def test_unknown_layouts_and_formats(tmp_path: Path) -> None:
    odd = tmp_path / "odd.pt"
    torch.save({"encoder.layer.0.weight": torch.zeros(3)}, odd)
    with pytest.raises(UserError, match=r"odd\.pt.*match none of the layouts"):
        load_model(str(odd))
    text = tmp_path / "notes.txt"
    text.write_text("not weights at all")
    with pytest.raises(UserError, match=r"notes\.txt is not a format gpt-tui reads\. Accepted: .*TensorFlow"):
        load_model(str(text))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="holds no weights"):
        load_model(str(empty))
    with pytest.raises(UserError, match="does not exist"):
        load_model(str(tmp_path / "nowhere" / "x.bin"))


def test_other_architectures_are_refused(hf_models, tmp_path: Path) -> None:
    folder = save_safetensors(hf_models["w64-tied"], tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["activation_function"] = "relu"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="relu"):
        load_model(str(folder))
