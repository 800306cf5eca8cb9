"""Checks for values read from files the user did not write: type and range, one line when wrong.

A weights file, a config or a checkpoint header may come from anywhere, so
every value a loader uses passes through one of these first. Each failure is
a ``UserError`` that names the file, the key and the value found, so a
damaged or hostile file ends in one clear line, never in a traceback from
deep inside the loader. ``inside`` keeps names a file mentions (a shard, a
snapshot, a checkpoint prefix) within the folder the user gave.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from gpt_tui.errors import UserError

# Bounds on sizes read from files: well above every GPT-2 (48 layers, width 1600, 50257 tokens)
# and gpt-tui preset, well below what would take minutes or gigabytes to build before failing.
MAX_LAYERS = 256
MAX_WIDTH = 16384
MAX_HEADS = 1024
MAX_VOCAB = 1 << 20
MAX_CONTEXT = 1 << 16
MAX_COUNTER = 1 << 62  # steps, epochs, tokens seen


def shown(value: Any, limit: int = 60) -> str:
    """``value`` as the message quotes it, cut short so a huge value cannot flood the line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def refuse(where: str | Path, key: str, value: Any, expected: str) -> UserError:
    return UserError(f"{where}: {key} is {shown(value)}, but it must be {expected}; the file is damaged or not "
                     "meant for gpt-tui, so use another copy or fix that value.")


def whole(value: Any, key: str, where: str | Path, low: int = 0, high: int = MAX_COUNTER) -> int:
    """An integer in ``low..high`` (JSON ``true`` and ``7.0`` are not integers here)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise refuse(where, key, value, f"a whole number from {low} to {high}")
    return value


def real(value: Any, key: str, where: str | Path, low: float = 0.0, high: float = math.inf) -> float:
    """A finite number in ``low..high``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise refuse(where, key, value, f"a number from {low} to {high}")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise refuse(where, key, value, f"a finite number from {low} to {high}")
    return number


def flag(value: Any, key: str, where: str | Path) -> bool:
    if not isinstance(value, bool):
        raise refuse(where, key, value, "true or false")
    return value


def text(value: Any, key: str, where: str | Path, choices: set[str] | frozenset[str] | None = None) -> str:
    if not isinstance(value, str) or (choices is not None and value not in choices):
        expected = "a string" if choices is None else "one of " + ", ".join(sorted(choices))
        raise refuse(where, key, value, expected)
    return value


def mapping(value: Any, key: str, where: str | Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise refuse(where, key, value, "a JSON object")
    return value


def inside(root: Path, candidate: Path, where: str | Path) -> Path:
    """``candidate`` resolved, refused unless it stays within ``root`` (links included).

    A file that names another file (an index naming its shards, ``refs/main``
    naming a snapshot, a TensorFlow ``checkpoint`` naming a prefix) is read
    only within the folder the user pointed at, never wherever it says.
    """
    base = root.resolve()
    try:
        target = candidate.resolve()
    except (OSError, RuntimeError) as exc:  # a loop of links
        raise UserError(f"{where} names {candidate}, which cannot be resolved ({exc}).") from None
    if not target.is_relative_to(base):
        raise UserError(f"{where} names {candidate}, which leads outside {root} (to {target}); gpt-tui reads only "
                        f"files within the folder it was given. Put the files together in one folder.")
    return target
