"""``gpt-tui runs``: one line per training run, with its status, progress and best validation loss."""

from __future__ import annotations

import argparse

from gpt_tui.engine.runs import list_runs


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    runs = sub.add_parser("runs", help="list training runs and their status")
    runs.add_argument("--dir", help="runs folder (default: the user data dir's)")
    runs.set_defaults(func=cmd_runs)


def cmd_runs(args: argparse.Namespace) -> int:
    runs = list_runs(args.dir)
    if not runs:
        print("No runs yet; start one with `gpt-tui train`.")
        return 0
    print(f"{'RUN':<34} {'STATUS':<9} {'STEP':>12} {'BEST VAL':>9}  MODEL")
    for run in runs:
        steps = f"{run.step}/{run.total_steps}" if run.total_steps else str(run.step)
        best = f"{run.best_val_loss:.3f}" if run.best_val_loss is not None else "-"
        why = f"  ({run.problem})" if run.problem else ""
        print(f"{run.name:<34} {run.status:<9} {steps:>12} {best:>9}  {run.model or '-'}{why}")
    return 0
