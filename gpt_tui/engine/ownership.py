"""A run directory belongs to one run.

A new run never writes into a folder another run has used: its checkpoints
would be pruned as if they were the new run's and its config.json replaced.
Only ``--resume`` continues a run, and only in its own folder (the one
holding the checkpoint's ``checkpoints/``); a lone checkpoint file continues
in a folder the user names or a new one, never in the folder its header
remembers.

Each run carries a random id (TrainConfig.run_id, so it is in config.json and
in every checkpoint's training state); pruning removes only checkpoints with
the run's own id. The launcher of a background run creates the run's folder
and writes its first status with the id it hands to the trainer, which is
how the trainer knows that folder was made for it.

Nothing here imports torch: ``gpt-tui train --detach`` uses it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Callable, Sequence

from gpt_tui.engine import runlock
from gpt_tui.engine import corpus
from gpt_tui.engine.checkpoint_header import stored_train_config
from gpt_tui.engine.checkpoint_names import CHECKPOINTS_SUBDIR
from gpt_tui.engine.options import values_of
from gpt_tui.engine.runs import CONFIG_FILE, METRICS_FILE, STATUS_FILE, read_status
from gpt_tui.errors import UnconfirmedCorpus, UserError
from gpt_tui.paths import expand_user
from gpt_tui.textsafe import visible

RUN_FILES = (CONFIG_FILE, METRICS_FILE, CHECKPOINTS_SUBDIR, STATUS_FILE)  # any of them: a run has used the folder


def new_run_id() -> str:
    return secrets.token_hex(8)


def run_home(checkpoint: str | os.PathLike[str]) -> Path | None:
    """The run directory a checkpoint file sits in (``<run>/checkpoints/<file>``), None for a lone file."""
    path = Path(checkpoint)
    return path.parent.parent if path.parent.name == CHECKPOINTS_SUBDIR else None


def same_dir(a: str | os.PathLike[str] | None, b: str | os.PathLike[str] | None) -> bool:
    if a is None or b is None:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def used_by(run_dir: str | os.PathLike[str], run_id: str | None = None) -> list[str]:
    """The run files already in ``run_dir``; empty when a new run may take it.

    A status.json that only says "starting" under ``run_id`` was written by the
    launcher that made the folder for run ``run_id``, and does not count.
    """
    run_dir = Path(run_dir)
    found = [name for name in RUN_FILES if os.path.lexists(run_dir / name)]
    if found == [STATUS_FILE] and run_id is not None:
        status = read_status(run_dir)
        if status.get("state") == "starting" and status.get("run_id") == run_id:
            return []
    return found


def used_message(run_dir: str | os.PathLike[str], found: Sequence[str]) -> str:
    return (
        f"{run_dir} already holds a run ({', '.join(found)}); a new run there would replace its config and "
        f"prune its checkpoints. Continue it with `gpt-tui train --resume {run_dir}`, or pick another --run-dir."
    )


def refuse_used(run_dir: str | os.PathLike[str], run_id: str | None = None) -> None:
    """Raise UserError when another run has used ``run_dir``."""
    found = used_by(run_dir, run_id)
    if found:
        raise UserError(used_message(run_dir, found))


def claim(run_dir: Path, run_id: str | None, *, lock: Callable[[], object], unlock: Callable[[], object]) -> None:
    """Take ``run_dir`` for run ``run_id`` with ``lock`` (the run lock); ``run_id`` None continues the run there.

    A used folder is refused before anything is written to it; when a live
    run holds it, the lock's own refusal (which names that run) is the one
    the user sees. The check is made again once locked, against a run that
    took the folder in between.
    """
    found = used_by(run_dir, run_id) if run_id is not None else []
    if found and runlock.holder(run_dir) is None:
        raise UserError(used_message(run_dir, found))
    lock()
    found = used_by(run_dir, run_id) if run_id is not None else []
    if found:
        unlock()
        raise UserError(used_message(run_dir, found))


def resume_source(train_args: Sequence[str]) -> Path | None:
    """The ``--resume`` value in a ``gpt-tui train`` argument list."""
    for i, arg in enumerate(train_args):
        if arg.startswith("--resume="):
            return expand_user(arg.split("=", 1)[1])
        if arg == "--resume" and i + 1 < len(train_args):
            return expand_user(train_args[i + 1])
    return None


def resumes_in_place(train_args: Sequence[str], run_dir: str | os.PathLike[str]) -> bool:
    """Whether ``train_args`` continue the run that lives in ``run_dir`` (its folder, or a checkpoint in it)."""
    source = resume_source(train_args)
    if source is None:
        return False
    home = source if source.is_dir() else run_home(source)
    return same_dir(home, run_dir)


def model_in_checkpoint(path: str | os.PathLike[str]) -> str | None:
    """The model preset a gpt-tui checkpoint was trained as, read from its header without torch; None if unknown."""
    model = stored_train_config(path).get("model")
    return model if isinstance(model, str) and model.replace("-", "").isalnum() else None


def confirm_stored_corpus(
    source: str, data: str | Sequence[str] | None, *, in_place: bool, use: str, flag: str = "--data"
) -> None:
    """Refuse to read the corpus a checkpoint names unless the checkpoint is in the run folder it was trained in.

    A checkpoint from elsewhere (a shared run folder, a lone file) can name any
    file, /etc/passwd as well as a corpus; it is read only once the user names
    it with --data (the app asks). ``data`` is one source (older runs) or several.
    """
    sources = values_of(data)
    if in_place or all(corpus.is_builtin(one) for one in sources):
        return
    named = "; ".join(str(one) for one in sources)
    flags = " ".join(f"{flag} {visible(one)}" for one in sources)
    raise UnconfirmedCorpus(
        f"{visible(source)} was trained on {visible(named)}, but is not in the run folder it was trained in, so that "
        f"file is not read unasked; pass {flags} to {use}, or {flag} with the corpus you mean.",
        named,
    )
