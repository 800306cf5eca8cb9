"""The ``train`` flags, read from TrainConfig's option declarations (gpt_tui.engine.options).

Both the parser of ``train`` and the argument list that ``train --detach``
hands its background process come from here, so an option declared on
TrainConfig reaches both; it lives apart from either so neither has to import the other.
"""

from __future__ import annotations

import argparse
from typing import Any

from gpt_tui.engine.options import add_flags, given_flags
from gpt_tui.engine.train_options import TrainConfig, train_argv

__all__ = ["add_train_flags", "train_argv", "train_overrides"]


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig option; each defaults to None so an explicit value can be told apart when resuming."""
    add_flags(parser, TrainConfig)


def train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields the user set on the command line (``--grad-clip 0``: no clipping)."""
    return given_flags(args, TrainConfig)
