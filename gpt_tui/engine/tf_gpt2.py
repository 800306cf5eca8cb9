"""OpenAI's GPT-2 release as a TensorFlow checkpoint folder: its prefix, variables and hparams.

``tf_checkpoint`` reads any tensor bundle; this module knows the GPT-2 one:
which prefix a folder's ``checkpoint`` file names (within that folder only,
whatever path the machine that wrote it used), OpenAI's variable names under
Hugging Face's, and hparams.json in config.json's words, so that release goes
through the same converter as a Hugging Face folder.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from gpt_tui.engine.file_checks import inside
from gpt_tui.engine.tf_checkpoint import TFCheckpoint
from gpt_tui.errors import UserError


def find_checkpoint_prefix(folder: Path) -> Path:
    """The bundle prefix in a checkpoint folder: from its ``checkpoint`` file, else the only ``*.index``.

    The path in ``checkpoint`` may be absolute from the machine that wrote it, or
    lead elsewhere; only its last component is looked for, in ``folder``.
    """
    state = folder / "checkpoint"
    if state.is_file():
        with state.open("rb") as f:  # a few lines; a huge file is not read whole
            text = f.read(1 << 16).decode(errors="replace")
        match = re.search(r'^model_checkpoint_path:\s*"(.*)"\s*$', text, re.MULTILINE)
        name = PurePath(match.group(1).replace("\\", "/")).name if match else ""
        if name not in ("", ".", "..") and (folder / f"{name}.index").is_file():
            inside(folder, folder / f"{name}.index", state)
            return folder / name
    indexes = sorted(folder.glob("*.index"))
    if len(indexes) == 1:
        inside(folder, indexes[0], folder)
        return indexes[0].with_suffix("")
    if not indexes and name:
        raise UserError(f"{state} names {match.group(1)}, which is not in {folder}; gpt-tui reads only files within "
                        f"the folder it was given, so put {name}.index and its data files there.")
    if not indexes:
        raise UserError(f"No TensorFlow checkpoint in {folder}: expected model.ckpt.index and model.ckpt.data-* files.")
    names = ", ".join(p.name for p in indexes)
    raise UserError(f"{folder} holds several TensorFlow checkpoints ({names}); name one by its prefix, e.g. {indexes[-1].with_suffix('')}.")


def gpt2_arrays(bundle: TFCheckpoint) -> dict[str, np.ndarray]:
    """OpenAI's release renamed to Hugging Face's GPT-2 names: model/h0/attn/c_attn/w [1, nx, 3nx] -> h.0.attn.c_attn.weight.

    Both keep Conv1D's (in, out) layout, so only the names change and the leading 1 of each matrix goes.
    """
    arrays: dict[str, np.ndarray] = {}
    for name in bundle.numeric_names():
        parts = name.split("/")
        if parts[0] != "model":
            continue  # optimizer slots and bookkeeping, if a training checkpoint
        rest = parts[1:]
        if not rest or not all(rest):
            raise UserError(f"{bundle.index_path} has a variable {name!r} that is not part of GPT-2.")
        array = bundle.read(name)
        if rest[0] in ("wte", "wpe") and len(rest) == 1:
            key = rest[0] + ".weight"
        else:
            leaf = {"g": "weight", "b": "bias", "w": "weight"}.get(rest[-1])
            layer = re.fullmatch(r"h(\d{1,4})", rest[0])
            if leaf is None or len(rest) < 2 or (layer is None and rest[0] != "ln_f"):
                raise UserError(f"{bundle.index_path} has a variable {name!r} that is not part of GPT-2.")
            if rest[-1] == "w":
                if array.ndim != 3 or array.shape[0] != 1:
                    raise UserError(f"{bundle.index_path}: {name} should have shape [1, in, out] but has {list(array.shape)}.")
                array = array[0]
            scope = [f"h.{int(layer.group(1))}"] if layer else ["ln_f"]
            key = ".".join(scope + rest[1:-1] + [leaf])
        if key in arrays:
            raise UserError(f"{bundle.index_path} holds {key} twice (again as {name!r}); the checkpoint is damaged.")
        arrays[key] = array
    if not arrays:
        raise UserError(f"{bundle.index_path} has no GPT-2 variables (expected names like model/wte, model/h0/...).")
    return arrays


def hparams_as_hf_config(hparams: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's hparams.json (checked by ``config_checks``) in the names of Hugging Face's config.json."""
    return {
        "n_layer": hparams.get("n_layer"),
        "n_embd": hparams.get("n_embd"),
        "n_head": hparams.get("n_head"),
        "vocab_size": hparams.get("n_vocab"),
        "n_positions": hparams.get("n_ctx"),
    }
