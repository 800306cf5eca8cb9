"""Every weight format gpt-tui reads, in one table: how to recognise it and how to read it.

A format is recognised by content where names can mislead (a ``.bin`` may be
a zip or a bare pickle, a renamed file keeps its magic bytes) and by name
where content cannot tell (shards, an index file). ``detect`` looks and never
reads tensors; ``read`` returns the weights renamed to gpt-tui's layout. The
first format whose ``detect`` says yes reads the path, so the order settles
the few paths that fit two. A new format is one entry in ``FORMATS``; a new
naming of a bare state dict is one entry in ``LAYOUTS``.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from gpt_tui.engine import hub, tf_checkpoint, tf_gpt2
from gpt_tui.engine.checkpoint import load_checkpoint
from gpt_tui.engine.file_checks import inside
from gpt_tui.engine.weight_io import first_line, load_safetensors, read_config, read_json, torch_load
from gpt_tui.engine.weight_layouts import KIND_NATIVE, KIND_TF, Weights, from_book, from_hf, from_native, strip_wrappers
from gpt_tui.errors import UserError

HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TORCH_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt"}
_TF_DATA = re.compile(r"(.+)\.data-\d{5}-of-\d{5}")


@dataclass(frozen=True)
class WeightFormat:
    name: str
    detect: Callable[[Path], bool]
    read: Callable[[Path], Weights]


def detect_format(path: Path) -> WeightFormat | None:
    """The first format in ``FORMATS`` that recognises ``path`` (a folder, a file or a TensorFlow prefix)."""
    return next((fmt for fmt in FORMATS if fmt.detect(path)), None)


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def _sniff(path: Path) -> str:
    """What a file holds, from its first and last bytes: safetensors, torch-zip, pickle, tf-index or unknown."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(16)
            if size >= tf_checkpoint.FOOTER_SIZE:
                f.seek(size - 8)
                tail = f.read(8)
            else:
                tail = b""
    except OSError as exc:
        raise UserError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if head[8:9] == b"{":  # an 8-byte header length, then the JSON header
        return "safetensors"
    if tail and struct.unpack("<Q", tail)[0] == tf_checkpoint.TABLE_MAGIC:
        return "tf-index"
    return "unknown"


# ---------------------------------------------------------------------------
# Hugging Face: config.json plus one weights file, or shards listed by an index file.


def _is_hf(path: Path) -> bool:
    if path.is_dir():
        return bool(_names(path) & set(HF_WEIGHT_FILES))
    return path.is_file() and path.name.endswith(".index.json")


def _hf_root(folder: Path) -> Path:
    """What files of ``folder`` may link into: itself, or for a cache snapshot its ``models--*`` entry (the blobs)."""
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        return folder.parent.parent
    return folder


def _read_hf(path: Path) -> Weights:
    folder = path if path.is_dir() else path.parent
    root = _hf_root(folder)
    state: dict[str, torch.Tensor] = {}
    source: Path | None = None
    for name in HF_WEIGHT_FILES:
        candidate = folder / name
        if not candidate.is_file():
            continue
        source = candidate
        inside(root, candidate, folder)
        if name.endswith(".index.json"):
            weight_map = read_json(candidate).get("weight_map")
            if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
                raise UserError(f"{candidate} has no weight_map of tensor names to file names; "
                                "restore it from the original download.")
            for shard in sorted(set(weight_map.values())):
                shard_path = folder / shard
                inside(root, shard_path, candidate)
                if not shard_path.is_file():
                    raise UserError(f"{candidate} lists {shard}, which is missing from {folder}.")
                state.update(load_safetensors(shard_path) if shard_path.suffix == ".safetensors" else torch_load(shard_path)[0])
        elif name.endswith(".safetensors"):
            state = load_safetensors(candidate)
        else:
            state = torch_load(candidate)[0]
        break
    if source is None:
        raise UserError(f"{folder} has no model.safetensors or pytorch_model.bin.")
    config_path = folder / hub.CONFIG_FILE
    hf_config = None
    if config_path.is_file():
        inside(root, config_path, folder)
        hf_config = read_config(config_path)
    return from_hf(state, source, hf_config)


# ---------------------------------------------------------------------------
# OpenAI's TensorFlow release: a folder, its .index or .data-* file, or the bare prefix (.../model.ckpt).


def _is_tensorflow(path: Path) -> bool:
    if path.is_dir():
        names = _names(path)
        return bool(names & {"hparams.json", "checkpoint"}) or any(n.endswith(".index") for n in names)
    if path.is_file():
        return bool(_TF_DATA.fullmatch(path.name)) or _sniff(path) == "tf-index" or path.suffix == ".index"
    return Path(f"{path}.index").is_file()


