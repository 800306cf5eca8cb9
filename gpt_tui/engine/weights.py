"""Pretrained GPT-2 weights in every form people have them, loaded into gpt-tui's model.

Accepted sources (``load_model`` tells them apart by content, not by name):

- a gpt-tui checkpoint file, or a run directory (its newest checkpoint);
- the name of a model imported earlier with ``import_weights`` (``gpt-tui import``);
- a Hugging Face folder or file: ``model.safetensors`` (or sharded, or
  ``pytorch_model.bin``) with ``config.json``; Conv1D weights stored
  transposed, q/k/v fused in ``c_attn``, keys with or without ``transformer.``,
  ``lm_head`` absent when tied;
- a Hugging Face model id (``gpt2``, ``gpt2-medium``, ``openai-community/gpt2``)
  already in the local Hugging Face cache; nothing is fetched;
- OpenAI's original TensorFlow checkpoint folder (read without TensorFlow);
- a ``.pth``/``.pt``/``.bin`` state dict in the book's naming (``tok_emb``,
  ``trf_blocks.N.att.W_query``, ..., ``out_head``), in Hugging Face's, or in gpt-tui's.

The configuration comes from the files: config.json or hparams.json when
present, otherwise the tensor shapes (the head count, which shapes cannot
show, from GPT-2's and gpt-tui's standard sizes or a JSON file alongside).

Pickled files are opened only with ``torch.load(weights_only=True)``, so a
file that would run code when unpickled is refused and nothing in it runs.

Imported weights get ``drop_rate`` 0.0: the model is in eval mode for
inference anyway, and fine-tuning pretrained GPT-2 on small text works well
without dropout; ``gpt-tui train --drop-rate`` sets another rate.
A head padded past GPT-2's 50257 tokens (e.g. 50304) is cut back to 50257:
the extra rows belong to no token the tokenizer can produce or print.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpt_tui.engine.weight_layouts import (
    GPT2_VOCAB,
    KIND_NATIVE,
    KIND_TF,
    LAYER_NORM_EPS,
    Weights,
    from_book,
    from_hf,
    from_native,
    strip_wrappers,
)
from gpt_tui.errors import UserError
from gpt_tui.paths import expand_user

if TYPE_CHECKING:
    import torch

    from gpt_tui.engine.model import GPTConfig, GPTModel

HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")

ACCEPTED = (
    "a gpt-tui checkpoint or run directory; a model name from `gpt-tui import`; a Hugging Face folder "
    "(config.json + model.safetensors or pytorch_model.bin) or a model id already in the Hugging Face cache "
    "(gpt2, gpt2-medium, gpt2-large, gpt2-xl); an OpenAI TensorFlow checkpoint folder (hparams.json, "
    "model.ckpt.index, model.ckpt.data-*); a .pth/.pt/.bin state dict in the book's, Hugging Face's or gpt-tui's naming"
)


@dataclass
class LoadedModel:
    """A model ready to use, and where it came from."""

    model: "GPTModel"  # eval mode
    config: "GPTConfig"
    kind: str  # gpt-tui, huggingface, tensorflow, book-state-dict, state-dict
    path: Path
    notes: list[str] = field(default_factory=list)  # adjustments made while loading


# ---------------------------------------------------------------------------
# Public entry points.


def load_model(source: str | Path, device: "str | torch.device" = "cpu") -> LoadedModel:
    """Load any accepted source (see the module docstring) onto ``device``, in eval mode."""
    weights = read_weights(source)
    model = _build(weights, device)
    return LoadedModel(model=model, config=weights.config, kind=weights.kind, path=weights.path, notes=weights.notes)


def import_weights(source: str | Path, name: str | None = None) -> Path:
    """Convert any loadable source into a gpt-tui model-only checkpoint under the models directory.

    The result loads by path or by ``name`` anywhere a checkpoint is accepted,
    and ``gpt-tui train --init-from`` fine-tunes from it.
    """
    from gpt_tui.engine.checkpoint import save_checkpoint
    from gpt_tui.paths import models_dir

    weights = read_weights(source)
    name = _checked_name(name) if name else _default_name(source, weights)
    model = _build(weights, "cpu")
    target = models_dir() / f"{name}.safetensors"
    meta = {"imported_from": str(source), "source_kind": weights.kind, "notes": weights.notes}
    return save_checkpoint(target, model, meta=meta)


def export_hf(source: str | Path, out_dir: str | Path) -> Path:
    """Write ``model.safetensors`` and ``config.json`` that ``GPT2LMHeadModel.from_pretrained`` loads."""
    import torch
    from safetensors.torch import save_file

    weights = read_weights(source)
    config, state = weights.config, weights.state
    out = expand_user(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; give a directory to export into.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"Cannot create {out}: {exc.strerror or exc}.") from None

    tensors: dict[str, torch.Tensor] = {
        "transformer.wte.weight": state["tok_emb.weight"],
        "transformer.wpe.weight": state["pos_emb.weight"],
        "transformer.ln_f.weight": state["ln_f.weight"],
        "transformer.ln_f.bias": state["ln_f.bias"],
    }
    d = config.emb_dim
    for i in range(config.n_layers):
        src, dst = f"blocks.{i}.", f"transformer.h.{i}."
        qkv_bias = state.get(src + "attn.qkv.bias")
        tensors.update(
            {
                dst + "ln_1.weight": state[src + "ln1.weight"],
                dst + "ln_1.bias": state[src + "ln1.bias"],
                # Conv1D keeps (in, out): the transpose of nn.Linear's (out, in).
                dst + "attn.c_attn.weight": state[src + "attn.qkv.weight"].t(),
                # GPT2's c_attn always has a bias; a model trained without one exports zeros.
                dst + "attn.c_attn.bias": qkv_bias if qkv_bias is not None else torch.zeros(3 * d),
                dst + "attn.c_proj.weight": state[src + "attn.proj.weight"].t(),
                dst + "attn.c_proj.bias": state[src + "attn.proj.bias"],
                dst + "ln_2.weight": state[src + "ln2.weight"],
                dst + "ln_2.bias": state[src + "ln2.bias"],
                dst + "mlp.c_fc.weight": state[src + "mlp.fc.weight"].t(),
                dst + "mlp.c_fc.bias": state[src + "mlp.fc.bias"],
                dst + "mlp.c_proj.weight": state[src + "mlp.proj.weight"].t(),
                dst + "mlp.c_proj.bias": state[src + "mlp.proj.bias"],
            }
        )
    if not config.tie_weights:
        tensors["lm_head.weight"] = state["head.weight"]
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()}
    hf_config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.context_length,
        "n_ctx": config.context_length,
        "n_embd": d,
        "n_layer": config.n_layers,
        "n_head": config.n_heads,
        "n_inner": None,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": LAYER_NORM_EPS,
        "resid_pdrop": config.drop_rate,
        "embd_pdrop": config.drop_rate,
        "attn_pdrop": config.drop_rate,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "tie_word_embeddings": config.tie_weights,
        "bos_token_id": GPT2_VOCAB - 1,
        "eos_token_id": GPT2_VOCAB - 1,
        "torch_dtype": "float32",
    }
    tmp = out / ".model.safetensors.tmp"
    try:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        tmp.replace(out / "model.safetensors")
        (out / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    except Exception as exc:  # OSError, or safetensors' own error for a failed write
        tmp.unlink(missing_ok=True)
        raise UserError(f"Cannot write the export into {out}: {_first_line(exc)}.") from None
    return out


def read_weights(source: str | Path) -> Weights:
    """Any accepted source, renamed to gpt-tui's layout with its config (on the CPU, not yet a model)."""
    from gpt_tui.engine import hub

    text = str(source).strip()
    if not text:
        raise UserError(f"No weights given. Accepted: {ACCEPTED}.")
    path = expand_user(text)
    if path.is_dir():
        return _read_dir(path)
    if path.is_file():
        return _read_file(path)
    if Path(f"{path}.index").is_file():  # a TensorFlow prefix such as .../model.ckpt
        return _read_tensorflow(path.parent, prefix=path)
    if re.fullmatch(r"[A-Za-z0-9._-]+", text):
        from gpt_tui.paths import models_dir

        imported = models_dir() / f"{text}.safetensors"
        if imported.is_file():
            return _read_file(imported)
    if re.fullmatch(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)?", text):
        snapshot = hub.find_cached(text)
        if snapshot is not None:
            return _read_dir(snapshot)
        if hub.canonical_name(text) is not None:
            raise UserError(
                f"{text} is not a file here and not in the Hugging Face cache at {hub.hf_cache_dir()}; "
                f"fetch it with `gpt-tui download {text}`, or pass the folder that holds its files."
            )
        if "/" in text:
            raise UserError(
                f"{text} is neither a path here nor a model in the Hugging Face cache at {hub.hf_cache_dir()}; "
                f"pass the folder that holds its config.json and weights. Accepted: {ACCEPTED}."
            )
    raise UserError(f"{text} does not exist. Accepted: {ACCEPTED}.")


