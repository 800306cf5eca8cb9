"""Checkpoints: one ``.safetensors`` file per save, tensors in the body, JSON in the header.

A single file can be replaced atomically (write a temporary file, fsync, rename),
so a save killed midway leaves the previous checkpoint as it was. safetensors
holds no code, so loading a checkpoint never runs anything from the file.

Tensor keys:
    model.<param>            the model's state dict (a tied head is stored once)
    optim.<param>.<key>      AdamW state per parameter, keyed by parameter name
    rng.torch                torch's CPU generator state (uint8)
    rng.cuda.<i>             each CUDA generator's state (uint8)
Header metadata ``gpt_tui`` (JSON): format version, kind ("full" or "model"),
model config, optimizer hyperparameters, and the training state (step, epoch,
position in the epoch, tokens seen, training config, ...).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from gpt_tui import fileio
from gpt_tui.engine.best_checkpoint import best_reference
from gpt_tui.engine.checkpoint_names import (  # noqa: F401  (re-exported)
    BEST_NAME,
    CHECKPOINTS_SUBDIR,
    SUFFIX,
    checkpoint_name,
    list_checkpoints,
)
from gpt_tui.engine import checkpoint_checks, config_checks
from gpt_tui.engine.model import GPTConfig, GPTModel
from gpt_tui.engine.model_build import StateMismatch, model_from_state
from gpt_tui.engine.train_progress import TrainProgress
from gpt_tui.errors import UserError
from gpt_tui.paths import expand_user

FORMAT = "gpt-tui-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    path: Path
    config: GPTConfig
    model_state: dict[str, torch.Tensor]
    kind: str  # "full" (resumable) or "model" (weights only)
    train_state: dict[str, Any] = field(default_factory=dict)
    optimizer_state: dict[str, Any] | None = None  # names -> tensors, plus "param_groups"
    rng_state: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def _param_names(model: torch.nn.Module) -> dict[int, str]:
    return {id(p): name for name, p in model.named_parameters()}


def _model_tensors(model: GPTModel) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    if model.config.tie_weights:
        state.pop("head.weight", None)
    return {f"model.{k}": v.detach().contiguous() for k, v in state.items()}


def _optimizer_payload(model: GPTModel, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    names = _param_names(model)
    tensors: dict[str, torch.Tensor] = {}
    groups: list[dict[str, Any]] = []
    for group in optimizer.param_groups:
        hyper = {k: v for k, v in group.items() if k != "params" and _json_safe(v)}
        hyper["param_names"] = [names[id(p)] for p in group["params"]]
        groups.append(hyper)
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optim.{names[id(p)]}.{key}"] = value.detach().contiguous()
                else:
                    tensors[f"optim.{names[id(p)]}.{key}"] = torch.tensor(value)
    return tensors, groups


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def _rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    return tensors


def save_checkpoint(
    path: str | Path,
    model: GPTModel,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    train_state: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically; with an optimizer it is a full, resumable one."""
    path = Path(path)
    tensors = _model_tensors(model)
    header: dict[str, Any] = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "kind": "full" if optimizer is not None else "model",
        "config": model.config.to_dict(),
        "train_state": train_state or {},
        "meta": {"saved_at": time.time(), **(meta or {})},
    }
    if optimizer is not None:
        optim_tensors, groups = _optimizer_payload(model, optimizer)
        tensors.update(optim_tensors)
        tensors.update(_rng_tensors())
        header["param_groups"] = groups
    tensors = {k: v.to("cpu") for k, v in tensors.items()}
    _atomic_save(path, lambda tmp: save_file(tensors, str(tmp), metadata={"gpt_tui": json.dumps(header)}))
    return path


def _atomic_save(path: Path, write: Any) -> None:
    """``write(tmp)`` into a temporary file created exclusively next to ``path``, then rename it over ``path``."""
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"Cannot write a checkpoint in {directory}: {exc.strerror or exc}. Free space or pick another directory.") from None
    try:
        fileio.atomic_write_to_path(path, write)
    except UserError:
        raise
    except OSError as exc:
        raise UserError(f"Could not save checkpoint {path}: {exc.strerror or exc}. The previous checkpoint is unchanged.") from None


