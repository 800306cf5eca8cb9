"""``gpt-tui runs``: one line per training run, with its status, progress, best validation loss and best checkpoint."""

from __future__ import annotations

import argparse

from gpt_tui.engine.eval_coverage import coverage_text
from gpt_tui.engine.runs import list_runs
from gpt_tui.textsafe import visible


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    runs = sub.add_parser("runs", help="list training runs and their status")
    runs.add_argument("--dir", help="runs folder (default: the user data dir's)")
    runs.set_defaults(func=cmd_runs)


def cmd_runs(args: argparse.Namespace) -> int:
    runs = list_runs(args.dir)
    if not runs:
        print("No runs yet; start one with `gpt-tui train`.")
        return 0
    print(f"{'RUN':<34} {'STATUS':<9} {'STEP':>12} {'BEST VAL':>9}  {'LAST VAL READ':<26}  {'MODEL':<12} BEST CKPT")
    for run in runs:
        steps = f"{run.step}/{run.total_steps}" if run.total_steps else str(run.step)
        best = f"{run.best_val_loss:.3f}" if run.best_val_loss is not None else "-"
        why = f"  ({visible(run.problem)})" if run.problem else ""  # names and values read from the run's files
        kept = f"@{run.best_checkpoint.step}" if run.best_checkpoint else "-"  # generate --checkpoint RUN@best
        name, status, model = visible(run.name), visible(run.status), visible(run.model or "-")
        last = run.last_eval
        read = (coverage_text(last.val_tokens, last.val_split_tokens) if last else "") or "-"  # what an evaluation read
        print(f"{name:<34} {status:<9} {steps:>12} {best:>9}  {read:<26}  {model:<12} {kept}{why}")
    return 0
