"""Where a run keeps its checkpoints and what they are called, without torch.

The launcher of a background run and ``gpt-tui runs`` look at checkpoints by
name only; gpt_tui.engine.checkpoint (which needs torch) re-exports these.
"""

from __future__ import annotations

import re

SUFFIX = ".safetensors"
CHECKPOINTS_SUBDIR = "checkpoints"
STEP_NAME = re.compile(r"^step-(\d+)\.safetensors$")


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}{SUFFIX}"