def read_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of a gpt-tui checkpoint, without reading tensors."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Checkpoint {path} does not exist.")
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for bad files
        raise UserError(f"Checkpoint {path} is corrupt or truncated ({exc}); use an earlier checkpoint.") from None
    if "gpt_tui" not in metadata:
        raise UserError(f"{path} is a safetensors file but not a gpt-tui checkpoint (no gpt_tui header).")
    try:
        header = json.loads(metadata["gpt_tui"])
    except json.JSONDecodeError:
        raise UserError(f"Checkpoint {path} has a damaged header; use an earlier checkpoint.") from None
    header = checkpoint_checks.header_fields(header, path)
    if header.get("format") != FORMAT or header.get("version", 0) > FORMAT_VERSION:
        raise UserError(f"Checkpoint {path} has format version {header.get('version')}; this gpt-tui reads version {FORMAT_VERSION}.")
    return header


def is_checkpoint(path: str | Path) -> bool:
    try:
        read_header(path)
        return True
    except UserError:
        return False


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint onto ``device`` (any device: tensors are stored on the CPU)."""
    path = Path(path)
    header = read_header(path)
    model_state: dict[str, torch.Tensor] = {}
    optim: dict[str, torch.Tensor] = {}
    rng: dict[str, torch.Tensor] = {}
    config = config_checks.model_config(header.get("config"), path)
    train_state = header.get("train_state", {})
    if header.get("kind") == "full" and "train_config" in train_state:  # a trainer's: a resume continues from it
        TrainProgress.from_state(train_state, where=path)  # its counters checked before anything is read
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            table = {key: (fh.get_slice(key).get_dtype(), tuple(fh.get_slice(key).get_shape())) for key in fh.keys()}
            checkpoint_checks.tensor_table(config, table, path)  # before a byte of a tensor is read
            for key in fh.keys():
                tensor = fh.get_tensor(key)
                if key.startswith("model."):
                    model_state[key[len("model."):]] = tensor.to(device)
                elif key.startswith("optim."):
                    optim[key[len("optim."):]] = tensor.to(device)
                elif key.startswith("rng."):
                    rng[key[len("rng."):]] = tensor
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"Checkpoint {path} is corrupt or truncated ({exc}); use an earlier checkpoint.") from None
    if config.tie_weights and "tok_emb.weight" in model_state:
        model_state["head.weight"] = model_state["tok_emb.weight"]
    optimizer_state = None
    if header.get("kind") == "full":
        optimizer_state = {"tensors": optim, "param_groups": header.get("param_groups", [])}
    return Checkpoint(
        path=path,
        config=config,
        model_state=model_state,
        kind=header.get("kind", "model"),
        train_state=header.get("train_state", {}),
        optimizer_state=optimizer_state,
        rng_state=rng,
        meta=header.get("meta", {}),
    )


def build_model(checkpoint: Checkpoint, device: str | torch.device = "cpu") -> GPTModel:
    """A model with the checkpoint's config and weights, in eval mode."""
    try:  # fresh float32 storage filled from the file's tensors, whatever dtype they were saved in
        return model_from_state(checkpoint.config, checkpoint.model_state, device, torch.float32)
    except StateMismatch as exc:
        raise UserError(f"Checkpoint {checkpoint.path} does not match its own config: {exc}".splitlines()[0]) from None


def load_model_from_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> GPTModel:
    return build_model(load_checkpoint(path, device), device)


def restore_optimizer(optimizer: torch.optim.Optimizer, model: GPTModel, checkpoint: Checkpoint) -> None:
    """Load AdamW state saved by parameter name into ``optimizer`` built for ``model``."""
    if checkpoint.optimizer_state is None:
        raise UserError(f"Checkpoint {checkpoint.path} holds weights only; it cannot resume an optimizer.")
    saved_groups = checkpoint.optimizer_state["param_groups"]
    tensors = checkpoint.optimizer_state["tensors"]
    names = _param_names(model)
    if len(saved_groups) != len(optimizer.param_groups):
        raise UserError(f"Checkpoint {checkpoint.path} has {len(saved_groups)} optimizer groups, expected {len(optimizer.param_groups)}.")
    by_param: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        name, _, slot = key.rpartition(".")
        by_param.setdefault(name, {})[slot] = tensor
    fresh = not by_param and checkpoint.train_state.get("step", 0) == 0  # saved before the first step: no moments yet
    state: dict[int, dict[str, Any]] = {}
    groups = []
    index = 0
    for saved, group in zip(saved_groups, optimizer.param_groups):
        current = [names[id(p)] for p in group["params"]]
        if current != saved["param_names"]:
            raise UserError(f"Checkpoint {checkpoint.path} was saved for a different model layout; its optimizer state cannot be used.")
        ids = []
        for name, param in zip(current, group["params"]):
            if not fresh:
                state[index] = _checked_moments(checkpoint, name, param, by_param.get(name, {}))
            ids.append(index)
            index += 1
        groups.append({**{k: v for k, v in saved.items() if k != "param_names"}, "params": ids})
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _checked_moments(checkpoint: Checkpoint, name: str, param: torch.Tensor, saved: dict[str, torch.Tensor]) -> dict:
    """One parameter's AdamW state, refused when a tensor is missing, misshapen or not finite.

    Loaded as it is, a missing moment restarts silently (the run is no longer
    exact) and a wrong one surfaces steps later as NaN weights, far from the cause.
    """
    for slot in ("exp_avg", "exp_avg_sq", "step"):
        tensor, shape = saved.get(slot), (() if slot == "step" else tuple(param.shape))
        if tensor is None:
            problem = "is missing"
        elif tensor.numel() != 1 if slot == "step" else tuple(tensor.shape) != shape:
            problem = f"has shape {tuple(tensor.shape)}, not {shape} like the parameter"
        elif not bool(torch.isfinite(tensor).all()):
            problem = "holds NaN or infinite values"
        elif slot == "exp_avg_sq" and bool((tensor < 0).any()):
            problem = "holds negative values (it is a mean of squares)"
        else:
            continue
        raise UserError(
            f"Checkpoint {checkpoint.path} cannot continue its run: optimizer tensor optim.{name}.{slot} {problem}. "
            "Resume from an earlier checkpoint, or start from its weights with --init-from (the optimizer starts afresh)."
        )
    return saved


