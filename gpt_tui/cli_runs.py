"""Subcommands for runs that live on their own: ``train --detach``, ``attach``, ``stop`` and ``checkpoint``.

A detached run talks to the rest of the world only through its run directory
(see gpt_tui.engine.detach and gpt_tui.engine.runs), so these commands work
from any terminal, including one opened after the run began.
"""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path
from typing import Any

from gpt_tui.errors import UserError
from gpt_tui.paths import expand_user

REQUEST_WAIT_S = 120.0


def add_subcommands(sub: Any) -> None:
    attach = sub.add_parser("attach", help="open the app on a run: its live chart, stop and checkpoint controls, and a REPL")
    attach.add_argument("run", nargs="?", help="run name or directory (default: the newest run)")
    attach.add_argument("--compare", help="another run whose loss curves are overlaid on the chart")
    attach.set_defaults(func=cmd_attach)

    stop = sub.add_parser("stop", help="stop a running run after its current step; it saves a checkpoint first")
    stop.add_argument("run", nargs="?", help="run name or directory (default: the newest run)")
    stop.add_argument("--no-wait", action="store_true", help="return at once instead of waiting for the save")
    stop.set_defaults(func=cmd_stop)

    save = sub.add_parser("checkpoint", help="ask a running run to save a checkpoint after its current step")
    save.add_argument("run", nargs="?", help="run name or directory (default: the newest run)")
    save.add_argument("--no-wait", action="store_true", help="return at once instead of waiting for the save")
    save.set_defaults(func=cmd_checkpoint)


# ----- train --detach -----
def _detached_run_dir(args: argparse.Namespace) -> Path:
    from gpt_tui.engine.runs import new_run_dir

    if args.run_dir:
        return Path(args.run_dir)
    if args.resume:
        source = expand_user(args.resume)
        if source.is_dir():
            return source
        if source.parent.name == "checkpoints":
            return source.parent.parent
        raise UserError(f"{args.resume} is not inside a run directory; add --run-dir to say where the background run writes.")
    return new_run_dir(args.model or "tiny")


def _train_argv(args: argparse.Namespace) -> list[str]:
    """The ``train`` flags the user gave, as ``--flag=value`` (a value starting with "-" stays a value)."""
    from gpt_tui.cli import _TRAIN_FLAGS, _flag

    argv = []
    for name, _kind, _help in _TRAIN_FLAGS:
        value = getattr(args, name, None)
        if value is not None and name != "run_dir":
            argv.append(f"{_flag(name)}={value}")
    if args.resume:
        argv.append(f"--resume={expand_user(args.resume).resolve()}")
    if args.init_from:
        argv.append(f"--init-from={args.init_from}")
    return argv


def detach_train(args: argparse.Namespace) -> int:
    from gpt_tui.engine.detach import start_detached, wait_until_running

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


# ----- attach -----
def cmd_attach(args: argparse.Namespace) -> int:
    from gpt_tui.engine.runs import find_run

    run_dir = find_run(args.run)
    compare = str(find_run(args.compare)) if args.compare else None
    from gpt_tui.tui.app import run_app

    return run_app(attach=str(run_dir), compare=compare)


# ----- stop / checkpoint -----
def _live_run(name: str | None) -> tuple[Path, dict[str, Any]]:
    from gpt_tui.engine.runs import find_run, read_run, read_status

    run_dir = find_run(name)
    info = read_run(run_dir)
    if info.status not in ("running", "starting"):
        raise UserError(f"Run {run_dir.name} is not running (its status is {info.status}); `gpt-tui runs` lists them.")
    return run_dir, read_status(run_dir)


def cmd_stop(args: argparse.Namespace) -> int:
    import os

    from gpt_tui.engine import runlock
    from gpt_tui.engine.runs import read_run, request_control, write_status

    run_dir, status = _live_run(args.run)
    if runlock.holder(run_dir) is None:
        # Still starting (or a trainer too old to lock its run): SIGTERM stops it, saving if it has trained.
        pid = status.get("pid")
        if pid:
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass
        if status.get("state") == "starting":
            write_status(run_dir, "stopped", pid=pid, step=0)
            print(f"Stopped {run_dir.name} before its first step.")
        else:
            print(f"Sent SIGTERM to process {pid}; it saves a checkpoint and stops after its current step.")
        return 0
    request_control(run_dir, "stop")
    if args.no_wait:
        print(f"Asked {run_dir.name} to stop; it saves a checkpoint after its current step.")
        return 0
    deadline = time.monotonic() + REQUEST_WAIT_S
    while runlock.holder(run_dir) is not None:
        if time.monotonic() > deadline:
            print(f"Asked {run_dir.name} to stop; it is still finishing its step.")
            return 0
        time.sleep(0.1)
    info = read_run(run_dir)
    saved = f"; checkpoint {info.latest_checkpoint.name}" if info.latest_checkpoint else ""
    print(f"Run {run_dir.name} {info.status} at step {info.step}{saved}.")
    print(f"Resume with: gpt-tui train --resume {run_dir}")
    return 0


def cmd_checkpoint(args: argparse.Namespace) -> int:
    from gpt_tui.engine import runlock
    from gpt_tui.engine.events import CheckpointEvent
    from gpt_tui.engine.runs import METRICS_FILE, RunFollower, request_control

    run_dir, _ = _live_run(args.run)
    if runlock.holder(run_dir) is None:
        raise UserError(f"Run {run_dir.name} is still starting; ask again once it trains.")
    follower = RunFollower(run_dir)
    try:
        follower.offset = (run_dir / METRICS_FILE).stat().st_size
    except OSError:
        pass
    request_control(run_dir, "checkpoint")
    if args.no_wait:
        print(f"Asked {run_dir.name} to save a checkpoint after its current step.")
        return 0
    deadline = time.monotonic() + REQUEST_WAIT_S
    while time.monotonic() < deadline and runlock.holder(run_dir) is not None:
        for event in follower.poll().events:
            if isinstance(event, CheckpointEvent):
                print(f"Saved {event.path}")
                return 0
        time.sleep(0.1)
    print(f"Asked {run_dir.name} for a checkpoint; it has not saved one yet (a paused run saves when it resumes).")
    return 0
