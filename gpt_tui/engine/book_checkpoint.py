"""Continuing the book's own run: its ``model_and_optimizer.pth`` read as a resumable checkpoint.

Chapter 5 saves ``torch.save({"model_state_dict": ..., "optimizer_state_dict": ...})``
(a PyTorch zip). Its weights are renamed as ``--init-from`` renames the book's
layout (weight_layouts.from_book); its AdamW moments are renamed the same way,
the three query, key and value tensors stacked as gpt-tui stacks them (AdamW
works element by element, so the stacked moments continue exactly). The file
is opened only after the zip checks, with ``weights_only=True``.

The file records the AdamW state but not the run's counters, so a continued
run counts its steps and epochs from 0, as the book's ``train_model_simple``
does when it is called again (exercise 5.4: one more epoch is ``--epochs 1``),
and its generator starts from ``manual_seed(seed)`` after the model is built,
as that exercise seeds before it builds its loaders. The moments keep their
own step counts, so AdamW's bias correction continues where the book stopped.

A file that is not a gpt-tui checkpoint and cannot be continued either gets a
line naming what it is and what it can be used for instead.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from gpt_tui.engine import checkpoint as ckpt
from gpt_tui.engine.model import GPTConfig, GPTModel
from gpt_tui.engine.weight_formats import _sniff, detect_format, from_state_dict
from gpt_tui.engine.weight_io import torch_load_object
from gpt_tui.errors import Notice, UserError
from gpt_tui.textsafe import visible

MODEL_KEY, OPTIMIZER_KEY = "model_state_dict", "optimizer_state_dict"
BOOK_DROP_RATE = 0.1  # chapter 5's; the file does not record it
_HYPER = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize")  # what a saved AdamW group restores
_RENAMES = {
    "norm1.scale": "ln1.weight", "norm1.shift": "ln1.bias", "norm2.scale": "ln2.weight", "norm2.shift": "ln2.bias",
    "att.out_proj.weight": "attn.proj.weight", "att.out_proj.bias": "attn.proj.bias",
    "ff.layers.0.weight": "mlp.fc.weight", "ff.layers.0.bias": "mlp.fc.bias",
    "ff.layers.2.weight": "mlp.proj.weight", "ff.layers.2.bias": "mlp.proj.bias",
}
_QKV = {"W_query": 0, "W_key": 1, "W_value": 2}


def is_torch_file(path: Path) -> bool:
    """A PyTorch zip or pickle, by its first bytes (never a gpt-tui checkpoint, which is safetensors)."""
    return path.is_file() and _sniff(path) in ("torch-zip", "pickle")


def gpt_tui_name(book_name: str) -> tuple[str, int | None]:
    """The gpt-tui parameter a book parameter is (part of), and which third of ``qkv`` when it is one."""
    if not book_name.startswith("trf_blocks."):
        return {"final_norm.scale": "ln_f.weight", "final_norm.shift": "ln_f.bias", "out_head.weight": "head.weight"}.get(
            book_name, book_name), None
    _, index, rest = book_name.split(".", 2)
    if rest.startswith("att.W_"):
        layer, kind = rest[len("att."):].split(".")
        return f"blocks.{index}.attn.qkv.{kind}", _QKV[layer]
    return f"blocks.{index}.{_RENAMES.get(rest, rest)}", None


def _not_resumable(path: Path, what: str) -> UserError:
    return UserError(f"{visible(path)} {what}; it cannot continue a run. Start from its weights with --init-from alone "
                     "(without --resume or --with-optimizer; AdamW starts afresh), or resume a gpt-tui checkpoint or run directory.")


def _weights_kind(loaded: Any) -> str:
    """What a PyTorch file without the book's two entries holds, by its names (for the refusal)."""
    if not isinstance(loaded, dict):
        return f"holds a {type(loaded).__name__}, not the book's model_state_dict and optimizer_state_dict"
    names = [str(k) for k in loaded]
    if any(n.startswith("trf_blocks.") for n in names):
        return "holds the book's GPTModel weights alone (model.state_dict(), no optimizer state)"
    if any(n.endswith("wte.weight") for n in names):
        return "holds Hugging Face GPT-2 weights (no optimizer state)"
    return "is a PyTorch file of weights without a model_state_dict and optimizer_state_dict"


def _moments(path: Path, book_state: dict[str, Any], model_state: dict[str, torch.Tensor], optimizer: Any) -> dict[str, torch.Tensor]:
    """The AdamW tensors by gpt-tui name and slot; the book's q, k and v moments stacked."""
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("state"), dict) or not isinstance(optimizer.get("param_groups"), list):
        raise _not_resumable(path, "holds an optimizer_state_dict that is not a PyTorch optimizer's")
    book_params = [name for name in book_state if not name.endswith(".att.mask")]  # parameters in the book's order
    ids = [i for group in optimizer["param_groups"] if isinstance(group, dict) for i in group.get("params", [])]
    if len(ids) != len(book_params):
        raise _not_resumable(path, f"has optimizer state for {len(ids)} parameters, not the model's {len(book_params)}")
    pieces: dict[str, dict[str, list[tuple[int, torch.Tensor]]]] = {}
    for param_id, book_name in zip(ids, book_params):
        slots = optimizer["state"].get(param_id)
        if not isinstance(slots, dict):
            raise _not_resumable(path, f"has no AdamW moments for {book_name} (saved before the first step?)")
        name, third = gpt_tui_name(book_name)
        if name not in model_state:
            raise _not_resumable(path, f"has optimizer state for {book_name}, which the model does not have")
        part = book_state[book_name]
        for slot in ("exp_avg", "exp_avg_sq"):
            moment = slots.get(slot)
            if isinstance(moment, torch.Tensor) and isinstance(part, torch.Tensor) and moment.shape != part.shape:
                raise _not_resumable(path, f"holds AdamW state of another model: {book_name}'s {slot} has shape "
                                     f"{list(moment.shape)}, its weights {list(part.shape)}")
        for slot in ("exp_avg", "exp_avg_sq", "step"):
            tensor = slots.get(slot)
            if not isinstance(tensor, torch.Tensor):
                raise _not_resumable(path, f"has no AdamW {slot} for {book_name}: not an AdamW state")
            if slot == "step" and (tensor.numel() != 1 or not 0 <= float(tensor) < 2**53):
                raise _not_resumable(path, f"has an AdamW step count for {book_name} that is not one whole number >= 0")
            pieces.setdefault(name, {}).setdefault(slot, []).append((third or 0, tensor))
    tensors = {}
    for name, slots in pieces.items():
        for slot, parts in slots.items():
            parts.sort(key=lambda part: part[0])
            tensors[f"{name}.{slot}"] = parts[0][1] if slot == "step" else torch.cat([t for _, t in parts], dim=0)
    return tensors


