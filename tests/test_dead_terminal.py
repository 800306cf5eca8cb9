"""A closed terminal, a reader that went away, a full disk under stdout: the run still saves and says why it stopped.

The processes are forks of tests/forkserver.py's server running what
``python -m gpt_tui train`` runs; a preload first puts their output where a
user's goes: a pseudo-terminal that becomes the process's controlling terminal
(closing its master is closing the terminal window or killing the tmux
session), a FIFO the test reads a few bytes from and then closes (``| head -c``),
or /dev/full.
"""

from __future__ import annotations

import os
import pty
import re
import select
import time
from pathlib import Path

import pytest

from gpt_tui.engine.checkpoint import latest_checkpoint, load_checkpoint
from gpt_tui.engine.events import ErrorEvent, StepEvent
from gpt_tui.engine.runs import read_metrics, read_status
from forkserver import ForkServer

# Runs the child with the pty slave as its controlling terminal and as stdin, stdout and stderr.
ON_TERMINAL = """
import fcntl, os, termios
os.setsid()
fd = os.open({slave!r}, os.O_RDWR | os.O_NOCTTY)
fcntl.ioctl(fd, termios.TIOCSCTTY, 0)
for target in (0, 1, 2):
    os.dup2(fd, target)
os.close(fd)
"""
STDOUT_TO = "import os; os.dup2(os.open({path!r}, os.O_WRONLY), 1)"  # stderr stays on the log file
PROGRESS_BAR = re.compile(rb"\] \d+/\d+ loss")


def _train_args(corpus: Path, init: Path, run_dir: Path, max_steps: int, eval_freq: int = 1000) -> list[str]:
    return [
        "train", "--init-from", str(init), "--data", str(corpus), "--context-length", "16", "--batch-size", "2",
        "--max-steps", str(max_steps), "--eval-freq", str(eval_freq), "--eval-iter", "1", "--sample-tokens", "0",
        "--device", "cpu", "--precision", "fp32", "--run-dir", str(run_dir),
    ]


def _exit_code(server: ForkServer, pid: int, what: str, timeout: float = 120.0) -> int:
    deadline = time.monotonic() + timeout
    while (code := server.poll(pid)) is None:
        assert time.monotonic() < deadline, f"{what} did not exit"
        time.sleep(0.02)
    return code


def _losses(run_dir: Path) -> dict[int, float]:
    events, _ = read_metrics(run_dir)
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert [e.step for e in steps] == list(range(1, len(steps) + 1))
    return {e.step: e.loss for e in steps}


def _errors(run_dir: Path) -> list[str]:
    events, _ = read_metrics(run_dir)
    return [e.message for e in events if isinstance(e, ErrorEvent)]


def _saved_step(run_dir: Path) -> int:
    checkpoint = load_checkpoint(latest_checkpoint(run_dir))
    assert checkpoint.kind == "full"
    return checkpoint.train_state["step"]


@pytest.mark.slow
def test_closing_the_terminal_saves_and_the_run_resumes_exactly(corpus_and_init, tmp_path):
    corpus, init = corpus_and_init
    closed, unbroken = tmp_path / "closed", tmp_path / "unbroken"
    master, slave = pty.openpty()
    server = ForkServer(corpus)
    try:
        # Long enough that only the hangup can end it; with the progress bar, as in a terminal.
        pid = server.spawn(
            _train_args(corpus, init, closed, 100_000), tmp_path / "closed.log",
            preload=ON_TERMINAL.format(slave=os.ttyname(slave)),
        )
        seen = b""
        deadline = time.monotonic() + 120
        while not PROGRESS_BAR.search(seen):
            assert time.monotonic() < deadline and server.poll(pid) is None, seen.decode(errors="replace")
            if select.select([master], [], [], 0.05)[0]:
                seen += os.read(master, 4096)
        os.close(slave)  # held open until now: reading a master with no slave open fails
        os.close(master)  # the terminal goes away: SIGHUP, and every later write to it fails with EIO
        code = _exit_code(server, pid, "the run whose terminal closed")
        assert code == 0, (code, _errors(closed))
        assert _errors(closed) == []
        status = read_status(closed)
        assert status["state"] == "stopped", status
        assert "terminal closed" in status["reason"] and "SIGHUP" in status["reason"], status
        stopped_at = _saved_step(closed)
        assert 1 <= stopped_at == status["step"]

        total = stopped_at + 3
        resumed = server.spawn(["train", "--resume", str(closed), "--max-steps", str(total), "--quiet"], tmp_path / "resume.log")
        straight = server.spawn([*_train_args(corpus, init, unbroken, total), "--quiet"], tmp_path / "unbroken.log")
        assert server.wait(resumed) == 0, (tmp_path / "resume.log").read_text(errors="replace")
        assert server.wait(straight) == 0, (tmp_path / "unbroken.log").read_text(errors="replace")
    finally:
        server.close()
    assert len(_losses(unbroken)) == total
    assert _losses(closed) == _losses(unbroken)  # identical, step for step, across the closed terminal


