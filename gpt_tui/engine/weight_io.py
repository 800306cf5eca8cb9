"""Opening weight files without trusting them.

Pickled files are opened only with ``torch.load(weights_only=True)``, so a
file that would run code when unpickled is refused and nothing in it runs.
Damage of any kind (truncation, bad JSON, a foreign pickle) becomes one
``UserError`` line that names the file and what to do, never a traceback.
"""

from __future__ import annotations

import json
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from gpt_tui.engine.config_checks import json_config
from gpt_tui.engine.zip_checks import check_torch_zip
from gpt_tui.errors import UserError

# What every refusal of a source lists, so the user sees what would have worked.
ACCEPTED = (
    "a gpt-tui checkpoint or run directory; a model name from `gpt-tui import`; a Hugging Face folder "
    "(config.json + model.safetensors or pytorch_model.bin) or a model id already in the Hugging Face cache "
    "(gpt2, gpt2-medium, gpt2-large, gpt2-xl); an OpenAI TensorFlow checkpoint folder (hparams.json, "
    "model.ckpt.index, model.ckpt.data-*); a .pth/.pt/.bin state dict in the book's, Hugging Face's or gpt-tui's naming"
)

_STATE_KEYS = ("model_state_dict", "state_dict", "model_state", "model", "module")
_CONFIG_KEYS = ("config", "model_config", "cfg", "model_args", "hparams")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


MAX_JSON_BYTES = 64 << 20  # a sharded model's index is a few MB; a larger "config" is no config


def read_json(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise UserError(f"{path} is {path.stat().st_size:,} bytes, far larger than a config or index; "
                            "restore it from the original download.")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({first_line(exc)}); restore it from the original download.") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} should hold a JSON object.")
    return data


def read_config(path: Path) -> dict[str, Any]:
    """A config.json, hparams.json or sidecar config, every value the loaders use checked."""
    return json_config(read_json(path), path)


def load_safetensors(path: Path) -> dict[str, "torch.Tensor"]:
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors reports damage with its own exception types
        raise UserError(f"{path} is corrupt or truncated ({first_line(exc)}); download or copy it again.") from None


def torch_load(path: Path) -> tuple[dict[str, "torch.Tensor"], dict[str, Any] | None]:
    """A pickled state dict via ``weights_only=True``: tensors and plain containers only, never code."""
    state, config = _unwrap_state(torch_load_object(path), path)
    return state, (None if config is None else json_config(config, path))


def torch_load_object(path: Path) -> Any:
    """What a PyTorch file holds, zip-checked and unpickled with ``weights_only=True`` (no code, ever)."""
    if zipfile.is_zipfile(path):
        check_torch_zip(path)  # declared sizes against the file's, before anything is decompressed
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = first_line(exc)
        if "weights only" in reason.lower():
            raise UserError(
                f"Refused to load {path}: unpickling it would run code or build objects other than tensors, "
                "and gpt-tui only opens pickles in weights-only mode. If you trust its origin, re-save its "
                "state dict of tensors (torch.save(model.state_dict(), ...)) or convert it to safetensors."
            ) from None
        raise UserError(f"{path} is corrupt or not a PyTorch file ({reason}).") from None
    except (RuntimeError, EOFError, ValueError, OSError, struct.error, UnicodeDecodeError, KeyError) as exc:
        raise UserError(f"{path} is corrupt, truncated or not a PyTorch file ({first_line(exc)}).") from None
    return loaded


def _unwrap_state(obj: Any, path: Path) -> tuple[dict[str, "torch.Tensor"], dict[str, Any] | None]:
    """The tensors of a state dict, also inside the usual training-checkpoint wrappers."""
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
