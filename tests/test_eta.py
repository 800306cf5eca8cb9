"""The ETA: from the pace of training steps alone, steady through evaluations and sane after a resume."""

from __future__ import annotations

from typing import Any

import pytest

from gpt_tui.engine.events import CheckpointEvent, EvalEvent, SampleEvent, StartEvent, StepEvent
from gpt_tui.tui.progress import TrainingProgress

STEP_S = 0.1
EVAL_S = 6.0  # an evaluation takes as long as 60 steps


def _start(start_step: int, total: int) -> StartEvent:
    return StartEvent(run_dir="/tmp/run", device="cpu", num_parameters=1000, train_tokens=10_000, val_tokens=1000,
                      train_batches=100, val_batches=10, total_steps=total, start_step=start_step)


def _step(step: int, elapsed: float, total: int) -> StepEvent:
    return StepEvent(step, 1, step * 64, 3.0, 1e-3, 1.0, 640 / STEP_S, elapsed, total)


def _run(progress: TrainingProgress, first: int, last: int, total: int, clock: float) -> tuple[float, list[float]]:
    """Steps ``first..last`` at about STEP_S each, an evaluation every 20 and a sample and a save at every 50th;
    the ETA after each step."""
    etas: list[float] = []
    for step in range(first, last + 1):
        clock += STEP_S * (1.0 + 0.2 * ((step * 7919) % 11 - 5) / 5)  # ±20% jitter, the same on every run
        progress.apply(_step(step, clock, total))
        etas.append(progress.eta if progress.eta is not None else float("nan"))
        pauses: list[Any] = []
        if step % 20 == 0:
            clock += EVAL_S
            pauses.append(EvalEvent(step, 1, step * 64, 3.0, 3.1))
        if step % 50 == 0:
            clock += 3.0
            pauses += [SampleEvent(step, 1, "Every", "Every effort"), CheckpointEvent(step, "/tmp/run/ckpt.pt")]
        for event in pauses:
            progress.apply(event)
    return clock, etas


def test_the_eta_leaves_out_evaluations_and_stays_steady():
    progress = TrainingProgress()
    progress.apply(_start(0, 400))
    _clock, etas = _run(progress, 1, 200, 400, clock=0.0)
    # 200 steps left at 0.1 s: 20 s. Counting the evaluations as training says about 80 s.
    assert progress.eta == pytest.approx(200 * STEP_S, rel=0.15)
    settled = etas[30:]
    for before, after in zip(settled, settled[1:]):
        assert after <= before * 1.15, f"the ETA jumped from {before:.1f}s to {after:.1f}s"


def test_the_eta_right_after_a_resume_is_this_process_pace_not_the_runs_past():
    progress = TrainingProgress()
    progress.apply(_start(0, 400))
    clock, _ = _run(progress, 1, 100, 400, clock=0.0)
    progress.reset_for_start()  # a new process resumes the run; its elapsed counts every earlier process
    progress.apply(_start(100, 400))
    clock += 2.0  # start-up: loading the checkpoint, the first step's warm-up
    progress.apply(_step(101, clock, 400))
    assert progress.eta is None or progress.eta < 300 * STEP_S * 3
    _clock, etas = _run(progress, 102, 110, 400, clock)
    assert progress.eta == pytest.approx(290 * STEP_S, rel=0.25)
    assert max(etas) < 300 * STEP_S * 3  # never hours
