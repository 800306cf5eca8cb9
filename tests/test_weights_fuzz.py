"""Hypothesis mutates valid weight files; every load either gives the original weights or one UserError.

The files: a tiny gpt-tui checkpoint and the tiny GPT-2 fixtures (a Hugging
Face folder, an OpenAI TensorFlow folder). The mutations: a value in a
safetensors header (a tensor's dtype, shape or offsets, a field of gpt-tui's
header), a key of config.json or hparams.json, bytes of a TensorFlow index.
Any other exception fails, and so does a load whose memory peak rises more
than 300 MB above where it started (the kernel's high-water mark, reset
before each load). Derandomized, so every run tries the same examples.
"""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hostile_files as hf
from gpt_tui.engine.checkpoint import save_checkpoint
from gpt_tui.engine.model import GPTConfig, GPTModel
from gpt_tui.engine.weights import load_model
from gpt_tui.errors import UserError

TINY = GPTConfig(vocab_size=64, context_length=8, emb_dim=8, n_layers=2, n_heads=2, drop_rate=0.0, tie_weights=True)
PEAK_MB = 300
FUZZ = settings(max_examples=40, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 70) | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=4,
)
HEADER_KEYS = ["config", "config.vocab_size", "config.context_length", "config.emb_dim", "config.n_layers",
               "config.n_heads", "config.drop_rate", "config.qkv_bias", "config.tie_weights", "kind", "version",
               "format", "train_state", "meta", "param_groups"]
CONFIG_KEYS = ["n_layer", "n_embd", "n_head", "vocab_size", "n_positions", "n_inner", "layer_norm_epsilon",
               "activation_function", "model_type", "tie_word_embeddings", "scale_attn_weights", "n_ctx", "n_vocab"]


def _mb(field: str) -> float:
    return int(Path("/proc/self/status").read_text().split(f"{field}:")[1].split()[0]) / 1024


def load_or_refuse(source: Path, original: dict[str, torch.Tensor]) -> str:
    """Load ``source``: the original weights or a UserError; nothing else, and a bounded memory peak."""
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    start = _mb("VmRSS")
    try:
        state = load_model(source).model.state_dict()
        outcome = "loaded"
    except UserError as exc:
        assert "\n" not in str(exc).strip(), str(exc)
        state, outcome = None, "refused"
    assert _mb("VmHWM") - start < PEAK_MB
    if state is not None:
        assert set(state) == set(original)
        for key, tensor in original.items():
            assert torch.equal(state[key].float(), tensor.float()), key
    return outcome


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, tuple[Path, dict[str, torch.Tensor]]]:
    root = tmp_path_factory.mktemp("fuzz")
    torch.manual_seed(0)
    native = save_checkpoint(root / "tiny.safetensors", GPTModel(TINY))
    return {name: (path, load_model(path).model.state_dict())
            for name, path in (("native", native), ("hf", hf.HF_FIXTURE), ("tf", hf.TF_FIXTURE))}


def _split(data: bytes) -> tuple[dict[str, Any], bytes]:
    size = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + size]), data[8 + size :]


def _join(header: dict[str, Any], body: bytes) -> bytes:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body


def _set(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        if not isinstance(target.get(key), dict):
            return
        target = target[key]
    target[leaf] = value


TENSOR_MUTATION = st.tuples(st.integers(0, 10_000), st.sampled_from(["dtype", "shape", "data_offsets", "drop"]),
                            st.one_of(JSON_VALUES, st.sampled_from(["F16", "BF16", "I32", "U8", "F64", "BOOL"]),
                                      st.lists(st.integers(-1, 2**40), max_size=3)))


def _mutate_tensor(header: dict[str, Any], mutation: tuple[int, str, Any]) -> None:
    index, field, value = mutation
    names = sorted(k for k in header if k != "__metadata__")
    name = names[index % len(names)]
    if field == "drop":
        del header[name]
    else:
        header[name][field] = value


def _in_temp(build: Callable[[Path], Path], original: dict[str, torch.Tensor]) -> str:
    with tempfile.TemporaryDirectory(prefix="gpt-tui-fuzz-") as tmp:
        return load_or_refuse(build(Path(tmp)), original)


@FUZZ
@given(which=st.sampled_from(["native", "hf"]), tensor=st.none() | TENSOR_MUTATION,
       key=st.sampled_from(HEADER_KEYS), value=JSON_VALUES, flip=st.none() | st.tuples(st.integers(8, 4000), st.integers(0, 255)))
def test_fuzz_safetensors_headers(originals, which, tensor, key, value, flip):
    path, original = originals[which]
    file = path if which == "native" else path / "model.safetensors"

    def build(tmp: Path) -> Path:
        header, body = _split(file.read_bytes())
        if tensor is not None:
            _mutate_tensor(header, tensor)
        if which == "native":  # a field of gpt-tui's own header, inside the safetensors metadata
            inner = json.loads(header["__metadata__"]["gpt_tui"])
            _set(inner, key, value)
            header["__metadata__"]["gpt_tui"] = json.dumps(inner)
        data = bytearray(_join(header, body))
        if flip is not None and flip[0] < 8 + struct.unpack("<Q", data[:8])[0]:
            data[flip[0]] = flip[1]
        folder = tmp / "weights"
        folder.mkdir()
        if which == "hf":
            shutil.copy(path / "config.json", folder / "config.json")
        (folder / file.name).write_bytes(bytes(data))
        return folder if which == "hf" else folder / file.name

    _in_temp(build, original)


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(CONFIG_KEYS), JSON_VALUES, min_size=1, max_size=3),
       drop=st.lists(st.sampled_from(CONFIG_KEYS), max_size=2), as_text=st.none() | st.text(max_size=20))
def test_fuzz_hf_config_json(originals, changes, drop, as_text):
    path, original = originals["hf"]

    def build(tmp: Path) -> Path:
        folder = tmp / "hf"
        shutil.copytree(path, folder)
        config = json.loads((folder / "config.json").read_text())
        config.update(changes)
        for key in drop:
            config.pop(key, None)
        (folder / "config.json").write_text(as_text if as_text is not None else json.dumps(config))
        return folder

    _in_temp(build, original)


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=3),
       cut=st.none() | st.integers(0, 10_000), hparams=st.dictionaries(st.sampled_from(CONFIG_KEYS), JSON_VALUES, max_size=2))
def test_fuzz_tf_index(originals, flips, cut, hparams):
    path, original = originals["tf"]

    def build(tmp: Path) -> Path:
        folder = tmp / "tf"
        shutil.copytree(path, folder)
        index = bytearray((folder / "model.ckpt.index").read_bytes())
        for position, byte in flips:
            index[position % len(index)] = byte
        if cut is not None:
            del index[cut % (len(index) + 1):]
        (folder / "model.ckpt.index").write_bytes(bytes(index))
        params = json.loads((folder / "hparams.json").read_text())
        params.update(hparams)
        (folder / "hparams.json").write_text(json.dumps(params))
        return folder

    _in_temp(build, original)


def test_fuzz_sees_both_outcomes(originals):
    """The mutations reach both ends: an untouched file loads, a flipped checksum byte is refused."""
    path, original = originals["tf"]
    assert load_or_refuse(path, original) == "loaded"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "tf"
        shutil.copytree(path, folder)
        index = bytearray((folder / "model.ckpt.index").read_bytes())
        index[20] ^= 0xFF
        (folder / "model.ckpt.index").write_bytes(bytes(index))
        assert load_or_refuse(folder, original) == "refused"
