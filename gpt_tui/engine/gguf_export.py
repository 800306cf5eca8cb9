"""Writing a model as a GGUF file, the format llama.cpp and the tools built on it load.

llama.cpp's ``gpt2`` architecture is gpt-tui's model: pre-LayerNorm blocks
with biases everywhere, a fused query/key/value projection, learned
positions, tanh GELU. Its tensors use gpt-tui's ``nn.Linear`` layout (out
rows of in columns), which GGUF records with the dimensions listed
innermost first. The tokenizer goes in the file too: GPT-2's byte-level BPE
as tokens (bytes spelled through GPT-2's byte-to-character table) and
merges. tiktoken keeps only the ranks of merged tokens, so each merge is
recovered by running BPE on a token with only the earlier ranks allowed:
what is left is the pair that makes it.

``--type``: ``f32`` keeps every value; ``bf16`` and ``q8_0`` store the
matrices (token embedding, projections, head) in that type and keep the
norms, biases and position table in f32, as llama.cpp's own converter does.
A q8_0 matrix whose rows are not whole blocks of 32 stays f32.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpt_tui import fileio
from gpt_tui.engine.tokenizer import EOT_ID, EOT_TOKEN, VOCAB_SIZE, get_tokenizer
from gpt_tui.engine.weight_layouts import LAYER_NORM_EPS
from gpt_tui.engine.weight_sources import read_weights
from gpt_tui.errors import UserError
from gpt_tui.extras import require
from gpt_tui.paths import expand_user
from gpt_tui.textsafe import visible

if TYPE_CHECKING:
    import numpy as np
    import torch

    from gpt_tui.engine.model import GPTConfig

GGUF_TYPES = ("f32", "bf16", "q8_0")
ARCH = "gpt2"
Q8_BLOCK = 32  # values per q8_0 block: a row must hold whole blocks

# gpt-tui name (per block: the suffix after ``blocks.N.``) -> llama.cpp name
_GLOBAL_NAMES = {
    "tok_emb.weight": "token_embd.weight",
    "pos_emb.weight": "position_embd.weight",
    "ln_f.weight": "output_norm.weight",
    "ln_f.bias": "output_norm.bias",
    "head.weight": "output.weight",
}
_BLOCK_NAMES = {
    "ln1.weight": "attn_norm.weight",
    "ln1.bias": "attn_norm.bias",
    "attn.qkv.weight": "attn_qkv.weight",
    "attn.qkv.bias": "attn_qkv.bias",
    "attn.proj.weight": "attn_output.weight",
    "attn.proj.bias": "attn_output.bias",
    "ln2.weight": "ffn_norm.weight",
    "ln2.bias": "ffn_norm.bias",
    "mlp.fc.weight": "ffn_up.weight",
    "mlp.fc.bias": "ffn_up.bias",
    "mlp.proj.weight": "ffn_down.weight",
    "mlp.proj.bias": "ffn_down.bias",
}
# Kept in f32 whatever the type: llama.cpp reads these only as f32 (norms, biases) or wants them exact.
_ALWAYS_F32 = {"position_embd.weight"}


def _gguf() -> Any:
    return require("gguf", "gguf", "Exporting to GGUF")


def gguf_name(name: str) -> str:
    """llama.cpp's name for the gpt-tui parameter ``name``."""
    if name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[name]
    _, layer, rest = name.split(".", 2)  # blocks.N.rest
    return f"blk.{layer}.{_BLOCK_NAMES[rest]}"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table from bytes to printable characters: the alphabet its vocabulary is spelled in."""
    kept = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in kept}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _split_by_rank(ranks: dict[bytes, int], token: bytes, rank: int) -> list[bytes]:
    """BPE over ``token`` allowing only merges ranked below ``rank``: the parts its own merge joins."""
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best: tuple[int, int] | None = None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < rank and (best is None or r < best[0]):
                best = (r, i)
        if best is None:
            break
        i = best[1]
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    return parts


@functools.lru_cache(maxsize=1)
def gpt2_vocabulary() -> tuple[list[str], list[str]]:
    """GPT-2's tokens (in id order, ``<|endoftext|>`` last) and merges (``"left right"``, in rank order)."""
    enc = get_tokenizer()
    spell = bytes_to_unicode()
    token_bytes = [enc.decode_single_token_bytes(i) for i in range(EOT_ID)]
    ranks = {b: i for i, b in enumerate(token_bytes)}  # GPT-2's ids are its BPE ranks
    tokens = ["".join(spell[b] for b in t) for t in token_bytes] + [EOT_TOKEN]
    merges = []
    for rank, token in enumerate(token_bytes):
        if len(token) < 2:
            continue
        parts = _split_by_rank(ranks, token, rank)
        if len(parts) != 2:  # not reachable by merges: GPT-2 has none such
            raise ValueError(f"token {rank} has no merge")
        merges.append(" ".join("".join(spell[b] for b in part) for part in parts))
    return tokens, merges


