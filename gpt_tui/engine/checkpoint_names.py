"""Where a run keeps its checkpoints and what they are called, without torch.

The launcher of a background run and ``gpt-tui runs`` look at checkpoints by
name only; gpt_tui.engine.checkpoint (which needs torch) re-exports these.
"""

from __future__ import annotations

import re
from pathlib import Path

SUFFIX = ".safetensors"
CHECKPOINTS_SUBDIR = "checkpoints"
STEP_NAME = re.compile(r"^step-(\d+)\.safetensors$")
BEST_NAME = f"best{SUFFIX}"  # the checkpoint of the run's best evaluation, kept whatever pruning removes


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}{SUFFIX}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Step checkpoints of a run, oldest first."""
    folder = Path(run_dir) / CHECKPOINTS_SUBDIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := STEP_NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def best_checkpoint_path(run_dir: str | Path) -> Path:
    """Where a run keeps the checkpoint of its lowest validation loss (it may not exist yet)."""
    return Path(run_dir) / CHECKPOINTS_SUBDIR / BEST_NAME
