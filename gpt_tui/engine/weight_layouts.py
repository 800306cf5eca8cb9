"""Other layouts' GPT-2 state dicts renamed into gpt-tui's, with the config that fits them.

Each converter takes tensors already read from a file (see ``weight_formats``) and
returns ``Weights``: gpt-tui's parameter names, CPU float32, shapes checked
against the config. Hugging Face's Conv1D projections are stored (in, out) and
get transposed; the book's separate query/key/value matrices are fused into
one; a vocabulary padded past GPT-2's 50257 tokens is cut back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from gpt_tui.engine import file_checks as fc, hf_names, hub
from gpt_tui.engine.config_checks import LAYER_NORM_EPS, check_gpt2_architecture  # noqa: F401  (re-exported)
from gpt_tui.engine.model import GPTConfig
from gpt_tui.engine.model_build import meta_model
from gpt_tui.errors import UserError

if TYPE_CHECKING:

    from gpt_tui.engine.model import GPTConfig

GPT2_VOCAB = 50257
# Width -> heads for the released GPT-2 sizes and gpt-tui's own presets, used when no config says.
KNOWN_HEADS = {768: 12, 1024: 16, 1280: 20, 1600: 25, 128: 4, 256: 4}

KIND_NATIVE = "gpt-tui"
KIND_HF = "huggingface"
KIND_TF = "tensorflow"
KIND_BOOK = "book-state-dict"
KIND_STATE = "state-dict"


@dataclass
class Weights:
    """Weights renamed to gpt-tui's layout (CPU float32) with the config that fits them."""

    config: "GPTConfig"
    state: dict[str, "torch.Tensor"]
    kind: str
    path: Path
    notes: list[str] = field(default_factory=list)
    origin: dict[str, str] = field(default_factory=dict)  # gpt-tui name -> name in the file


def strip_wrappers(key: str) -> str:
    """Prefixes that DistributedDataParallel and torch.compile add to parameter names."""
    for prefix in ("module.", "_orig_mod."):
        while key.startswith(prefix):
            key = key[len(prefix):]
    return key


def _config_value(config: dict[str, Any] | None, *names: str) -> Any:
    if not config:
        return None
    for name in names:
        if config.get(name) is not None:
            return config[name]
    return None


def _infer_heads(width: int, config: dict[str, Any] | None, path: Path) -> int:
    heads = _config_value(config, "n_heads", "n_head", "num_heads", "num_attention_heads")
    if heads is not None:
        return int(heads)
    if width in KNOWN_HEADS:
        return KNOWN_HEADS[width]
    raise UserError(
        f"Cannot tell how many attention heads the model in {path} has (width {width} is not a standard size); "
        f"put a JSON file with \"n_heads\" next to it, named config.json or {path.with_suffix('.json').name}."
    )


def _layer_count(keys: set[str], pattern: str, path: Path) -> int:
    indices = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
    if not indices:
        raise UserError(f"{path} has no transformer blocks.")
    count = max(indices) + 1
    if count > min(len(keys), fc.MAX_LAYERS):  # checked before a range of the claimed size is made
        raise UserError(f"{path} names transformer block {count - 1}, more than its {len(keys)} tensors or gpt-tui's "
                        f"limit of {fc.MAX_LAYERS} blocks allow; the file is damaged or not a GPT-2 model.")
    missing = sorted(set(range(count)) - indices)
    if missing:
        raise UserError(f"{path} is missing transformer block {missing[0]} of {count}; the file is incomplete.")
    return count


def _require(state: dict[str, "torch.Tensor"], key: str, path: Path) -> "torch.Tensor":
    if key not in state:
        raise UserError(f"{path} has no tensor {key!r}; the file is incomplete or not a GPT-2 model.")
    return state[key]


def _same_tensor(head: "torch.Tensor", embedding: "torch.Tensor") -> bool:
    """A head that is the token embedding (one storage, or equal values): the model ties them."""
    return head.shape == embedding.shape and head.dtype == embedding.dtype and bool(head.data_ptr() == embedding.data_ptr() or head.equal(embedding))


def config_from_shapes(
    tok_emb: "torch.Tensor",
    pos_emb: "torch.Tensor",
    layers: int,
    *,
    qkv_bias: bool,
    tied: bool,
    hint: dict[str, Any] | None,
    path: Path,
) -> "GPTConfig":
    """The config the tensors imply: sizes from the embedding tables, heads from ``hint`` or the standard sizes.

    The head count leaves no trace in the shapes; dropout is 0.0 for imported weights (see ``weights``).
    """
    if tok_emb.dim() != 2 or pos_emb.dim() != 2 or tok_emb.shape[1] != pos_emb.shape[1]:
        raise UserError(f"{path}: the token and position embeddings should be 2-D tables of one width, "
                        f"not {list(tok_emb.shape)} and {list(pos_emb.shape)}.")
    vocab = fc.whole(int(tok_emb.shape[0]), "the vocabulary (rows of the token embedding)", path, 1, fc.MAX_VOCAB)
    width = fc.whole(int(tok_emb.shape[1]), "the width (columns of the token embedding)", path, 1, fc.MAX_WIDTH)
    fc.whole(int(pos_emb.shape[0]), "the context (rows of the position embedding)", path, 1, fc.MAX_CONTEXT)
    return GPTConfig(
        vocab_size=int(vocab),
        context_length=int(pos_emb.shape[0]),
        emb_dim=int(width),
        n_layers=layers,
        n_heads=_infer_heads(int(width), hint, path),
        drop_rate=0.0,
        qkv_bias=qkv_bias,
        tie_weights=tied,
    )


