"""The ``gpt-tui`` command: the app with no arguments, headless subcommands otherwise.

Every subcommand calls the same engine the app uses. A ``UserError`` becomes one
line on stderr and a non-zero exit; nothing the user typed produces a traceback.
Each subcommand is a module of this package that adds its own parser; the table
below names them all, in the order ``--help`` lists them.
"""

from __future__ import annotations

import argparse
import contextlib
import warnings
from typing import Any, Callable, Iterator, Sequence

from gpt_tui import __version__
from gpt_tui.cli import app, console, control, doctor, evaluate, generate, plot, runs, train, weights
from gpt_tui.engine.runtime import tune_malloc
from gpt_tui.errors import Notice, UserError
from gpt_tui.textsafe import visible

SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...] = (
    app.register,
    train.register,
    generate.register,
    evaluate.register,
    runs.register,
    plot.register,
    weights.register,
    control.register,
    doctor.register,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpt-tui",
        description="Pre-train GPT-2-style models from scratch, watch them learn, and talk to them. "
        "Run without a subcommand to open the app.",
    )
    parser.add_argument("--version", action="version", version=f"gpt-tui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in SUBCOMMANDS:
        register(sub)
    return parser


@contextlib.contextmanager
def _notices_as_lines() -> Iterator[None]:
    """Print every engine Notice as one ``gpt-tui: note:`` line; other warnings as Python shows them."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", Notice)
        show = warnings.showwarning

        def show_notice(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
            if issubclass(category, Notice):
                console.say(f"gpt-tui: note: {visible(message)}", err=True)
            else:
                show(message, category, *args, **kwargs)

        warnings.showwarning = show_notice
        yield


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", app.cmd_app)
    if func in (app.cmd_app, train.cmd_train):
        tune_malloc()  # before any thread starts, so the app's training worker shares the main heap
    try:
        with _notices_as_lines():
            return int(func(args) or 0)
    except UserError as exc:
        console.say(f"gpt-tui: error: {visible(exc)}", err=True)  # it can quote a file name or a file
        return 2
    except KeyboardInterrupt:
        console.say("\ngpt-tui: interrupted", err=True)
        return 130
    except RuntimeError as exc:
        if type(exc).__name__ != "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, named so torch stays unimported
            raise
        console.say("gpt-tui: error: the GPU ran out of memory; use a smaller model, batch or context, or --device cpu.",
                    err=True)
        return 2
    except BrokenPipeError:
        return 0
