"""Training in the background: a process that outlives the terminal (and the SSH session) that started it.

``start_detached`` runs ``python -m gpt_tui train ...`` through a short-lived
intermediate process, so the trainer is orphaned at once (nobody has to reap
it) and sits in a session of its own (``setsid``): closing the terminal sends
SIGHUP to the terminal's session, not to it. Its stdin is /dev/null and its
stdout and stderr go to ``<run>/train.log``. Everything else it writes to the
run directory as any run does: config.json, metrics.jsonl, status.json,
checkpoints/, and run.lock while it lives.

Talking to it afterwards goes through the run directory too
(gpt_tui.engine.runs.request_control: stop, checkpoint, pause, resume), or
through signals to the pid in ``train.pid``: SIGTERM, SIGINT or SIGHUP stop it
after the current step and save a checkpoint; SIGUSR1 saves a checkpoint and
goes on.

Nothing here imports torch, so ``gpt-tui train --detach`` returns quickly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import gpt_tui
from gpt_tui import paths
from gpt_tui.engine import runs
from gpt_tui.errors import UserError

LOG_FILE = "train.log"
PID_FILE = "train.pid"
START_TIMEOUT_S = 60.0  # how long the launcher waits to see the run going before it hands back

# Runs in the intermediate process: start the trainer in a new session, print its pid, leave.
_SPAWNER = """\
import os, subprocess, sys
log = open(sys.argv[1], "ab", buffering=0)
proc = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                        start_new_session=True, close_fds=True)
sys.stdout.write(f"{proc.pid}\\n")
sys.stdout.flush()
os._exit(0)
"""


@dataclass(frozen=True)
class DetachedRun:
    run_dir: Path
    pid: int
    log: Path


def _child_env() -> dict[str, str]:
    """The caller's environment, with this gpt_tui importable and output unbuffered for the log."""
    env = dict(os.environ)
    package_root = str(Path(gpt_tui.__file__).resolve().parent.parent)
    existing = env.get("PYTHONPATH")
    env["PYTHONPATH"] = package_root + (os.pathsep + existing if existing else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_detached(train_args: Sequence[str], run_dir: str | Path, *, python: str | None = None) -> DetachedRun:
    """Start ``gpt-tui train <train_args> --run-dir run_dir --quiet`` in the background and return at once."""
    run_dir = paths.expand_user(run_dir).resolve()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"Cannot create the run directory {run_dir}: {exc.strerror or exc}; pick another with --run-dir.") from None
    if runs.run_is_live(run_dir, runs.read_status(run_dir).get("pid")):
        raise UserError(f"Run {run_dir} is already training; follow it with `gpt-tui attach {run_dir}`.")
    log = run_dir / LOG_FILE
    command = [python or sys.executable, "-m", "gpt_tui", "train", *train_args, "--run-dir", str(run_dir), "--quiet"]
    try:
        with open(log, "ab") as fh:
            fh.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command[1:])}\n".encode())
        spawner = subprocess.run(
            [python or sys.executable, "-c", _SPAWNER, str(log), *command],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=_child_env(),
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"Could not start the background run: {exc}.") from None
    pid_text = spawner.stdout.decode(errors="replace").strip()
    if spawner.returncode != 0 or not pid_text.isdigit():
        detail = spawner.stderr.decode(errors="replace").strip().splitlines()
        raise UserError(f"Could not start the background run: {detail[-1] if detail else 'no process id came back'}.")
    pid = int(pid_text)
    try:
        (run_dir / PID_FILE).write_text(f"{pid}\n", encoding="ascii")
        if runs.read_status(run_dir).get("pid") != pid:  # unless the run got to write its own already
            runs.write_status(run_dir, "starting", pid=pid)
    except OSError as exc:
        raise UserError(f"Started pid {pid}, but cannot write to {run_dir}: {exc.strerror or exc}.") from None
    return DetachedRun(run_dir=run_dir, pid=pid, log=log)


def last_error(log: Path) -> str | None:
    """The error a failed run printed last (``gpt-tui: error: ...``), or its last line."""
    try:
        lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    for line in reversed(lines):
        if line.startswith("gpt-tui: error: "):
            return line[len("gpt-tui: error: "):]
    return lines[-1] if lines else None


def wait_until_running(run: DetachedRun, timeout: float = START_TIMEOUT_S, poll_s: float = 0.1) -> str:
    """Wait until the background run trains (or ended already); its state, or UserError if it died.

    Returns "starting" when it is still preparing after ``timeout`` (a big
    corpus takes a while to tokenize); it keeps going in the background.
    """
    deadline = time.monotonic() + timeout
    while True:
        status = runs.read_status(run.run_dir)
        state = status.get("state")
        if status.get("pid") == run.pid and state in ("running", "finished", "stopped"):
            return str(state)
        if not runs.process_alive(run.pid):
            status = runs.read_status(run.run_dir)
            if status.get("pid") == run.pid and status.get("state") in ("running", "finished", "stopped"):
                return str(status["state"])
            reason = last_error(run.log) or "it exited without a message"
            try:
                runs.write_status(run.run_dir, "failed", pid=run.pid, message=reason)
            except OSError:
                pass
            raise UserError(f"The background run stopped at once: {reason} (log: {run.log})")
        if time.monotonic() >= deadline:
            return "starting"
        time.sleep(poll_s)


def detached_pid(run_dir: str | Path) -> int | None:
    """The pid ``start_detached`` recorded for a run, if any."""
    try:
        text = (Path(run_dir) / PID_FILE).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None