def load_book_checkpoint(path: Path, recipe: str, drop_rate: float | None, seed: int | None = None) -> ckpt.Checkpoint:
    """The book's ``{model_state_dict, optimizer_state_dict}`` file as a full checkpoint of ``recipe``'s optimizer layout.

    With ``seed``, the checkpoint's generator state is ``manual_seed(seed)``'s (see the module's note).
    """
    if _sniff(path) == "torch-zip" and not zipfile.is_zipfile(path):
        raise UserError(f"{visible(path)} is a PyTorch zip cut short (its end, the zip's table of contents, is missing): "
                        "copy or save it again; nothing in it can be read.")
    loaded = torch_load_object(path)
    if not isinstance(loaded, dict) or MODEL_KEY not in loaded:
        raise _not_resumable(path, _weights_kind(loaded))
    if OPTIMIZER_KEY not in loaded:
        raise _not_resumable(path, "holds a model_state_dict but no optimizer_state_dict")
    book_state = loaded[MODEL_KEY]
    if not isinstance(book_state, dict) or not any(str(k).startswith("trf_blocks.") for k in book_state):
        raise _not_resumable(path, "holds a model_state_dict that is not the book's GPTModel")
    weights = from_state_dict({k: v for k, v in book_state.items() if isinstance(v, torch.Tensor)}, path, None)
    config: GPTConfig = weights.config.with_(drop_rate=BOOK_DROP_RATE if drop_rate is None else drop_rate)
    tensors = _moments(path, book_state, weights.state, loaded[OPTIMIZER_KEY])
    with torch.device("meta"):
        names = [name for name, _ in GPTModel(config).named_parameters()]
    saved_group = next((g for g in loaded[OPTIMIZER_KEY]["param_groups"] if isinstance(g, dict)), {})
    hyper = {key: saved_group[key] for key in _HYPER if key in saved_group}
    if recipe == "book":  # one group, every parameter decays (book_recipe)
        groups = [{**hyper, "param_names": names}]
    else:  # gpt-tui's: 2-D weights decay, the rest do not (train_step.make_optimizer)
        shapes = {name: weights.state[name].dim() for name in names}
        groups = [{**hyper, "param_names": [n for n in names if shapes[n] >= 2]},
                  {**hyper, "weight_decay": 0.0, "param_names": [n for n in names if shapes[n] < 2]}]
    steps = int(float(next(t for k, t in tensors.items() if k.endswith(".step"))))
    updates = f"{steps:,} update{'' if steps == 1 else 's'}"
    warnings.warn(Notice(f"continuing the book's {visible(path)}: its weights and AdamW state after {updates}; "
                         "steps and epochs count from 0, as the book's train_model_simple does when called again."))
    rng = {} if seed is None else {"torch": torch.Generator().manual_seed(seed).get_state()}
    return ckpt.Checkpoint(
        path=path, config=config, model_state=weights.state, kind="full",
        train_state={"step": 0, "epoch": 0, "batch_in_epoch": 0, "tokens_seen": 0},
        optimizer_state={"tensors": tensors, "param_groups": groups}, rng_state=rng,
    )


def holds_optimizer_state(path: Path) -> bool:
    """Whether a PyTorch file is the book's ``{model_state_dict, optimizer_state_dict}`` (read mapped: tensors stay on disk)."""
    if not is_torch_file(path):
        return False
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception:  # noqa: BLE001 - the weights were read already; a second look that fails only says nothing
        return False
    return isinstance(loaded, dict) and MODEL_KEY in loaded and isinstance(loaded.get(OPTIMIZER_KEY), dict)


def refuse_foreign_safetensors(path: Path) -> None:
    """A safetensors file without gpt-tui's header (weights from elsewhere) gets the line saying what to do with it."""
    if not path.is_file() or _sniff(path) != "safetensors":
        return
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
    except Exception:  # noqa: BLE001 - a damaged file: the checkpoint reader words that
        return
    if "gpt_tui" not in metadata:
        raise UserError(unresumable_message(path))


def unresumable_message(path: Path) -> str:
    """What a file that is not a gpt-tui checkpoint is, and what it can be used for."""
    fmt = detect_format(path)
    what = {
        "huggingface": "holds Hugging Face GPT-2 weights",
        "tensorflow": "is an OpenAI TensorFlow checkpoint",
        "safetensors": "is a safetensors file of weights, not a gpt-tui checkpoint",
        "pytorch": "is a PyTorch file of weights",
    }.get(fmt.name if fmt else "", "is not a gpt-tui checkpoint, nor weights gpt-tui reads")
    return str(_not_resumable(path, what))
