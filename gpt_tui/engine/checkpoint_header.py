"""A gpt-tui checkpoint's own header, read without torch.

``gpt-tui runs``, the app's lists and ``train --detach`` need what a
checkpoint says about itself (its step, its best loss, the preset and corpus
it was trained with) before, or without, paying for torch.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

MAX_HEADER = 100_000_000  # bytes; a larger safetensors header is not one gpt-tui wrote


def read_header_json(path: str | Path) -> dict[str, Any] | None:
    """The ``gpt_tui`` header of a checkpoint file; None when it is not one or cannot be read."""
    try:
        with open(path, "rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            if size > MAX_HEADER:
                return None
            header = json.loads(fh.read(size))
        meta = json.loads(header["__metadata__"]["gpt_tui"])
    except (OSError, ValueError, KeyError, TypeError, struct.error, RecursionError):
        return None
    return meta if isinstance(meta, dict) else None


def stored_train_config(path: str | Path) -> dict[str, Any]:
    """The training options a checkpoint records; empty when it records none."""
    meta = read_header_json(path) or {}
    state = meta.get("train_state")
    config = state.get("train_config") if isinstance(state, dict) else None
    return config if isinstance(config, dict) else {}