# ---------------------------------------------------------------------------
# Telling formats apart.


def _read_dir(folder: Path) -> Weights:
    from gpt_tui.engine import checkpoint as ckpt

    names = {p.name for p in folder.iterdir()}
    if any(name in names for name in HF_WEIGHT_FILES):
        return _read_hf_folder(folder)
    if names & {"hparams.json", "checkpoint"} or any(n.endswith(".index") for n in names):
        return _read_tensorflow(folder)
    if (folder / ckpt.CHECKPOINTS_SUBDIR).is_dir():  # a run directory: its newest checkpoint that reads back
        return _read_file(ckpt.latest_checkpoint(folder))
    if "snapshots" in names and folder.name.startswith("models--"):
        return _read_hf_cache_entry(folder)
    candidates = [p for p in sorted(folder.iterdir()) if p.suffix in {".safetensors", ".bin", ".pt", ".pth"}]
    if len(candidates) == 1:
        return _read_file(candidates[0])
    raise UserError(f"{folder} holds no weights gpt-tui recognises. Accepted: {ACCEPTED}.")


def _read_hf_cache_entry(folder: Path) -> Weights:
    """A ``models--org--name`` folder of the Hugging Face cache: the snapshot ``refs/main`` names."""
    ref = folder / "refs" / "main"
    snapshots = folder / "snapshots"
    if ref.is_file() and (snapshots / ref.read_text().strip()).is_dir():
        return _read_dir(snapshots / ref.read_text().strip())
    found = [p for p in snapshots.iterdir() if p.is_dir()]
    if len(found) == 1:
        return _read_dir(found[0])
    raise UserError(f"{folder} has {len(found)} snapshots and no refs/main; pass the snapshot folder you want.")


