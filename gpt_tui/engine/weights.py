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

Here are the entry points; ``weight_sources`` resolves what a user names,
``weight_formats`` recognises and reads each format, ``weight_layouts``
renames other layouts into gpt-tui's, and ``hf_names`` holds the Hugging Face
names that import and export share.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors.torch import save_file

from gpt_tui import fileio
from gpt_tui.engine import hub
from gpt_tui.engine.checkpoint import save_checkpoint
from gpt_tui.engine.checkpoint_names import CHECKPOINTS_SUBDIR
from gpt_tui.engine.hf_names import to_hf
from gpt_tui.engine.model_build import StateMismatch, model_from_state
from gpt_tui.engine.weight_formats import HF_WEIGHT_FILES  # noqa: F401  (re-exported)
from gpt_tui.engine.weight_io import ACCEPTED  # noqa: F401  (re-exported)
from gpt_tui.engine.weight_io import first_line as _first_line
from gpt_tui.engine.weight_layouts import GPT2_VOCAB, LAYER_NORM_EPS, Weights
from gpt_tui.engine.weight_sources import read_weights
from gpt_tui.errors import AlreadyExistsError, UserError
from gpt_tui.paths import expand_user, models_dir

if TYPE_CHECKING:
    import torch

    from gpt_tui.engine.model import GPTConfig, GPTModel


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


def import_weights(source: str | Path, name: str | None = None, overwrite: bool = False) -> Path:
    """Convert any loadable source into a gpt-tui model-only checkpoint under the models directory.

    The result loads by path or by ``name`` anywhere a checkpoint is accepted,
    and ``gpt-tui train --init-from`` fine-tunes from it. A model of that name
    is replaced only with ``overwrite`` (AlreadyExistsError otherwise).
    """
    weights = read_weights(source)
    name = _checked_name(name) if name else _default_name(source, weights)
    target = models_dir() / f"{name}.safetensors"
    if not overwrite and (target.exists() or target.is_symlink()):
        raise AlreadyExistsError(f"A model called {name} exists already ({target}); pick another --name, "
                                 "or add --force to replace it.", target)
    model = _build(weights, "cpu")
    meta = {"imported_from": str(source), "source_kind": weights.kind, "notes": weights.notes}
    return save_checkpoint(target, model, meta=meta)


def export_hf(source: str | Path, out_dir: str | Path) -> Path:
    """Write ``model.safetensors`` and ``config.json`` that ``GPT2LMHeadModel.from_pretrained`` loads."""
    weights = read_weights(source)
    config, state = weights.config, weights.state
    out = expand_user(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; give a directory to export into.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"Cannot create {out}: {exc.strerror or exc}.") from None

    tensors = to_hf(state, config)  # the same name table import reads with
    hf_config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.context_length,
        "n_ctx": config.context_length,
        "n_embd": config.emb_dim,
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
    try:  # each file replaced whole; a link planted in the folder is replaced, never written through
        fileio.atomic_write_to_path(out / "model.safetensors", lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
        fileio.atomic_write_text(out / hub.CONFIG_FILE, json.dumps(hf_config, indent=2) + "\n")
    except UserError:
        raise
    except Exception as exc:  # OSError, or safetensors' own error for a failed write
        raise UserError(f"Cannot write the export into {out}: {_first_line(exc)}.") from None
    return out


def _build(weights: Weights, device: "str | torch.device") -> "GPTModel":
    """A model holding the weights without a second copy (built on the meta device, tensors assigned)."""
    try:
        return model_from_state(weights.config, weights.state, device)
    except StateMismatch as exc:  # a gpt-tui checkpoint whose tensors do not match the config in its header
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0] if lines else "shapes differ"
        raise UserError(f"{weights.path} does not match the model its header describes ({detail}); use another checkpoint.") from None


def _default_name(source: str | Path, weights: Weights) -> str:
    text = str(source).rstrip("/")
    short = hub.canonical_name(text)
    if short is not None:
        return short
    path = weights.path
    if "snapshots" in path.parts and path.parts[path.parts.index("snapshots") - 1].startswith("models--"):
        stem = path.parts[path.parts.index("snapshots") - 1].split("--")[-1]  # models--org--name/snapshots/<commit>/
    elif path.parent.name == CHECKPOINTS_SUBDIR:  # a run's checkpoint: name it after the run
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