def _read_tensorflow(path: Path) -> Weights:
    if path.is_dir():
        folder, prefix = path, tf_gpt2.find_checkpoint_prefix(path)
    elif path.is_file():
        match = _TF_DATA.fullmatch(path.name)
        folder, prefix = path.parent, (path.with_name(match.group(1)) if match else path.with_suffix(""))
    else:
        folder, prefix = path.parent, path
    inside(folder, Path(f"{prefix}.index"), folder)  # a link to an index elsewhere is not this folder's checkpoint
    bundle = tf_checkpoint.TFCheckpoint(prefix)
    hparams_path = folder / "hparams.json"
    hparams = read_config(hparams_path) if hparams_path.is_file() else None
    arrays = tf_gpt2.gpt2_arrays(bundle)
    state = {key: torch.from_numpy(arrays.pop(key)).to(torch.float32) for key in list(arrays)}
    hf_config = tf_gpt2.hparams_as_hf_config(hparams) if hparams is not None else None
    weights = from_hf(state, bundle.index_path, hf_config)
    weights.kind = KIND_TF
    return weights


# ---------------------------------------------------------------------------
# Single files: safetensors (a gpt-tui checkpoint, or a bare state dict) and weights-only pickles.


def _is_safetensors(path: Path) -> bool:
    return path.is_file() and (_sniff(path) == "safetensors" or path.suffix == ".safetensors")


def _read_safetensors(path: Path) -> Weights:
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
    except Exception as exc:  # safetensors reports damage with its own exception types
        raise UserError(f"{path} is corrupt or truncated ({first_line(exc)}); download or copy it again.") from None
    if "gpt_tui" in metadata:  # a gpt-tui checkpoint: its header holds the config

        checkpoint = load_checkpoint(path, "cpu")
        return Weights(checkpoint.config, dict(checkpoint.model_state), KIND_NATIVE, path)
    return from_state_dict(load_safetensors(path), path, None)


def _is_pickle(path: Path) -> bool:
    return path.is_file() and (_sniff(path) in {"torch-zip", "pickle"} or path.suffix in TORCH_SUFFIXES)


def _read_pickle(path: Path) -> Weights:
    state, extra_config = torch_load(path)
    return from_state_dict(state, path, extra_config)


FORMATS: tuple[WeightFormat, ...] = (
    WeightFormat("huggingface", _is_hf, _read_hf),
    WeightFormat("tensorflow", _is_tensorflow, _read_tensorflow),
    WeightFormat("safetensors", _is_safetensors, _read_safetensors),
    WeightFormat("pytorch", _is_pickle, _read_pickle),
)


# ---------------------------------------------------------------------------
# Bare state dicts: which naming they use decides the converter.


def _sidecar_config(path: Path) -> dict[str, Any] | None:
    """A JSON config next to a bare state dict: ``<stem>.json`` or ``config.json``."""
    for candidate in (path.with_suffix(".json"), path.parent / hub.CONFIG_FILE, path.parent / "hparams.json"):
        if candidate.is_file():
            return read_config(candidate)
    return None


def _hf_sidecar(path: Path) -> dict[str, Any] | None:
    sidecar = path.parent / hub.CONFIG_FILE
    return read_config(sidecar) if sidecar.is_file() else None


@dataclass(frozen=True)
class StateLayout:
    name: str
    detect: Callable[[set[str]], bool]
    convert: Callable[[dict[str, "torch.Tensor"], Path, dict[str, Any] | None], Weights]
    sidecar: Callable[[Path], dict[str, Any] | None]  # where a config is looked for when the file holds none


LAYOUTS: tuple[StateLayout, ...] = (
    StateLayout("book", lambda keys: "tok_emb.weight" in keys and any(k.startswith("trf_blocks.") for k in keys), from_book, _sidecar_config),
    StateLayout("gpt-tui", lambda keys: "tok_emb.weight" in keys and any(k.startswith("blocks.") for k in keys), from_native, _sidecar_config),
    StateLayout("huggingface", lambda keys: any(k.removeprefix("transformer.") == "wte.weight" for k in keys), from_hf, _hf_sidecar),
)


def from_state_dict(state: dict[str, "torch.Tensor"], path: Path, extra_config: dict[str, Any] | None) -> Weights:
    """A bare state dict, renamed by the first layout in ``LAYOUTS`` its tensor names match."""
    state = {strip_wrappers(k): v for k, v in state.items()}
    keys = set(state)
    for layout in LAYOUTS:
        if layout.detect(keys):
            return layout.convert(state, path, extra_config or layout.sidecar(path))
    sample = ", ".join(sorted(keys)[:4])
    raise UserError(
        f"{path} is a state dict, but its tensor names ({sample}, ...) match none of the layouts gpt-tui reads: "
        "the book's (tok_emb, trf_blocks.N.att.W_query, out_head), Hugging Face GPT-2's (wte, h.N.attn.c_attn, ...) "
        "or gpt-tui's (tok_emb, blocks.N.attn.qkv, head)."
    )
