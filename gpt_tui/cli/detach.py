"""``gpt-tui train --detach``: start the run in a background process that outlives this terminal.

The launcher picks the run directory, hands the child the same ``train`` flags
and returns once the child is under way; it never loads torch, the child does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gpt_tui.cli.train_flags import train_argv, train_overrides
from gpt_tui.engine.best_checkpoint import best_reference
from gpt_tui.engine.detach import start_detached, wait_until_running
from gpt_tui.engine.checkpoint_header import stored_train_config
from gpt_tui.engine.checkpoint_names import list_checkpoints
from gpt_tui.engine.ownership import confirm_stored_corpus, model_in_checkpoint, run_home, same_dir
from gpt_tui.engine.runs import new_run_dir
from gpt_tui.paths import expand_user


def _detached_run_dir(args: argparse.Namespace) -> Path:
    """--run-dir; else the run a resume continues; else (a new run, or a lone checkpoint file) a new folder."""
    if args.run_dir:
        return Path(args.run_dir)
    if args.resume:
        source = best_reference(args.resume) or expand_user(args.resume)  # RUN@best: that run's best checkpoint
        home = source if source.is_dir() else run_home(source)
        if home is not None:
            return home
        return new_run_dir(args.model or model_in_checkpoint(source) or "tiny")
    return new_run_dir(args.model or "tiny")


def _train_argv(args: argparse.Namespace) -> list[str]:
    """The ``train`` flags the user gave, as ``--flag=value`` (a value starting with "-" stays a value)."""
    argv = train_argv(train_overrides(args), skip=("run_dir", "run_id"))
    if args.resume:
        argv.append(f"--resume={(best_reference(args.resume) or expand_user(args.resume)).resolve()}")
    if args.init_from:
        argv.append(f"--init-from={args.init_from}")
    return argv


def _check_stored_corpus(args: argparse.Namespace) -> None:
    """Refuse here, not in the background run's log, to read the corpus a shared checkpoint names."""
    if not args.resume or args.data is not None:
        return
    source = best_reference(args.resume) or expand_user(args.resume)
    newest = list_checkpoints(source)[-1:] if source.is_dir() else [source]
    if newest and newest[0].is_file():
        stored = stored_train_config(newest[0])
        data, trained_in = stored.get("data"), stored.get("run_dir")
        if isinstance(data, (str, list)) and (trained_in is None or isinstance(trained_in, str)):  # else the run refuses it
            in_place = same_dir(trained_in, run_home(newest[0]))
            confirm_stored_corpus(args.resume, data, in_place=in_place, use="train on it")


def detach_train(args: argparse.Namespace) -> int:
    _check_stored_corpus(args)
    run_dir = _detached_run_dir(args)
    run = start_detached(_train_argv(args), run_dir)
    state = wait_until_running(run)
    where = run.run_dir
    if state == "starting":
        print(f"Training is starting in the background (pid {run.pid}): {where}")
    else:
        print(f"Training in the background (pid {run.pid}, {state}): {where}")
    print(f"  follow it:  gpt-tui attach {where}")
    print(f"  its log:    {run.log}")
    print(f"  stop it:    gpt-tui stop {where}   (saves a checkpoint first)")
    return 0