def from_hf(state: dict[str, "torch.Tensor"], path: Path, hf_config: dict[str, Any] | None) -> Weights:
    """Hugging Face GPT-2: Conv1D weights are (in, out), so every projection is transposed."""
    state = {k.removeprefix("transformer."): v for k, v in state.items()}
    # Causal-mask buffers that older transformers versions saved with the weights.
    state = {k: v for k, v in state.items() if not re.fullmatch(r"h\.\d+\.attn\.(bias|masked_bias)", k)}
    check_gpt2_architecture(hf_config, path.parent / hub.CONFIG_FILE if path.is_file() else path / hub.CONFIG_FILE)
    wte = _require(state, "wte.weight", path)
    wpe = _require(state, "wpe.weight", path)
    if wte.dim() != 2 or wpe.dim() != 2:
        raise UserError(f"{path}: wte and wpe must be 2-D tables, got shapes {list(wte.shape)} and {list(wpe.shape)}.")
    vocab, width = wte.shape
    layers = _layer_count(set(state), r"h\.(\d+)\.", path)
    declared = {
        "n_layer": (_config_value(hf_config, "n_layer", "num_hidden_layers"), layers),
        "n_embd": (_config_value(hf_config, "n_embd", "hidden_size"), width),
        "vocab_size": (_config_value(hf_config, "vocab_size"), vocab),
        "n_positions": (_config_value(hf_config, "n_positions", "max_position_embeddings"), wpe.shape[0]),
    }
    for name, (said, found) in declared.items():
        if said is not None and int(said) != int(found):
            raise UserError(f"{path}: config.json says {name} = {said} but the weights have {found}; the files do not belong together.")
    lm_head = state.pop(hf_names.HEAD[1], None)
    tied = lm_head is None or _same_tensor(lm_head, wte)
    if hf_config is not None and hf_config.get("tie_word_embeddings", True) is False and lm_head is not None:
        tied = False
    qkv_bias = "h.0.attn.c_attn.bias" in state
    config = config_from_shapes(wte, wpe, layers, qkv_bias=qkv_bias, tied=tied, hint=hf_config, path=path)
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}

    def put(dst: str, src: str, transpose: bool = False) -> None:
        tensor = _require(state, src, path)
        del state[src]  # renamed tensors leave the source dict, so each can be freed once converted
        if transpose:
            if tensor.dim() != 2:
                raise UserError(f"{path}: {src} should be a 2-D matrix but has shape {list(tensor.shape)}.")
            tensor = tensor.t()
        out[dst] = tensor
        origin[dst] = src

    for ours, theirs, transposed in hf_names.name_pairs(layers, qkv_bias):
        put(ours, theirs, transpose=transposed)
    if tied:
        out["head.weight"] = out["tok_emb.weight"]
        origin["head.weight"] = "wte.weight"
    else:
        out["head.weight"] = lm_head  # type: ignore[assignment]
        origin["head.weight"] = hf_names.HEAD[1]
    leftover = sorted(state)
    if leftover:
        raise UserError(f"{path} has tensors a GPT-2 model does not have ({', '.join(leftover[:3])}); it is another architecture.")
    return finish(config, out, KIND_HF, path, origin)


