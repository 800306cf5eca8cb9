"""Fault injection: a training process killed with SIGKILL again and again, resumed each time, loses nothing.

Each training process is a fork of tests/forkserver.py's server (torch already
imported), so a resume starts in a fraction of a second; what runs in the fork
is what ``python -m gpt_tui train`` runs, and it dies from a real SIGKILL.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch

from gpt_tui.engine.checkpoint import CHECKPOINTS_SUBDIR, list_checkpoints, latest_checkpoint, load_checkpoint
from gpt_tui.engine.runs import read_metrics, read_run
from forkserver import ForkServer

KILLS = 24
MAX_STEPS = 30


def _wait_for(predicate, timeout: float = 60.0, poll: float = 0.002) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return False


def _temp_files(run_dir: Path) -> set[str]:
    folder = run_dir / CHECKPOINTS_SUBDIR
    try:
        return {name for name in os.listdir(folder) if name.endswith(".tmp")}
    except FileNotFoundError:
        return set()


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def _check_nothing_is_corrupt(run_dir: Path) -> int:
    """Every file a reader uses parses; returns the step of the newest usable checkpoint."""
    newest = latest_checkpoint(run_dir)
    # latest_checkpoint skips damaged files; atomic saves mean there are none to skip
    assert newest == list_checkpoints(run_dir)[-1]
    loaded = load_checkpoint(newest)
    assert loaded.kind == "full" and all(torch.isfinite(t).all() for t in loaded.model_state.values())
    text = (run_dir / "metrics.jsonl").read_text(encoding="utf-8")
    lines = text.split("\n")
    for line in lines[:-1]:  # complete lines; the last piece is "" or a line cut by the kill
        json.loads(line)
    json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    if (run_dir / "status.json").exists():
        json.loads((run_dir / "status.json").read_text(encoding="utf-8"))
    return loaded.train_state["step"]


def _step_losses(run_dir: Path) -> dict[int, float]:
    events, _ = read_metrics(run_dir)
    steps = [e for e in events if type(e).__name__ == "StepEvent"]
    assert [e.step for e in steps] == list(range(1, len(steps) + 1)), "each step logged once, in order"
    return {e.step: e.loss for e in steps}


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_loses_nothing(tmp_path, corpus_and_init):
    rng = random.Random(20261126)
    # A model small enough that a step is cheap, so checkpoint writes (every step) are much of the time.
    corpus, init = corpus_and_init
    common = [
        "--data", str(corpus), "--context-length", "16", "--batch-size", "2", "--max-steps", str(MAX_STEPS),
        "--eval-freq", "5", "--eval-iter", "1", "--sample-tokens", "0", "--device", "cpu", "--precision", "fp32", "--quiet",
    ]
    run_dir, reference_dir = tmp_path / "run", tmp_path / "reference"
    started = time.monotonic()
    server = ForkServer(corpus)
    try:
        reference = server.spawn(
            ["train", "--init-from", str(init), *common, "--checkpoint-every", "0", "--run-dir", str(reference_dir)],
            tmp_path / "reference.log",
        )
        fresh = ["train", "--init-from", str(init), *common, "--checkpoint-every", "1", "--run-dir", str(run_dir)]
        resume = ["train", "--resume", str(run_dir), "--quiet"]

        kills = in_write = 0
        newest_step = 0
        start_latency = step_interval = 0.2  # seconds; running means of what the attempts measure
        for attempt in range(KILLS):
            log = tmp_path / f"attempt-{attempt}.log"
            leftovers = _temp_files(run_dir)
            spawned = time.monotonic()
            pid = server.spawn(fresh if attempt == 0 else resume, log)
            # Odd attempts die inside a checkpoint write; the others while loading (which rewrites
            # metrics.jsonl) or at a random point of a step. Each moves the run on by a step or two at most.
            mode = "write" if attempt % 2 else rng.choice(["loading", "training"])
            if attempt == 0:
                assert _wait_for(lambda: list_checkpoints(run_dir), timeout=120), _read(log)  # something to resume
            if mode == "loading":
                time.sleep(rng.uniform(0.0, start_latency))
            else:
                assert _wait_for(lambda: "steps, " in _read(log), timeout=120), _read(log)
                start_latency = 0.5 * start_latency + 0.5 * (time.monotonic() - spawned)
                if mode == "training":
                    # The gap between two saves is a step; the time to the first one also holds the start-up.
                    saved = _read(log).count("Saved checkpoint")
                    _wait_for(lambda: _read(log).count("Saved checkpoint") > saved, timeout=60)
                    began, saved = time.monotonic(), _read(log).count("Saved checkpoint")
                    _wait_for(lambda: _read(log).count("Saved checkpoint") > saved, timeout=60)
                    step_interval = 0.5 * step_interval + 0.5 * (time.monotonic() - began)
                    time.sleep(rng.uniform(0.0, step_interval))
                else:
                    _wait_for(lambda: bool(_temp_files(run_dir) - leftovers), timeout=60, poll=0.001)
            os.kill(pid, signal.SIGKILL)
            code = server.wait(pid)
            assert code == -signal.SIGKILL, f"attempt {attempt} ended on its own ({code}):\n{_read(log)}"
            kills += 1
            # A new temporary file survives only a kill inside a save (a finished save renames it).
            in_write += bool(_temp_files(run_dir) - leftovers)
            resumed_line = [line for line in _read(log).splitlines() if "steps, resuming at step" in line]
            if attempt > 0 and resumed_line:
                assert f"resuming at step {newest_step}." in resumed_line[0]
            step = _check_nothing_is_corrupt(run_dir)
            assert step >= newest_step, "a kill never costs a saved step"
            newest_step = step
            assert newest_step < MAX_STEPS, "the run must not finish inside the kill loop"

        print(f"\nkill loop done after {time.monotonic() - started:.1f}s")
        final_log = tmp_path / "final.log"
        final = server.spawn(resume, final_log)
        assert server.wait(final) == 0, _read(final_log)
        assert server.wait(reference) == 0, _read(tmp_path / "reference.log")
    finally:
        server.close()

    print(f"\n{time.monotonic() - started:.1f}s: {kills} SIGKILLs, {in_write} inside a checkpoint write; resumed from step {newest_step}")
    assert kills >= 20
    assert in_write >= 3, f"only {in_write} kills landed inside a checkpoint write"
    assert f"resuming at step {newest_step}." in _read(final_log)
    assert _check_nothing_is_corrupt(run_dir) == MAX_STEPS
    assert not _temp_files(run_dir), "the finished run cleaned up temporary files of killed saves"
    info = read_run(run_dir)
    assert (info.status, info.step) == ("finished", MAX_STEPS)
    # Resumed after every kill, the run computed exactly what an unbroken run computes.
    losses, unbroken = _step_losses(run_dir), _step_losses(reference_dir)
    assert len(losses) == MAX_STEPS
    assert losses == unbroken
