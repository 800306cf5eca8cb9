"""Detached runs: ``gpt-tui train --detach`` returns, the run goes on in its own session and finishes.

Also: asking a live run (in this process or another) to stop, save, pause and
resume through its run directory, and one live trainer per run directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gpt_tui.cli import main
from gpt_tui.engine import runlock
from gpt_tui.engine.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from gpt_tui.engine.detach import detached_pid
from gpt_tui.engine.process_identity import start_time
from gpt_tui.engine.events import CheckpointEvent, EvalEvent, StepEvent
from gpt_tui.engine.runs import RunFollower, read_metrics, read_run, read_status, request_control
from gpt_tui.engine.trainer import Trainer, TrainConfig
from gpt_tui.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
STEPS = 150  # enough that the run is still going when the launcher has returned


def _flags(corpus: Path, init: Path, max_steps: int) -> list[str]:
    return [
        "--init-from", str(init), "--data", str(corpus), "--context-length", "16", "--batch-size", "2",
        "--max-steps", str(max_steps), "--eval-freq", "5", "--eval-iter", "1", "--sample-tokens", "0",
        "--device", "cpu", "--precision", "fp32",
    ]


def _detach(args: list[str]) -> subprocess.Popen:
    """Run ``gpt-tui train --detach ...`` to its end; the Popen has pid, returncode, out and err."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpt_tui", "train", "--detach", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, stdin=subprocess.DEVNULL,
    )
    proc.out, proc.err = proc.communicate(timeout=180)  # type: ignore[attr-defined]
    return proc