def _sniff(path: Path) -> str:
    """What a file holds, from its first and last bytes: safetensors, torch-zip, pickle, tf-index or unknown."""
    from gpt_tui.engine.tf_checkpoint import FOOTER_SIZE, TABLE_MAGIC

    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(16)
            if size >= FOOTER_SIZE:
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
    if tail and struct.unpack("<Q", tail)[0] == TABLE_MAGIC:
        return "tf-index"
    return "unknown"


def _read_file(path: Path) -> Weights:
    if path.name in {"config.json", "hparams.json", "checkpoint"}:
        return _read_dir(path.parent)
    if path.name.endswith(".index.json"):
        return _read_hf_folder(path.parent)
    match = re.fullmatch(r"(.+)\.data-\d{5}-of-\d{5}", path.name)
    if match:
        return _read_tensorflow(path.parent, prefix=path.with_name(match.group(1)))
    kind = _sniff(path)
    if kind == "tf-index" or path.suffix == ".index":
        return _read_tensorflow(path.parent, prefix=path.with_suffix(""))
    if kind == "safetensors" or path.suffix == ".safetensors":
        return _read_safetensors_file(path)
    if kind in {"torch-zip", "pickle"} or path.suffix in {".bin", ".pt", ".pth", ".ckpt"}:
        state, extra_config = _torch_load(path)
        return _from_state_dict(state, path, extra_config)
    raise UserError(f"{path} is not a format gpt-tui reads. Accepted: {ACCEPTED}.")


# ---------------------------------------------------------------------------
# Reading tensors safely.


def _read_safetensors_file(path: Path) -> Weights:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
    except Exception as exc:  # safetensors reports damage with its own exception types
        raise UserError(f"{path} is corrupt or truncated ({_first_line(exc)}); download or copy it again.") from None
    if "gpt_tui" in metadata:
        return _read_native(path)
    state = _load_safetensors(path)
    return _from_state_dict(state, path, None)


def _load_safetensors(path: Path) -> dict[str, "torch.Tensor"]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:
        raise UserError(f"{path} is corrupt or truncated ({_first_line(exc)}); download or copy it again.") from None