def restore_rng(checkpoint: Checkpoint) -> None:
    if "torch" in checkpoint.rng_state:
        try:
            torch.set_rng_state(checkpoint.rng_state["torch"].to(torch.uint8))
        except RuntimeError:  # load_checkpoint checks the size; torch refuses a state it cannot use, too
            raise UserError(f"{checkpoint.path}: its random-number state rng.torch is damaged; "
                            "resume from an earlier checkpoint, or use --init-from.") from None
    cuda = [checkpoint.rng_state[k] for k in sorted(checkpoint.rng_state) if k.startswith("cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


def latest_checkpoint(run_dir: str | Path) -> Path:
    """The newest checkpoint of a run that reads back cleanly (a damaged newest one is skipped)."""
    run_dir = Path(run_dir)
    for path in reversed(list_checkpoints(run_dir)):
        if is_checkpoint(path):
            return path
    raise UserError(f"No usable checkpoint in {run_dir}; train first, or pass a checkpoint file.")


def resolve_checkpoint_path(source: str | Path) -> Path:
    """A checkpoint file, a run directory's latest checkpoint, or a run's best one (``RUN@best``)."""
    path = best_reference(source) or expand_user(source)
    if path.is_dir():
        return latest_checkpoint(path)
    if not path.exists():
        raise UserError(f"{path} does not exist; give a checkpoint file or a run directory.")
    return path


def checkpoint_run_id(path: str | Path) -> str | None:
    """The id of the run that wrote a step checkpoint (TrainConfig.run_id), None when unknown or unreadable."""
    try:
        state = read_header(path).get("train_state")
    except UserError:
        return None
    stored = state.get("train_config") if isinstance(state, dict) else None
    run_id = stored.get("run_id") if isinstance(stored, dict) else None
    return run_id if isinstance(run_id, str) else None


def prune_checkpoints(run_dir: str | Path, keep: int, run_id: str | None = None) -> None:
    """Remove all but the ``keep`` newest step checkpoints of run ``run_id``, and temporary files a killed save left.

    Only plain ``step-*.safetensors`` files whose header names ``run_id`` go:
    another run's checkpoints and the user's own files stay. ``run_id`` None
    is a run from before run ids, whose every step checkpoint counts. Only the
    trainer that holds the run's lock calls this, right after its own save
    finished, so a temporary save file still there belongs to a dead process.
    A ``checkpoints`` folder that is a link is refused (UnsafePathError).
    """
    folder = Path(run_dir) / CHECKPOINTS_SUBDIR
    if not os.path.lexists(folder):
        return
    with fileio.open_folder(folder) as fd:
        def plain(name: str) -> bool:
            try:
                return stat.S_ISREG(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
            except OSError:
                return False

        ours = [p for p in list_checkpoints(run_dir) if plain(p.name) and (run_id is None or checkpoint_run_id(p) == run_id)]
        for path in ours[:-keep] if keep > 0 else []:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path.name, dir_fd=fd)
        for name in os.listdir(fd):
            if name.startswith((".step-", f".{BEST_NAME}.")) and name.endswith(fileio.TEMP_SUFFIX) and plain(name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=fd)
