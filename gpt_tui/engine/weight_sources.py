"""What a user names as weights, resolved to the file or folder that holds them.

A source is a path (a file, a folder, a TensorFlow prefix), a run directory
(its newest checkpoint that reads back), ``RUN@best`` (a run's best
checkpoint, gpt_tui.engine.best_checkpoint), a folder of the Hugging Face cache,
the name of a model imported earlier, or a Hugging Face model id already in
the local cache; nothing is fetched. Paths are told apart by content (see
``weight_formats``), names only when no path of that name exists, so a file
called ``gpt2`` in the working directory wins over the model id.
"""

from __future__ import annotations

import re
from pathlib import Path

from gpt_tui.engine import checkpoint as ckpt, file_checks as fc, hub
from gpt_tui.engine.best_checkpoint import best_reference
from gpt_tui.engine.weight_formats import detect_format
from gpt_tui.engine.weight_io import ACCEPTED
from gpt_tui.engine.weight_layouts import Weights
from gpt_tui.errors import UserError
from gpt_tui.paths import expand_user, models_dir, runs_dir

WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth"}
_CONFIG_FILES = {hub.CONFIG_FILE, "hparams.json", "checkpoint"}  # files that stand for the folder they sit in


def read_weights(source: str | Path) -> Weights:
    """Any accepted source, renamed to gpt-tui's layout with its config (on the CPU, not yet a model)."""
    text = str(source).strip()
    if not text:
        raise UserError(f"No weights given. Accepted: {ACCEPTED}.")
    path = best_reference(text) or expand_user(text)  # RUN@best: the run's best checkpoint
    if path.is_dir() or path.is_file() or Path(f"{path}.index").is_file():  # the last: a TensorFlow prefix
        return read_path(path)
    if re.fullmatch(r"[A-Za-z0-9._-]+", text):
        imported = models_dir() / f"{text}.safetensors"
        if imported.is_file():
            return read_path(imported)
    if re.fullmatch(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)?", text):
        snapshot = hub.find_cached(text)
        if snapshot is not None:
            return read_path(snapshot)
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


def read_path(path: Path) -> Weights:
    """An existing file or folder, or a TensorFlow prefix: read by the format its content shows."""
    if path.is_file() and path.name in _CONFIG_FILES:
        return read_path(path.parent)
    fmt = detect_format(path)
    if fmt is not None:
        return fmt.read(path)
    if path.is_dir():
        return _read_folder(path)
    raise UserError(f"{path} is not a format gpt-tui reads. Accepted: {ACCEPTED}.")


def _read_folder(folder: Path) -> Weights:
    """A folder no format claims: a run directory, a Hugging Face cache entry, or one holding a single weights file."""
    if (folder / ckpt.CHECKPOINTS_SUBDIR).is_dir():  # a run directory: its newest checkpoint that reads back
        return read_path(ckpt.latest_checkpoint(folder))
    if folder.name.startswith("models--") and "snapshots" in {p.name for p in folder.iterdir()}:
        return _read_hf_cache_entry(folder)
    candidates = [p for p in sorted(folder.iterdir()) if p.suffix in WEIGHT_SUFFIXES]
    if len(candidates) == 1:
        return read_path(candidates[0])
    raise UserError(f"{folder} holds no weights gpt-tui recognises. Accepted: {ACCEPTED}.")


def _read_hf_cache_entry(folder: Path) -> Weights:
    """A ``models--org--name`` folder of the Hugging Face cache: the snapshot ``refs/main`` names."""
    ref = folder / "refs" / "main"
    snapshots = folder / "snapshots"
    if ref.is_file():
        with ref.open("rb") as f:  # a commit hash; a huge file is not read whole
            commit = f.read(256).decode(errors="replace").strip()
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", commit) or commit in (".", ".."):
            raise UserError(f"{ref} names {fc.shown(commit)}, which is not a snapshot of {folder}; "
                            "it should hold a commit hash. Pass the snapshot folder you want instead.")
        if (snapshots / commit).is_dir():
            fc.inside(folder, snapshots / commit, ref)
            return read_path(snapshots / commit)
    found = [p for p in snapshots.iterdir() if p.is_dir()]
    if len(found) == 1:
        return read_path(found[0])
    raise UserError(f"{folder} has {len(found)} snapshots and no refs/main; pass the snapshot folder you want.")


def weights_source(text: str) -> str:
    """``text`` as given, or the run directory it names when it is a run name as ``gpt-tui runs`` prints it.

    Whatever ``text`` already means keeps that meaning (``read_weights``
    resolves it): an existing path, a model from ``gpt-tui import``, a GPT-2
    model id. Only a bare name that is none of these is looked up under runs/.
    """
    if not re.fullmatch(r"[A-Za-z0-9._-]+", text) or text in (".", "..") or expand_user(text).exists():
        return text
    if (models_dir() / f"{text}.safetensors").is_file() or hub.canonical_name(text) is not None:
        return text
    run = runs_dir() / text
    return str(run) if run.is_dir() else text
