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
from gpt_tui import fileio, paths
from gpt_tui.engine import ownership, runs
from gpt_tui.engine.process_identity import valid_pid
from gpt_tui.errors import UserError

LOG_FILE = "train.log"
PID_FILE = "train.pid"
START_TIMEOUT_S = 60.0  # how long the launcher waits to see the run going before it hands back

# Runs in the intermediate process: start the trainer in a new session, print its pid and start time, leave.
# The child cannot be reaped (nor its pid reused) before this process exits, so the start time is its own.
_SPAWNER = """\
import os, subprocess, sys
from gpt_tui.engine.process_identity import start_time
log = int(sys.argv[1])  # the launcher's descriptor of train.log, opened without following links
proc = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                        start_new_session=True, close_fds=True)
sys.stdout.write(f"{proc.pid} {start_time(proc.pid) or ''}\\n")
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
    """Start ``gpt-tui train <train_args> --run-dir run_dir --quiet`` in the background and return at once.

    Unless ``train_args`` resume the run living in ``run_dir``, the folder
    must be new or unused (gpt_tui.engine.ownership); it is claimed for the
    trainer with a run id that the launcher's first status and the trainer share.
    """
    run_dir = paths.expand_user(run_dir).resolve()
    run_id = None if ownership.resumes_in_place(train_args, run_dir) else ownership.new_run_id()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"Cannot create the run directory {run_dir}: {exc.strerror or exc}; pick another with --run-dir.") from None
    if runs.run_is_live(run_dir):
        raise UserError(f"Run {run_dir} is already training; follow it with `gpt-tui attach {run_dir}`.")
    if run_id is not None:
        ownership.refuse_used(run_dir)  # before anything is written there
    log = run_dir / LOG_FILE
    claim = [f"--run-id={run_id}"] if run_id is not None else []
    command = [python or sys.executable, "-m", "gpt_tui", "train", *train_args, "--run-dir", str(run_dir), *claim, "--quiet"]
    try:
        with fileio.open_append(log, binary=True) as fh:
            fh.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command[1:])}\n".encode())
            spawner = subprocess.run(
                [python or sys.executable, "-c", _SPAWNER, str(fh.fileno()), *command],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                env=_child_env(),
                timeout=60,
                check=False,
                pass_fds=(fh.fileno(),),
            )
    except UserError:
        raise
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"Could not start the background run: {exc}.") from None
    words = spawner.stdout.decode(errors="replace").split()
    if spawner.returncode != 0 or not words or not words[0].isdigit():
        detail = spawner.stderr.decode(errors="replace").strip().splitlines()
        raise UserError(f"Could not start the background run: {detail[-1] if detail else 'no process id came back'}.")
    pid = int(words[0])
    started = int(words[1]) if len(words) > 1 and words[1].isdigit() else None  # what proves the pid is this run's
    try:
        fileio.atomic_write_text(run_dir / PID_FILE, f"{pid}\n")
        if runs.read_status(run_dir).get("pid") != pid:  # unless the run got to write its own already
            runs.write_status(run_dir, "starting", pid=pid, pid_start=started, run_id=run_id)
    except UserError:
        raise
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
    """The pid ``start_detached`` recorded for a run, if any (not proof that it is still the run's: see runs.run_is_live)."""
    try:
        text = (Path(run_dir) / PID_FILE).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return valid_pid(int(text)) if text.isdigit() else None