@pytest.mark.slow
def test_a_reader_that_leaves_and_a_full_disk_under_stdout_still_save(corpus_and_init, tmp_path):
    corpus, init = corpus_and_init
    piped, full = tmp_path / "piped", tmp_path / "full"
    fifo = tmp_path / "stdout.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # open before the writer, so its open does not block
    server = ForkServer(corpus)
    try:
        # One line per step on stdout; 2000 steps would take far longer than the test waits.
        pipe_pid = server.spawn(
            _train_args(corpus, init, piped, 2000, eval_freq=1), tmp_path / "piped.log", preload=STDOUT_TO.format(path=str(fifo))
        )
        full_pid = server.spawn(
            _train_args(corpus, init, full, 12, eval_freq=1), tmp_path / "full.log", preload=STDOUT_TO.format(path="/dev/full")
        )
        got = b""
        deadline = time.monotonic() + 120
        while b"(Step 000002)" not in got:  # like `| head`: read the first lines, then leave
            assert time.monotonic() < deadline and server.poll(pipe_pid) is None, (tmp_path / "piped.log").read_text()
            if select.select([reader], [], [], 0.05)[0]:
                got += os.read(reader, 100)
        os.close(reader)
        codes = {
            "piped": _exit_code(server, pipe_pid, "the run whose reader left", timeout=60),
            "full": _exit_code(server, full_pid, "the run writing to /dev/full"),
        }
    finally:
        server.close()
    for name, run_dir in (("piped", piped), ("full", full)):
        log = (tmp_path / f"{name}.log").read_text(errors="replace")
        assert codes[name] == 0, log
        assert "Traceback" not in log and "run directory" not in log, log
        assert _errors(run_dir) == []
        assert read_status(run_dir)["step"] == _saved_step(run_dir)
    status = read_status(piped)
    assert status["state"] == "stopped" and "output closed" in status["reason"], status
    assert 2 <= status["step"] < 2000
    assert read_status(full)["state"] == "finished" and _saved_step(full) == 12


def test_an_event_callback_that_cannot_write_stops_the_run_in_order_and_is_not_blamed_on_the_run_directory(
    corpus_and_init, tmp_path
):
    from gpt_tui.engine.events import CheckpointEvent
    from gpt_tui.engine.trainer import Trainer, TrainConfig

    corpus, init = corpus_and_init
    run_dir = tmp_path / "run"
    seen: list = []

    def display(event) -> None:
        seen.append(event)
        if isinstance(event, StepEvent) and event.step >= 2:
            raise OSError(5, "Input/output error")  # what printing to a closed terminal raises

    config = TrainConfig(
        data=str(corpus), context_length=16, batch_size=2, max_steps=500, eval_freq=100, eval_iter=1,
        sample_tokens=0, device="cpu", precision="fp32", run_dir=str(run_dir),
    )
    done = Trainer(config, display, init_from=str(init)).run()
    assert done.reason == "stopped" and done.step == 2  # the failure came as step 2 ended: no step after it
    assert _errors(run_dir) == []
    status = read_status(run_dir)
    assert status["state"] == "stopped" and "display failed: Input/output error" in status["reason"], status
    assert _saved_step(run_dir) == 2 and any(isinstance(e, CheckpointEvent) and e.step == 2 for e in seen)
