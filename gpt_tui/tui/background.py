"""Runs this app leaves training in other processes, and the line that says so when the app quits.

Quitting never stops a run in another process (one started from the palette's
"Train: in the background", or one attached to): the exit message names each
run still alive and how to come back to it. gpt_tui.tui.attach records each
run it starts or follows here.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Any

from gpt_tui.engine import runlock
from gpt_tui.engine.runs import run_is_live
from gpt_tui.textsafe import visible

_STARTED: "weakref.WeakKeyDictionary[Any, list[Path]]" = weakref.WeakKeyDictionary()


def remember(app: Any, run_dir: str | Path) -> None:
    """A run ``app`` started in a background process, or followed."""
    runs = _STARTED.setdefault(app, [])
    if Path(run_dir) not in runs:
        runs.append(Path(run_dir))


def live_background_runs(app: Any) -> list[Path]:
    """Runs started from ``app`` or attached in it that still train in another process."""
    me = os.getpid()
    return [run for run in _STARTED.get(app, []) if runlock.holder(run) != me and run_is_live(run)]


def exit_note(app: Any) -> str | None:
    """What to print after the app closes while runs train on, or None."""
    lines = []
    for run in live_background_runs(app):
        name = visible(run.name)
        lines.append(f"Run {name} keeps training in the background; `gpt-tui attach {name}` or the Runs screen (F4) shows it again.")
    return "\n".join(lines) or None
