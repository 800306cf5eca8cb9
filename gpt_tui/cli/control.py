"""Subcommands for runs that live on their own: ``attach``, ``stop`` and ``checkpoint``.

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

from gpt_tui.engine import runlock
from gpt_tui.engine.events import CheckpointEvent
from gpt_tui.engine.process_identity import signal_same_process, valid_pid
from gpt_tui.engine.runs import (
    METRICS_FILE,
    RunFollower,
    find_run,
    process_alive,
    read_run,
    read_status,
    request_control,
    run_state,
    write_status,
)
from gpt_tui.errors import UserError
from gpt_tui.textsafe import visible

# Deferred imports: the app (textual) loads only for `attach`, so `stop` and `checkpoint` stay quick.

REQUEST_WAIT_S = 120.0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


# ----- attach -----
def _usable_run(name: str | None) -> Path:
    """A run to open; a damaged one only while its trainer lives (and rewrites what it needs)."""
    run_dir = find_run(name)
    info = read_run(run_dir)
    if info.status == "damaged" and runlock.holder(run_dir) is None:
        raise UserError(f"Run {run_dir.name} is damaged ({info.problem}); repair or remove {run_dir}.")
    return run_dir


def cmd_attach(args: argparse.Namespace) -> int:
    run_dir = _usable_run(args.run)
    compare = str(_usable_run(args.compare)) if args.compare else None
    from gpt_tui.tui.launch import run_app

    return run_app(attach=str(run_dir), compare=compare)


# ----- stop / checkpoint -----
def _live_run(name: str | None) -> tuple[Path, dict[str, Any]]:
    """A run that trains now, or is about to; its damaged files only matter when no trainer holds its lock."""
    run_dir = find_run(name)
    state, problem = run_state(run_dir)
    if state == "damaged":
        if runlock.holder(run_dir) is not None:
            return run_dir, {}  # its trainer takes requests through the control channel whatever its files say
        raise UserError(f"Run {run_dir.name} is damaged ({problem}); nothing was sent to any process.")
    if state == "stale":
        raise UserError(f"Run {run_dir.name} is stale: no trainer holds its lock, and {_what_pid_is(read_status(run_dir))}; "
                        f"nothing was signalled. Resume it with `gpt-tui train --resume {run_dir}`.")
    if state not in ("running", "starting", "paused"):
        raise UserError(f"Run {run_dir.name} is not running (its status is {state}); `gpt-tui runs` lists them.")
    return run_dir, read_status(run_dir)


def _what_pid_is(status: dict[str, Any]) -> str:
    """What the pid a stale run's status names turned out to be, in words."""
    pid = status.get("pid")
    if valid_pid(pid) is None:
        return f"its status names pid {pid!r}, which is no trainer's process id"
    if not process_alive(pid):
        return f"its process {pid} has exited"
    proof = "it started at another time" if status.get("pid_start") is not None else "the run recorded no start time to prove it"
    return f"process {pid} is alive but is not its trainer ({proof})"


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop through the run's control channel; a signal goes only to a process proven to be the run's."""
    run_dir, status = _live_run(args.run)
    if runlock.holder(run_dir) is None:
        # A background run still starting: its launcher recorded the child's pid and start time.
        pid, started = status.get("pid"), status.get("pid_start")
        if status.get("state") != "starting" or not signal_same_process(pid, started, signal.SIGTERM):
            raise UserError(f"Run {run_dir.name} holds no lock and the process it names is not its trainer; "
                            "nothing was signalled.")
        write_status(run_dir, "stopped", pid=pid, pid_start=started, step=0)
        print(f"Stopped {visible(run_dir.name)} before its first step (sent SIGTERM to its process {pid}).")
        return 0
    request_control(run_dir, "stop")
    if args.no_wait:
        print(f"Asked {visible(run_dir.name)} to stop; it saves a checkpoint after its current step.")
        return 0
    deadline = time.monotonic() + REQUEST_WAIT_S
    while runlock.holder(run_dir) is not None:
        if time.monotonic() > deadline:
            print(f"Asked {visible(run_dir.name)} to stop; it is still finishing its step.")
            return 0
        time.sleep(0.1)
    info = read_run(run_dir)
    saved = f"; checkpoint {info.latest_checkpoint.name}" if info.latest_checkpoint else ""
    print(f"Run {visible(run_dir.name)} {visible(info.status)} at step {info.step}{saved}.")
    print(f"Resume with: gpt-tui train --resume {visible(run_dir)}")
    return 0


def cmd_checkpoint(args: argparse.Namespace) -> int:
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
        print(f"Asked {visible(run_dir.name)} to save a checkpoint after its current step.")
        return 0
    deadline = time.monotonic() + REQUEST_WAIT_S
    while time.monotonic() < deadline and runlock.holder(run_dir) is not None:
        for event in follower.poll().events:
            if isinstance(event, CheckpointEvent):
                print(f"Saved {visible(event.path)}")
                return 0
        time.sleep(0.1)
    name = visible(run_dir.name)
    print(f"Asked {name} for a checkpoint; it has not saved one yet (a paused run saves when it resumes).")
    return 0