def _wait(predicate, timeout: float = 120.0, poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(poll)


def test_detached_run_outlives_its_launcher_and_finishes(corpus_and_init, tmp_path, capsys):
    corpus, init = corpus_and_init
    runs_root = tmp_path / "runs"
    run_dir = runs_root / "bg"
    launched = _detach([*_flags(corpus, init, STEPS), "--run-dir", str(run_dir)])
    assert launched.returncode == 0, launched.err
    assert "Training in the background" in launched.out and f"gpt-tui attach {run_dir}" in launched.out

    pid = detached_pid(run_dir)
    assert pid and pid != launched.pid  # the trainer, not the launcher, which has exited
    assert read_status(run_dir)["pid"] == pid
    assert read_status(run_dir)["pid_start"] == start_time(pid)  # what tells it from a later process with its pid
    assert read_run(run_dir).status == "running"  # the launcher returns once the run trains
    # its own session: a hang-up of this terminal's session never reaches it; no terminal input
    assert os.getsid(pid) == pid != os.getsid(0)
    assert os.readlink(f"/proc/{pid}/fd/0") == os.devnull
    _wait(lambda: read_run(run_dir).status not in ("running", "starting"))

    info = read_run(run_dir)
    assert (info.status, info.step, info.total_steps) == ("finished", STEPS, STEPS)
    events, _ = read_metrics(run_dir)
    best = min(e.val_loss for e in events if isinstance(e, EvalEvent))
    assert info.best_val_loss == best
    log = (run_dir / "train.log").read_text(encoding="utf-8")
    # the evaluation after the last update, labelled as the book's global_step (updates less one)
    assert f"(Step {STEPS - 1:06d}): Train loss" in log and f"Finished at step {STEPS}" in log
    assert load_checkpoint(latest_checkpoint(run_dir)).train_state["step"] == STEPS

    capsys.readouterr()
    assert main(["runs", "--dir", str(runs_root)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("bg "))
    assert row.split()[:4] == ["bg", "finished", f"{STEPS}/{STEPS}", f"{best:.3f}"]


def test_detached_run_saves_on_request_then_stops(corpus_and_init, tmp_path, capsys):
    corpus, init = corpus_and_init
    run_dir = tmp_path / "long"
    launched = _detach([*_flags(corpus, init, 100_000), "--run-dir", str(run_dir), "--checkpoint-every", "0"])
    assert launched.returncode == 0, launched.err
    try:
        assert read_run(run_dir).status == "running"
        # A second trainer on a live run's directory is refused, and the live run's files are untouched.
        status_before = read_status(run_dir)
        with pytest.raises(UserError, match="in use by a live training run"):
            Trainer(TrainConfig(**_config(corpus, run_dir)), init_from=str(init)).run()
        assert read_status(run_dir)["pid"] == status_before["pid"]
        assert read_run(run_dir).status == "running"

        capsys.readouterr()
        assert main(["checkpoint", str(run_dir)]) == 0
        assert "Saved " in capsys.readouterr().out
        assert list_checkpoints(run_dir)  # no periodic checkpoints: this one was asked for

        assert main(["stop", str(run_dir)]) == 0
        out = capsys.readouterr().out
        assert "stopped at step" in out and f"Resume with: gpt-tui train --resume {run_dir}" in out
    finally:
        pid = detached_pid(run_dir)
        if pid and runlock.holder(run_dir):
            os.kill(pid, 9)
    info = read_run(run_dir)
    assert info.status == "stopped" and 0 < info.step < 100_000
    assert "gpt-tui stop" in read_status(run_dir).get("reason", "")  # why it stopped, for `runs` and the app
    assert load_checkpoint(latest_checkpoint(run_dir)).train_state["step"] == info.step
    assert main(["stop", str(run_dir)]) == 2
    assert "is not running (its status is stopped)" in capsys.readouterr().err


def test_detach_refuses_a_run_that_is_already_training(corpus_and_init, tmp_path):
    corpus, init = corpus_and_init
    run_dir = tmp_path / "busy"
    run_dir.mkdir()
    with runlock.acquire(run_dir):
        launched = _detach([*_flags(corpus, init, 5), "--run-dir", str(run_dir)])
    assert launched.returncode == 2
    assert "already training" in launched.err and "Traceback" not in launched.err


def test_detached_run_that_fails_at_once_reports_why(tmp_path):
    launched = _detach(["--data", str(tmp_path / "missing.txt"), "--run-dir", str(tmp_path / "broken")])
    assert launched.returncode == 2
    assert "Corpus file not found" in launched.err and "Traceback" not in launched.err
    assert read_run(tmp_path / "broken").status == "failed"


def _config(corpus: Path, run_dir: Path, **changes) -> dict:
    base = dict(
        data=str(corpus), context_length=16, batch_size=2, max_steps=100_000, eval_freq=50, eval_iter=1,
        sample_tokens=0, device="cpu", precision="fp32", run_dir=str(run_dir),
    )
    base.update(changes)
    return base


def test_requests_left_in_the_run_directory_reach_a_live_trainer(corpus_and_init, tmp_path):
    corpus, init = corpus_and_init
    run_dir = tmp_path / "inproc"
    seen: list = []
    trainer = Trainer(TrainConfig(**_config(corpus, run_dir)), seen.append, init_from=str(init))
    thread = threading.Thread(target=trainer.run)
    thread.start()
    try:
        _wait(lambda: any(isinstance(e, StepEvent) for e in seen))
        assert runlock.holder(run_dir) == os.getpid()
        request_control(run_dir, "pause")
        _wait(lambda: trainer.paused, timeout=10)
        request_control(run_dir, "resume")
        _wait(lambda: not trainer.paused, timeout=10)
        assert not any(isinstance(e, CheckpointEvent) for e in seen)  # none without a request (no periodic ones)
        request_control(run_dir, "checkpoint")
        _wait(lambda: any(isinstance(e, CheckpointEvent) for e in seen), timeout=30)
        request_control(run_dir, "stop")
        thread.join(timeout=60)
        assert not thread.is_alive()
    finally:
        trainer.request_stop()
        thread.join(timeout=60)
    assert read_run(run_dir).status == "stopped"
    assert runlock.holder(run_dir) is None  # released when the run ended
    assert not list((run_dir / "control").iterdir())  # every request was taken


def test_follower_reads_new_events_and_notices_a_rewritten_log(tmp_path):
    run_dir = tmp_path / "followed"
    run_dir.mkdir()
    metrics = run_dir / "metrics.jsonl"
    line = '{"type": "step", "step": %d, "epoch": 1, "tokens_seen": 0, "loss": 5.0, "lr": 0.001, "grad_norm": 1.0, "tokens_per_sec": 1.0, "elapsed": 1.0, "total_steps": 9}\n'
    follower = RunFollower(run_dir)
    assert follower.poll().events == []
    metrics.write_text(line % 1 + line % 2)
    update = follower.poll()
    assert [e.step for e in update.events] == [1, 2] and not update.reset
    with open(metrics, "a") as fh:
        fh.write((line % 3)[:40])  # half a line: not reported until it is whole
    assert follower.poll().events == []
    with open(metrics, "a") as fh:
        fh.write((line % 3)[40:])
    assert [e.step for e in follower.poll().events] == [3]
    tmp = run_dir / "new.jsonl"
    tmp.write_text(line % 1)
    os.replace(tmp, metrics)  # what a resume does when it drops records past its checkpoint
    update = follower.poll()
    assert update.reset and [e.step for e in update.events] == [1]
