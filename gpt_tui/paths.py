"""Where gpt-tui keeps files: the platform's user directories (XDG on Linux).

Each can be moved with an environment variable, which tests and shared GPU
boxes use: GPT_TUI_DATA_DIR, GPT_TUI_CACHE_DIR, GPT_TUI_CONFIG_DIR.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from gpt_tui.errors import UserError

APP_NAME = "gpt-tui"


def _dir(env: str, default: str) -> Path:
    path = Path(os.environ.get(env) or default)
    return path


def expand_user(path: str | os.PathLike[str]) -> Path:
    """``~`` and ``~user`` expanded; a ``~user`` that does not exist stays as typed (so "not found" names it).

    A NUL character can name no file on any platform; it is refused here, once, as a UserError.
    """
    if "\0" in os.fspath(path):
        raise UserError(f"The path {os.fspath(path)!r} contains a NUL character; no file can have that name.")
    try:
        return Path(path).expanduser()
    except RuntimeError:  # pathlib: "Could not determine home directory."
        return Path(path)


def data_dir() -> Path:
    """Runs, checkpoints and imported weights."""
    return _dir("GPT_TUI_DATA_DIR", platformdirs.user_data_dir(APP_NAME, appauthor=False))


def cache_dir() -> Path:
    """Tokenized corpora; safe to delete."""
    return _dir("GPT_TUI_CACHE_DIR", platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def config_dir() -> Path:
    """settings.toml, REPL history, user themes."""
    return _dir("GPT_TUI_CONFIG_DIR", platformdirs.user_config_dir(APP_NAME, appauthor=False))


def runs_dir() -> Path:
    return data_dir() / "runs"


def models_dir() -> Path:
    """Imported pretrained weights converted to gpt-tui checkpoints."""
    return data_dir() / "models"


def screenshots_dir() -> Path:
    """The app's screenshots taken while no run is open (a run's own go into its folder)."""
    return data_dir() / "screenshots"
