"""Ctrl+C, SIGTERM and SIGHUP on a training process: a checkpoint, a final log line, a clean exit.

The processes are forks of tests/forkserver.py's server running what
``python -m gpt_tui train`` runs (``gpt_tui.cli.main``), signalled with
``os.kill``. A run stopped by a signal and resumed with ``--resume`` computes
exactly the losses of a run that was never stopped.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from gpt_tui.engine.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from gpt_tui.engine.events import DoneEvent, StepEvent
from gpt_tui.engine.runs import read_metrics, read_run, read_status
from forkserver import ForkServer

MAX_STEPS = 40
STOP_AFTER = 3  # steps seen in metrics.jsonl before the signal goes out


def _train_args(corpus: Path, init: Path, run_dir: Path, checkpoint_every: int = 0) -> list[str]:
    return [
        "--init-from", str(init), "--data", str(corpus), "--context-length", "16", "--batch-size", "2",
        "--max-steps", str(MAX_STEPS), "--eval-freq", "5", "--eval-iter", "1", "--sample-tokens", "0",
        "--device", "cpu", "--precision", "fp32", "--checkpoint-every", str(checkpoint_every),
        "--run-dir", str(run_dir), "--quiet",
    ]


# For the "twice" run: a checkpoint from step STOP_AFTER on is written to its temporary file,
# then the save waits there (up to a minute) before the rename. Both Ctrl+Cs therefore reach the
# process inside a write, however busy the machine is; the second one must end it at once.
HOLD_SAVES_MID_WRITE = f"""
import re, time
from gpt_tui.engine import checkpoint

real_atomic_save = checkpoint._atomic_save

def atomic_save_held_mid_write(path, write):
    def write_then_wait(tmp):
        write(tmp)
        found = re.search(r"step-(\\d+)", path.name)  # the periodic saves; best.safetensors is written as it comes
        if found and int(found.group(1)) >= {STOP_AFTER}:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                time.sleep(0.01)
    real_atomic_save(path, write_then_wait)

checkpoint._atomic_save = atomic_save_held_mid_write
"""


def _steps_done(run_dir: Path) -> int:
    events, _ = read_metrics(run_dir)
    return max((e.step for e in events if isinstance(e, StepEvent)), default=0)


def _wait(predicate, timeout: float = 120.0, poll: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(poll)


def _losses(run_dir: Path) -> dict[int, float]:
    events, _ = read_metrics(run_dir)
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert [e.step for e in steps] == list(range(1, len(steps) + 1))
    return {e.step: e.loss for e in steps}


@pytest.mark.slow
def test_signals_save_a_checkpoint_and_resume_matches_an_unbroken_run(corpus_and_init, tmp_path):
    corpus, init = corpus_and_init
    runs = {name: tmp_path / name for name in ("SIGINT", "SIGTERM", "SIGHUP", "twice", "unbroken")}
    logs = {name: tmp_path / f"{name}.log" for name in runs}
    server = ForkServer(corpus)
    try:
        pids = {
            name: server.spawn(
                ["train", *_train_args(corpus, init, run_dir, 1 if name == "twice" else 0)],
                logs[name],
                preload=HOLD_SAVES_MID_WRITE if name == "twice" else None,
            )
            for name, run_dir in runs.items()
        }
        # Each run gets its signal as soon as it has trained a few steps, all watched at once.
        # "twice" is Ctrl+C twice, both inside a checkpoint write (HOLD_SAVES_MID_WRITE): out at once.
        pending = {"SIGINT", "SIGTERM", "SIGHUP", "twice"}
        deadline = time.monotonic() + 120
        while pending:
            for name in list(pending):
                if _steps_done(runs[name]) >= STOP_AFTER and (name != "twice" or list_checkpoints(runs[name])):
                    os.kill(pids[name], signal.SIGINT if name == "twice" else getattr(signal, name))
                    pending.discard(name)
                else:
                    assert server.poll(pids[name]) is None, f"{name} ended before its signal:\n{logs[name].read_text()}"
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.002)
        _wait(lambda: "SIGINT: finishing this step" in logs["twice"].read_text(errors="replace"), poll=0.001)
        os.kill(pids["twice"], signal.SIGINT)
        codes = {name: server.wait(pid) for name, pid in pids.items()}
        text = {name: log.read_text(encoding="utf-8", errors="replace") for name, log in logs.items()}

        assert codes["unbroken"] == 0, text["unbroken"]
        assert codes["twice"] == 130, text["twice"]
        assert "Stopped at once" in text["twice"]
        twice_ckpt = load_checkpoint(latest_checkpoint(runs["twice"]))  # the interrupted save left the last one whole
        assert twice_ckpt.kind == "full"
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            run_dir, log = runs[name], text[name]
            assert codes[name] == 0, log
            assert f"{name}: finishing this step and saving a checkpoint" in log
            assert f"Resume with: gpt-tui train --resume {run_dir}" in log
            stopped_at = load_checkpoint(latest_checkpoint(run_dir)).train_state["step"]
            assert STOP_AFTER <= stopped_at < MAX_STEPS
            events, _ = read_metrics(run_dir)
            assert isinstance(events[-1], DoneEvent) and events[-1].reason == "stopped" and events[-1].step == stopped_at
            assert read_status(run_dir)["state"] == "stopped"
            assert read_run(run_dir).status == "stopped"

        # --resume continues each from its checkpoint, all at once.
        resumed = {
            name: server.spawn(["train", "--resume", str(runs[name]), "--quiet"], tmp_path / f"{name}-resume.log")
            for name in ("SIGINT", "SIGTERM", "SIGHUP", "twice")
        }
        resume_codes = {name: server.wait(pid) for name, pid in resumed.items()}
    finally:
        server.close()
    unbroken = _losses(runs["unbroken"])
    assert len(unbroken) == MAX_STEPS
    for name, code in resume_codes.items():
        log = (tmp_path / f"{name}-resume.log").read_text(encoding="utf-8", errors="replace")
        assert code == 0, log
        assert "resuming at step" in log
        assert read_run(runs[name]).status == "finished"
        # identical losses, step for step, across the signal-triggered stop
        assert _losses(runs[name]) == unbroken, name
    json.loads((runs["twice"] / "config.json").read_text(encoding="utf-8"))