def from_book(state: dict[str, "torch.Tensor"], path: Path, config_hint: dict[str, Any] | None) -> Weights:
    """The book's GPTModel: separate W_query/W_key/W_value (nn.Linear), LayerNorm scale/shift, out_head."""
    tok = _require(state, "tok_emb.weight", path)
    pos = _require(state, "pos_emb.weight", path)
    layers = _layer_count(set(state), r"trf_blocks\.(\d+)\.", path)
    qkv_bias = "trf_blocks.0.att.W_query.bias" in state
    head = _require(state, "out_head.weight", path)
    tied = _same_tensor(head, tok)
    config = config_from_shapes(tok, pos, layers, qkv_bias=qkv_bias, tied=tied, hint=config_hint, path=path)
    out: dict[str, torch.Tensor] = {"tok_emb.weight": tok, "pos_emb.weight": pos}
    origin = {"tok_emb.weight": "tok_emb.weight", "pos_emb.weight": "pos_emb.weight"}
    renames = {
        "norm1.scale": "ln1.weight",
        "norm1.shift": "ln1.bias",
        "att.out_proj.weight": "attn.proj.weight",
        "att.out_proj.bias": "attn.proj.bias",
        "norm2.scale": "ln2.weight",
        "norm2.shift": "ln2.bias",
        "ff.layers.0.weight": "mlp.fc.weight",
        "ff.layers.0.bias": "mlp.fc.bias",
        "ff.layers.2.weight": "mlp.proj.weight",
        "ff.layers.2.bias": "mlp.proj.bias",
    }
    for i in range(layers):
        src, dst = f"trf_blocks.{i}.", f"blocks.{i}."
        for old, new in renames.items():
            out[dst + new] = _require(state, src + old, path)
            origin[dst + new] = src + old
        parts = [_require(state, f"{src}att.W_{name}.weight", path) for name in ("query", "key", "value")]
        if len({tuple(p.shape) for p in parts}) != 1:
            raise UserError(f"{path}: W_query, W_key and W_value of block {i} differ in shape.")
        out[dst + "attn.qkv.weight"] = torch.cat(parts, dim=0)
        origin[dst + "attn.qkv.weight"] = f"{src}att.W_query.weight"
        if qkv_bias:
            out[dst + "attn.qkv.bias"] = torch.cat([_require(state, f"{src}att.W_{n}.bias", path) for n in ("query", "key", "value")])
            origin[dst + "attn.qkv.bias"] = f"{src}att.W_query.bias"
    out["ln_f.weight"] = _require(state, "final_norm.scale", path)
    out["ln_f.bias"] = _require(state, "final_norm.shift", path)
    out["head.weight"] = out["tok_emb.weight"] if tied else head
    origin.update({"ln_f.weight": "final_norm.scale", "ln_f.bias": "final_norm.shift", "head.weight": "out_head.weight"})
    return finish(config, out, KIND_BOOK, path, origin)


def from_native(state: dict[str, "torch.Tensor"], path: Path, config_hint: dict[str, Any] | None) -> Weights:
    """gpt-tui's own parameter names in a plain ``torch.save(model.state_dict())`` file."""
    tok = _require(state, "tok_emb.weight", path)
    pos = _require(state, "pos_emb.weight", path)
    head = state.get("head.weight")
    tied = head is None or _same_tensor(head, tok)
    layers = _layer_count(set(state), r"blocks\.(\d+)\.", path)
    qkv_bias = "blocks.0.attn.qkv.bias" in state
    config = config_from_shapes(tok, pos, layers, qkv_bias=qkv_bias, tied=tied, hint=config_hint, path=path)
    out = dict(state)
    if tied:
        out["head.weight"] = out["tok_emb.weight"]
    return finish(config, out, KIND_STATE, path, {k: k for k in out})


def finish(config: "GPTConfig", state: dict[str, "torch.Tensor"], kind: str, path: Path, origin: dict[str, str]) -> Weights:
    """Check names and shapes against the config, cut a padded vocabulary, make everything float32."""
    notes: list[str] = []
    if config.vocab_size > GPT2_VOCAB:
        notes.append(f"vocabulary cut from {config.vocab_size} to GPT-2's {GPT2_VOCAB} (padding rows dropped)")
        state["tok_emb.weight"] = state["tok_emb.weight"][:GPT2_VOCAB]
        state["head.weight"] = state["tok_emb.weight"] if config.tie_weights else state["head.weight"][:GPT2_VOCAB]
        config = config.with_(vocab_size=GPT2_VOCAB)
    expected = _expected_shapes(config)
    problems: list[str] = []
    for key, shape in expected.items():
        if key not in state:
            problems.append(f"{origin.get(key, key)} is missing")
        elif tuple(state[key].shape) != shape:
            src = origin.get(key, key)
            problems.append(f"{src} has shape {list(state[key].shape)} where this model needs {list(shape)} (as {key})")
    extra = sorted(set(state) - set(expected))
    if extra:
        problems.append(f"unexpected tensor {origin.get(extra[0], extra[0])}")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(f"{path} does not fit a GPT-2 model of its own shape: {problems[0]}{more}.")
    dtypes = {str(t.dtype).removeprefix("torch.") for t in state.values()}
    for key, tensor in state.items():
        if not tensor.is_floating_point():
            raise UserError(f"{path}: {origin.get(key, key)} holds {tensor.dtype} values, not floating-point weights.")
    if dtypes != {"float32"}:
        notes.append(f"weights stored as {', '.join(sorted(dtypes))} converted to float32")
    converted: dict[str, torch.Tensor] = {}
    for key in list(state):
        # Popping first lets a transposed view's storage go as soon as its contiguous copy exists.
        converted[key] = state.pop(key).to(torch.float32).contiguous()
    if config.tie_weights:
        converted["head.weight"] = converted["tok_emb.weight"]
    return Weights(config, converted, kind, path, notes, origin)


def _expected_shapes(config: "GPTConfig") -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in meta_model(config).state_dict().items()}
