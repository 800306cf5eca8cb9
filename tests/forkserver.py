"""Start training processes in a fraction of a second: forks of a server that has imported torch already.

A fresh ``python -m gpt_tui`` spends 2-5 s importing torch before it trains;
tests that start dozens of training processes fork them from one server
instead. Each child runs exactly what the command runs, ``gpt_tui.cli.main``,
with its stdout and stderr in a log file, and is a real process: signals and
SIGKILL reach it as they would reach the command. The server does no torch
computation itself, so no thread pool is running when it forks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

FORK_SERVER = r"""
import json, os, sys, traceback
import torch  # imported once here; every training process is a fork of this one
import safetensors.torch
import gpt_tui.cli, gpt_tui.engine.trainer, gpt_tui.engine.loss, gpt_tui.engine.generation, gpt_tui.engine.schedule
from gpt_tui.engine.data import tokenize_corpus
from gpt_tui.engine.model import GPTConfig, GPTModel
from gpt_tui.engine.tokenizer import get_tokenizer

get_tokenizer()
with torch.device("meta"):  # loads torch's meta-tensor machinery now, not in every child (no compute here)
    GPTModel(GPTConfig(vocab_size=16, context_length=4, emb_dim=8, n_layers=1, n_heads=2))
tokenize_corpus(sys.argv[1])  # fills the token cache, so no child is killed while writing it
print("ready", flush=True)
finished = {}
for line in sys.stdin:
    request = json.loads(line)
    if request["op"] == "spawn":
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            code = 1
            try:
                if request.get("preload"):
                    exec(request["preload"], {})
                code = gpt_tui.cli.main(request["argv"])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(pid, flush=True)
    elif request["op"] == "wait":
        pid = request["pid"]
        if pid not in finished:
            finished[pid] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        print(finished[pid], flush=True)
    elif request["op"] == "poll":
        pid = request["pid"]
        if pid not in finished:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                finished[pid] = os.waitstatus_to_exitcode(status)
        print(finished.get(pid, "running"), flush=True)
"""


class ForkServer:
    """One server process; ``spawn`` returns a child's pid, ``wait`` and ``poll`` its exit code (-N: signal N)."""

    def __init__(self, corpus: Path) -> None:
        """``corpus`` is tokenized once here, so no child is killed while filling the token cache."""
        # One thread per process: these tiny models gain nothing from more, and several
        # processes at once on a busy machine would leave OpenMP workers spinning.
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", FORK_SERVER, str(corpus)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
        )
        assert self.proc.stdout.readline().strip() == "ready"

    def _ask(self, request: dict) -> str:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def spawn(self, argv: list[str], log: Path, preload: str | None = None) -> int:
        """A child running ``gpt-tui <argv>``; ``preload`` is Python run in the child first (to hold it at a chosen point)."""
        return int(self._ask({"op": "spawn", "argv": argv, "log": str(log), "preload": preload}))

    def wait(self, pid: int) -> int:
        return int(self._ask({"op": "wait", "pid": pid}))

    def poll(self, pid: int) -> int | None:
        answer = self._ask({"op": "poll", "pid": pid})
        return None if answer == "running" else int(answer)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
