"""``gpt-tui app`` (and ``gpt-tui`` alone): open the terminal app, on a run directory if one is given."""

from __future__ import annotations

import argparse

# Deferred imports: the app (textual, ~0.3 s) loads only when it opens, never for headless commands.


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    app = sub.add_parser("app", help="open the terminal app (the default)")
    app.add_argument("--run-dir", help="open on this run directory")
    app.set_defaults(func=cmd_app)


def cmd_app(args: argparse.Namespace) -> int:
    from gpt_tui.tui.launch import run_app

    return run_app(run_dir=getattr(args, "run_dir", None))