def _torch_load(path: Path) -> tuple[dict[str, "torch.Tensor"], dict[str, Any] | None]:
    """A pickled state dict via ``weights_only=True``: tensors and plain containers only, never code."""
    import pickle

    import torch

    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _first_line(exc)
        if "weights only" in reason.lower():
            raise UserError(
                f"Refused to load {path}: unpickling it would run code or build objects other than tensors, "
                "and gpt-tui only opens pickles in weights-only mode. If you trust its origin, re-save its "
                "state dict of tensors (torch.save(model.state_dict(), ...)) or convert it to safetensors."
            ) from None
        raise UserError(f"{path} is corrupt or not a PyTorch file ({reason}).") from None
    except (RuntimeError, EOFError, ValueError, OSError, struct.error, UnicodeDecodeError, KeyError) as exc:
        raise UserError(f"{path} is corrupt, truncated or not a PyTorch file ({_first_line(exc)}).") from None
    state, config = _unwrap_state(loaded, path)
    return state, config


_STATE_KEYS = ("model_state_dict", "state_dict", "model_state", "model", "module")
_CONFIG_KEYS = ("config", "model_config", "cfg", "model_args", "hparams")


def _unwrap_state(obj: Any, path: Path) -> tuple[dict[str, "torch.Tensor"], dict[str, Any] | None]:
    """The tensors of a state dict, also inside the usual training-checkpoint wrappers."""
    import torch

    if not isinstance(obj, dict):
        raise UserError(f"{path} holds a {type(obj).__name__}, not a state dict of tensors. Accepted: {ACCEPTED}.")
    config = next((obj[k] for k in _CONFIG_KEYS if isinstance(obj.get(k), dict)), None)
    for key in _STATE_KEYS:
        inner = obj.get(key)
        if isinstance(inner, dict) and any(isinstance(v, torch.Tensor) for v in inner.values()):
            obj = inner
            break
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise UserError(f"{path} holds no tensors. Accepted: {ACCEPTED}.")
    return state, config


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({_first_line(exc)}); restore it from the original download.") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} should hold a JSON object.")
    return data


# ---------------------------------------------------------------------------
# The formats.


def _read_native(path: Path) -> Weights:
    from gpt_tui.engine.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(path, "cpu")
    return Weights(checkpoint.config, dict(checkpoint.model_state), KIND_NATIVE, path)


def _read_hf_folder(folder: Path) -> Weights:
    """config.json plus one weights file, or shards listed by an index file."""
    state: dict[str, torch.Tensor] = {}
    source: Path | None = None
    for name in HF_WEIGHT_FILES:
        candidate = folder / name
        if not candidate.is_file():
            continue
        source = candidate
        if name.endswith(".index.json"):
            weight_map = _read_json(candidate).get("weight_map")
            if not isinstance(weight_map, dict):
                raise UserError(f"{candidate} has no weight_map; restore it from the original download.")
            for shard in sorted(set(weight_map.values())):
                shard_path = folder / str(shard)
                if not shard_path.is_file():
                    raise UserError(f"{candidate} lists {shard}, which is missing from {folder}.")
                state.update(_load_safetensors(shard_path) if shard_path.suffix == ".safetensors" else _torch_load(shard_path)[0])
        elif name.endswith(".safetensors"):
            state = _load_safetensors(candidate)
        else:
            state = _torch_load(candidate)[0]
        break
    if source is None:
        raise UserError(f"{folder} has no model.safetensors or pytorch_model.bin.")
    config_path = folder / "config.json"
    hf_config = _read_json(config_path) if config_path.is_file() else None
    return from_hf(state, source, hf_config)


def _from_state_dict(state: dict[str, "torch.Tensor"], path: Path, extra_config: dict[str, Any] | None) -> Weights:
    """A bare state dict: which naming it uses decides the converter."""
    state = {strip_wrappers(k): v for k, v in state.items()}
    keys = set(state)
    if "tok_emb.weight" in keys and any(k.startswith("trf_blocks.") for k in keys):
        return from_book(state, path, extra_config or _sidecar_config(path))
    if "tok_emb.weight" in keys and any(k.startswith("blocks.") for k in keys):
        return from_native(state, path, extra_config or _sidecar_config(path))
    if any(k.removeprefix("transformer.") == "wte.weight" for k in keys):
        sidecar = path.parent / "config.json"
        hf_config = extra_config or (_read_json(sidecar) if sidecar.is_file() else None)
        return from_hf(state, path, hf_config)
    sample = ", ".join(sorted(keys)[:4])
    raise UserError(
        f"{path} is a state dict, but its tensor names ({sample}, ...) match none of the layouts gpt-tui reads: "
        "the book's (tok_emb, trf_blocks.N.att.W_query, out_head), Hugging Face GPT-2's (wte, h.N.attn.c_attn, ...) "
        "or gpt-tui's (tok_emb, blocks.N.attn.qkv, head)."
    )




