"""Palette → Screenshot: an SVG of the screen, saved beside the run it shows and the path said.

Textual's own delivery writes to ~/Downloads, which may not exist, and reports a
failure without its reason. Here the file goes into the open run's folder, or
else the data directory's screenshots folder (created when missing), through
an atomic write that refuses links; the notice names the full path, or says
what stopped the write.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from gpt_tui import fileio, paths
from gpt_tui.errors import UserError
from gpt_tui.textsafe import visible


def screenshot_folder(run_dir: str) -> Path:
    """The open run's folder when there is one on disk, else the data directory's screenshots folder."""
    if run_dir and Path(run_dir).is_dir():
        return Path(run_dir)
    return paths.screenshots_dir()


def save_screenshot(app: Any, filename: str | None = None, folder: str | None = None) -> Path | None:
    """Write the screen as SVG and notify the full path (or the reason it could not be written)."""
    from gpt_tui.engine.runs import SCREENSHOT_FILE

    target_dir = Path(folder) if folder else screenshot_folder(app.progress.run_dir)
    name = filename or SCREENSHOT_FILE.format(stamp=time.strftime("%Y%m%d-%H%M%S"))
    try:
        svg = app.export_screenshot()
        path = fileio.atomic_write_text(fileio.checked_dir(target_dir) / name, svg)
    except (OSError, UserError) as exc:
        why = str(exc) if isinstance(exc, UserError) else f"{exc.strerror or exc} ({exc.filename or target_dir})"
        app.notify(f"Could not save the screenshot: {visible(why)}", title="Screenshot", severity="error", timeout=10)
        return None
    app.notify(f"Screenshot saved to {visible(str(path.resolve()))}", title="Screenshot", timeout=8)
    return path