def _check_exportable(config: "GPTConfig") -> None:
    if config.vocab_size < VOCAB_SIZE:
        raise UserError(
            f"This model has a vocabulary of {config.vocab_size} tokens; GGUF export writes GPT-2's tokenizer "
            f"({VOCAB_SIZE} tokens), so it needs a model with at least that many."
        )


def stored_tensor(gguf: Any, name: str, value: "torch.Tensor", qtype: Any) -> tuple["np.ndarray", Any]:
    """The array to store and its type: f32 for vectors and the position table, ``qtype`` for the rest."""
    import torch

    f32 = gguf.GGMLQuantizationType.F32
    if value.dim() < 2 or name in _ALWAYS_F32 or qtype == f32:
        return value.float().contiguous().numpy(), f32
    if qtype == gguf.GGMLQuantizationType.BF16:  # torch's rounding, the one gpt-tui's bf16 uses
        return value.to(torch.bfloat16).contiguous().view(torch.uint8).numpy(), qtype  # bytes, as gguf.quantize gives
    if value.shape[-1] % Q8_BLOCK:
        return value.float().contiguous().numpy(), f32
    return gguf.quantize(value.float().contiguous().numpy(), qtype), qtype


def export_gguf(source: str | Path, out_path: str | Path, gguf_type: str = "f32") -> Path:
    """Write ``source`` (anything ``load_model`` accepts) as one GGUF file at ``out_path``, whole or not at all."""
    if gguf_type not in GGUF_TYPES:
        raise UserError(f"Unknown GGUF type {gguf_type!r}; choose one of: {', '.join(GGUF_TYPES)}.")
    gguf = _gguf()
    out = expand_user(out_path)
    if out.is_dir():
        raise UserError(f"{visible(out)} is a folder; give a file name for the GGUF export, e.g. {visible(out / 'model.gguf')}.")
    if not out.parent.is_dir():
        raise UserError(f"The folder {visible(out.parent)} does not exist; create it or pick another path.")
    fileio.refuse_link(out)
    weights = read_weights(source)
    config, state = weights.config, weights.state
    _check_exportable(config)
    qtypes = {"f32": gguf.GGMLQuantizationType.F32, "bf16": gguf.GGMLQuantizationType.BF16,
              "q8_0": gguf.GGMLQuantizationType.Q8_0}
    file_types = {"f32": gguf.LlamaFileType.ALL_F32, "bf16": gguf.LlamaFileType.MOSTLY_BF16,
                  "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}

    def write(tmp: Path) -> None:
        writer = gguf.GGUFWriter(None, ARCH)
        _add_metadata(gguf, writer, config, file_types[gguf_type], name=weights.path.stem)
        for name, value in _export_tensors(state, config).items():
            data, qtype = stored_tensor(gguf, name, value, qtypes[gguf_type])
            writer.add_tensor(name, data, raw_dtype=qtype)
        try:
            writer.write_header_to_file(path=tmp)
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()

    try:
        return fileio.atomic_write_to_path(out, write)
    except UserError:
        raise
    except OSError as exc:
        raise UserError(f"Cannot write {visible(out)}: {visible(exc.strerror or exc)}.") from None


def _export_tensors(state: dict[str, "torch.Tensor"], config: "GPTConfig") -> dict[str, "torch.Tensor"]:
    """llama.cpp's tensors by name; a missing q/k/v bias becomes zeros (llama.cpp requires one)."""
    import torch

    out: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        if name == "head.weight" and config.tie_weights:
            continue  # llama.cpp reuses token_embd when output is absent
        out[gguf_name(name)] = value.detach()
    for layer in range(config.n_layers):
        key = f"blk.{layer}.attn_qkv.bias"
        if key not in out:
            out[key] = torch.zeros(3 * config.emb_dim)
    return out


def _add_metadata(gguf: Any, writer: Any, config: "GPTConfig", file_type: int, name: str) -> None:
    tokens, merges = gpt2_vocabulary()
    token_types = [gguf.TokenType.NORMAL] * EOT_ID + [gguf.TokenType.CONTROL]
    padding = config.vocab_size - VOCAB_SIZE  # rows past GPT-2's tokens: named, never produced by the tokenizer
    tokens = tokens + [f"[PAD{i}]" for i in range(padding)]
    token_types = token_types + [gguf.TokenType.UNUSED] * padding
    writer.add_name(name)
    writer.add_context_length(config.context_length)
    writer.add_embedding_length(config.emb_dim)
    writer.add_feed_forward_length(4 * config.emb_dim)
    writer.add_block_count(config.n_layers)
    writer.add_head_count(config.n_heads)
    writer.add_layer_norm_eps(LAYER_NORM_EPS)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(EOT_ID)
    writer.add_eos_token_id(EOT_ID)
    writer.add_add_bos_token(False)
