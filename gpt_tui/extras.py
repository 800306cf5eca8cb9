"""Optional extras (TensorBoard, matplotlib): imported only where used, and named when missing.

A feature that needs an extra asks here, so a user without it gets one line
that says which ``pip install`` brings it, never an ImportError traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from gpt_tui.errors import UserError


def install_hint(extra: str) -> str:
    return f'pip install "gpt-tui[{extra}]"'


def missing(module: str, extra: str, purpose: str) -> UserError:
    return UserError(f"{purpose} needs {module.split('.')[0]}, which is not installed; {install_hint(extra)} adds it.")


def available(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (cheap: for checking options early)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or blocked (sys.modules[name] = None)
        return False


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """``module`` imported, or a UserError naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise missing(module, extra, purpose) from None
