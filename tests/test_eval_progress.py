"""`gpt-tui eval` shows its progress on a terminal, as `train` does, and keeps a pipe for the results alone."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

from gpt_tui.cli import main

REPO = Path(__file__).resolve().parents[1]


def _eval_args(corpus: Path, init: Path) -> list[str]:
    return ["eval", "--checkpoint", str(init), "--data", str(corpus), "--context-length", "16", "--batch-size", "2",
            "--device", "cpu"]


def _read_all(fd: int, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> bytes:
    out = b""
    while True:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            proc.kill()
            raise AssertionError(f"no output for {timeout}s: {out!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the terminal's other end closed: the process exited
            break
        if not chunk:
            break
        out += chunk
    return out


@pytest.mark.slow
def test_eval_on_a_terminal_shows_batches_tokens_and_eta(corpus_and_init):
    corpus, init = corpus_and_init
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "gpt_tui", *_eval_args(corpus, init)],
                            stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    try:
        text = _read_all(master, proc).decode("utf-8", "replace")
    finally:
        os.close(master)
    assert proc.wait(timeout=60) == 0, text
    for split in ("train", "val"):
        lines = re.findall(rf"{split} \[[#.]+\] (\d+)/(\d+) batches, ([\d.]+k?)/([\d.]+k?) tokens, ETA (--|\d\d:\d\d)", text)
        assert lines, f"no progress line for {split}: {text!r}"
        done, total, _, _, _ = lines[-1]
        assert done == total and int(total) > 1  # the last batch is shown
        assert any(eta != "--" for *_, eta in lines), lines  # a time left once the pace is known
    results = [line for line in text.replace("\x1b[K", "").replace("\r", "\n").splitlines() if "perplexity" in line]
    assert [line.split()[0] for line in results] == ["train:", "val:"], text
    assert all("batches" not in line for line in results)  # the line was cleared before each result


def test_eval_into_a_pipe_prints_the_results_alone(corpus_and_init, capsys):
    corpus, init = corpus_and_init
    assert main(_eval_args(corpus, init)) == 0
    captured = capsys.readouterr()
    assert [line.split()[0] for line in captured.out.splitlines()] == ["train:", "val:"]
    assert "batches" not in captured.err and "ETA" not in captured.err