def _sidecar_config(path: Path) -> dict[str, Any] | None:
    """A JSON config next to a bare state dict: ``<stem>.json`` or ``config.json``."""
    for candidate in (path.with_suffix(".json"), path.parent / "config.json", path.parent / "hparams.json"):
        if candidate.is_file():
            return _read_json(candidate)
    return None














def _read_tensorflow(folder: Path, prefix: Path | None = None) -> Weights:
    """OpenAI's release: model/wte, model/h0/attn/c_attn/w [1, nx, 3nx], ...; renamed to Hugging Face's names."""
    import torch

    from gpt_tui.engine.tf_checkpoint import TFCheckpoint, find_checkpoint_prefix

    prefix = prefix or find_checkpoint_prefix(folder)
    bundle = TFCheckpoint(prefix)
    hparams_path = folder / "hparams.json"
    hparams = _read_json(hparams_path) if hparams_path.is_file() else None
    state: dict[str, torch.Tensor] = {}
    for name in bundle.numeric_names():
        parts = name.split("/")
        if parts[0] != "model":
            continue  # optimizer slots and bookkeeping, if a training checkpoint
        rest = parts[1:]
        tensor = torch.from_numpy(bundle.read(name)).to(torch.float32)
        if rest[0] in ("wte", "wpe") and len(rest) == 1:
            key = rest[0] + ".weight"
        else:
            leaf = {"g": "weight", "b": "bias", "w": "weight"}.get(rest[-1])
            layer = re.fullmatch(r"h(\d+)", rest[0])
            if leaf is None or (layer is None and rest[0] != "ln_f"):
                raise UserError(f"{bundle.index_path} has a variable {name!r} that is not part of GPT-2.")
            if rest[-1] == "w":
                if tensor.dim() != 3 or tensor.shape[0] != 1:
                    raise UserError(f"{bundle.index_path}: {name} should have shape [1, in, out] but has {list(tensor.shape)}.")
                tensor = tensor[0]
            scope = [f"h.{layer.group(1)}"] if layer else ["ln_f"]
            key = ".".join(scope + rest[1:-1] + [leaf])
        state[key] = tensor
    if not state:
        raise UserError(f"{bundle.index_path} has no GPT-2 variables (expected names like model/wte, model/h0/...).")
    hf_config = None
    if hparams is not None:
        hf_config = {
            "n_layer": hparams.get("n_layer"),
            "n_embd": hparams.get("n_embd"),
            "n_head": hparams.get("n_head"),
            "vocab_size": hparams.get("n_vocab"),
            "n_positions": hparams.get("n_ctx"),
        }
    weights = from_hf(state, bundle.index_path, hf_config)
    weights.kind = KIND_TF
    return weights






# ---------------------------------------------------------------------------
# Checking and building.






def _build(weights: Weights, device: "str | torch.device") -> "GPTModel":
    """A model holding the weights without a second copy (built on the meta device, tensors assigned)."""
    import torch

    from gpt_tui.engine.model import GPTModel

    with torch.device("meta"):
        model = GPTModel(weights.config)
    try:
        model.load_state_dict(weights.state, strict=True, assign=True)
    except RuntimeError as exc:  # a gpt-tui checkpoint whose tensors do not match the config in its header
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0] if lines else "shapes differ"
        raise UserError(f"{weights.path} does not match the model its header describes ({detail}); use another checkpoint.") from None
    if weights.config.tie_weights:
        model.head.weight = model.tok_emb.weight
    model = model.to(device)
    if weights.config.tie_weights:
        model.head.weight = model.tok_emb.weight
    return model.eval()


def _default_name(source: str | Path, weights: Weights) -> str:
    from gpt_tui.engine import hub

    text = str(source).rstrip("/")
    short = hub.canonical_name(text)
    if short is not None:
        return short
    path = weights.path
    if "snapshots" in path.parts and path.parts[path.parts.index("snapshots") - 1].startswith("models--"):
        stem = path.parts[path.parts.index("snapshots") - 1].split("--")[-1]  # models--org--name/snapshots/<commit>/
    elif path.parent.name == "checkpoints":  # a run's checkpoint: name it after the run
        stem = path.parent.parent.name
    elif path.stem in {"model", "pytorch_model", "model.ckpt"} or path.suffix == ".index":
        stem = path.parent.name
    else:
        stem = path.stem
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip(".-")
    return cleaned or "imported"


def _checked_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise UserError(f"Model name {name!r} may use letters, digits, '.', '_' and '-' only, starting with a letter or digit.")
    return name
