"""Where a run starts: fresh, imported (``--init-from``) or resumed weights, and the data it trains on.

Everything is checked before the model is built (a resumable checkpoint, a
context the model has positions for, enough batches for ``grad_accum``), so a
bad combination costs a line of text, not a model's worth of memory.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gpt_tui.engine import checkpoint as ckpt
from gpt_tui.engine import book_checkpoint, ownership
from gpt_tui.engine.batches import DataSplits
from gpt_tui.engine.corpus_split import load_split
from gpt_tui.engine.model import GPTConfig, GPTModel, tie_head
from gpt_tui.engine.split_loaders import split_loaders
from gpt_tui.engine.train_options import TrainConfig
from gpt_tui.engine.weight_layouts import KIND_NATIVE
from gpt_tui.engine.weights import LoadedModel, load_model
from gpt_tui.errors import Notice, UserError
from gpt_tui.textsafe import visible


def resume_config(source: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The training config stored in a checkpoint (or run dir), with explicit overrides applied."""
    path = ckpt.resolve_checkpoint_path(source)
    if book_checkpoint.is_torch_file(path):  # the book's model_and_optimizer.pth: it continues with the flags given
        return TrainConfig(**(overrides or {}))
    book_checkpoint.refuse_foreign_safetensors(path)  # weights from elsewhere: say what they can be used for
    header = ckpt.read_header(path)
    stored = header.get("train_state", {}).get("train_config")
    if stored is None:
        raise UserError(f"{source} holds weights only; pass its path as --init-from to fine-tune from it.")
    config = TrainConfig.from_dict(stored)
    # A run copied or moved elsewhere continues where it is now; a lone file never where its header says.
    home = ownership.run_home(path)
    for name in ("data", "val_data"):  # either may name any file
        if name not in (overrides or {}):
            in_place = ownership.same_dir(config.run_dir, home)
            flag = "--" + name.replace("_", "-")
            ownership.confirm_stored_corpus(source, getattr(config, name), in_place=in_place, use="train on it", flag=flag)
    config.run_dir = str(home) if home is not None else None
    for key, value in (overrides or {}).items():
        setattr(config, key, value)
    if not ownership.same_dir(config.run_dir, home) and "run_id" not in (overrides or {}):
        config.run_id = None  # continuing in another folder is a run of its own
    return config


@dataclass
class StartingPoint:
    """The model a run trains and what its weights come from (at most one of the two)."""

    model_config: GPTConfig
    checkpoint: ckpt.Checkpoint | None = None  # resumed: weights, optimizer state, counters and RNG
    imported: LoadedModel | None = None  # --init-from: weights only


def starting_point(config: TrainConfig, resume_path: Path | None, init_from: str | None) -> StartingPoint:
    """Read the checkpoint or weights a run starts from; settles ``config.context_length``."""
    if resume_path is not None and book_checkpoint.is_torch_file(resume_path):
        checkpoint = book_checkpoint.load_book_checkpoint(resume_path, config.recipe, config.drop_rate, config.seed)
    else:
        checkpoint = ckpt.load_checkpoint(resume_path, "cpu") if resume_path else None
    if checkpoint is not None and checkpoint.kind != "full":
        raise UserError(f"{resume_path} holds weights only and cannot be resumed; use it with --init-from to fine-tune.")

    imported = None
    if checkpoint is not None:
        model_config = checkpoint.config
    elif init_from:
        imported = load_model(init_from, "cpu")
        model_config = imported.config.with_(drop_rate=_imported_drop_rate(config, imported))
        _note_unused_state(init_from, imported)
    else:
        model_config = config.model_config()
    context = config.context_length or model_config.context_length
    if context > model_config.context_length:
        raise UserError(
            f"context-length {context} is longer than the model's {model_config.context_length} positions; "
            f"use --context-length {model_config.context_length} or less."
        )
    config.context_length = context
    return StartingPoint(model_config, checkpoint, imported)


def _imported_drop_rate(config: TrainConfig, imported: LoadedModel) -> float:
    """The dropout a run from ``--init-from`` trains with: ``--drop-rate``, else the recipe's rule.

    The book recipe trains as chapter 5 does (GPT_CONFIG_124M's 0.1); gpt-tui's
    keeps the weights' own: a gpt-tui checkpoint's rate, 0.0 for weights from
    elsewhere (fine-tuning pretrained weights, as the book's later chapters do).
    A rate the file does not record is said in a note.
    """
    if config.drop_rate is not None:
        return config.drop_rate
    if config.recipe == "book":
        rate, why = book_checkpoint.BOOK_DROP_RATE, "the book's, as --recipe book trains"
    elif imported.kind == KIND_NATIVE:
        return imported.config.drop_rate  # the rate it was trained (or imported) with, kept
    else:
        rate, why = imported.config.drop_rate, "imported weights fine-tune without dropout, as the book's later chapters do"
    warnings.warn(Notice(f"dropout {rate:g} ({why}); --drop-rate sets another."))
    return rate


def _note_unused_state(source: str, imported: LoadedModel) -> None:
    """``--init-from`` takes weights only: a file that holds more says so, and how to continue it instead."""
    name = visible(source)
    if imported.kind == KIND_NATIVE and imported.path.is_file() and ckpt.read_header(imported.path).get("kind") == "full":
        warnings.warn(Notice(f"{name} is a gpt-tui training checkpoint (weights, AdamW state, step and generator); "
                             f"--init-from uses only its weights and starts at step 0 with a fresh AdamW; "
                             f"--resume {name} continues it."))
    elif book_checkpoint.holds_optimizer_state(imported.path):
        warnings.warn(Notice(f"{name} holds a model and its AdamW state (the book's model_and_optimizer.pth); --init-from "
                             "uses only its weights and starts AdamW afresh; add --with-optimizer to continue its AdamW state too."))


def training_data(config: TrainConfig, world_size: int, *, pin_memory: bool, progress: Any = None) -> DataSplits:
    """The corpus's training and validation batches; global batches, of which each rank takes its rows."""
    assert config.context_length is not None  # settled by starting_point
    split = load_split(
        config.data, train_ratio=config.train_ratio, val_data=config.val_data, glob=config.glob,
        text_field=config.text_field, skip_bad_files=config.skip_bad_files, progress=progress,
    )
    splits = split_loaders(
        split,
        context_length=config.context_length,
        stride=config.stride or config.context_length,
        batch_size=config.batch_size * world_size,
        train_ratio=config.train_ratio,
        seed=config.seed,
        pin_memory=pin_memory,
        sampling=config.sampling,
    )
    if len(splits.train) < config.grad_accum:
        raise UserError(
            f"The training split gives {len(splits.train)} batches per epoch, fewer than grad-accum {config.grad_accum}; "
            "lower --grad-accum or --batch-size."
        )
    return splits


def build_model(config: TrainConfig, start: StartingPoint, device: torch.device) -> GPTModel:
    """The model on ``device``, initialised from ``config.seed`` and then given the starting weights, if any."""
    torch.manual_seed(config.seed)
    model = GPTModel(start.model_config, init=config.init)
    if start.checkpoint is not None:
        model.load_state_dict(start.checkpoint.model_state)
    elif start.imported is not None:
        model.load_state_dict(start.imported.model.state_dict())
    model.to(device)
    tie_head(model)
    return model
