"""Pilot tests of the app attached to a run directory: its chart, live updates, controls, and an overlaid run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pilot import HOLD_LOCK, new_app, screen_text, wait_until
from gpt_tui.engine.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from gpt_tui.engine.events import EvalEvent, StepEvent, event_to_record
from gpt_tui.engine.model import GPTConfig, GPTModel
from gpt_tui.engine.runs import read_status, write_status
from gpt_tui.engine.trainer import Trainer, TrainConfig
from gpt_tui.errors import UserError
from gpt_tui.tui.attach import CombinedHistory, RunAttachment, attach_to, compare_with
from gpt_tui.tui.launch import attached_app, install_hangup_handler, run_app
from textgen import sample_text

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two short finished runs of a small model (different learning rates)."""
    root = tmp_path_factory.mktemp("attach")
    corpus = root / "corpus.txt"
    corpus.write_text(sample_text(1500, seed=4), encoding="utf-8")
    torch.manual_seed(0)
    init = root / "init.safetensors"
    save_checkpoint(init, GPTModel(GPTConfig(context_length=16, emb_dim=16, n_layers=1, n_heads=2, drop_rate=0.0, tie_weights=True)))
    runs = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains faster on one thread, above all on a busy machine
    try:
        for name, lr in (("first", 1e-3), ("second", 5e-3)):
            config = TrainConfig(
                data=str(corpus), context_length=16, batch_size=2, max_steps=6, eval_freq=2, eval_iter=1, lr=lr,
                sample_tokens=0, device="cpu", precision="fp32", run_dir=str(root / name),
            )
            Trainer(config, init_from=str(init)).run()
            runs.append(root / name)
    finally:
        torch.set_num_threads(threads)
    return runs[0], runs[1]


def _step_line(step: int, loss: float) -> str:
    event = StepEvent(step=step, epoch=1, tokens_seen=32 * step, loss=loss, lr=1e-3, grad_norm=1.0,
                      tokens_per_sec=100.0, elapsed=float(step), total_steps=100)
    return json.dumps(event_to_record(event)) + "\n"


@pytest.mark.anyio
async def test_attach_shows_a_finished_runs_chart_and_talks_to_its_checkpoint(finished_runs):
    first, _ = finished_runs

    app = new_app()
    async with app.run_test(size=(110, 34)) as pilot:
        drawn = app.chart.redraws
        attach_to(app, first)
        await wait_until(pilot, lambda: app.progress.state == "finished", what="the run's state")
        assert app.progress.step == app.progress.total_steps == 6
        assert app.history.train.xs[-1] == 6 and app.history.val.xs == [0, 1, 3, 5, 6]  # the book's schedule, and the end
        await wait_until(pilot, lambda: app.chart.redraws > drawn, what="a chart redraw")
        await wait_until(pilot, lambda: app.model_source.kind == "loaded", what="the REPL on the run's checkpoint")
        assert "step-00000006" in app.model_source.describe()
        assert app.trainer is None and app.resume_from is None  # finished: nothing to control or resume
        text = screen_text(app)
        assert "finished" in text and "6/6" in text


@pytest.mark.anyio
async def test_attach_follows_a_live_run_and_relays_stop_checkpoint_and_pause(tmp_path):
    run_dir = tmp_path / "live"
    run_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    assert holder.stdout.readline().strip() == "locked"  # a training process, as far as the lock can tell
    write_status(run_dir, "running", pid=holder.pid, step=2, total_steps=100)
    (run_dir / "metrics.jsonl").write_text(_step_line(1, 9.0) + _step_line(2, 8.5))

    try:
        app = new_app()
        async with app.run_test(size=(110, 34)) as pilot:
            attachment = attach_to(app, run_dir)
            await wait_until(pilot, lambda: app.progress.state == "running", what="a live run")
            assert app.history.train.ys == [9.0, 8.5]
            with open(run_dir / "metrics.jsonl", "a") as fh:  # the other process trains on
                fh.write(_step_line(3, 8.0))
                eval_event = EvalEvent(step=3, epoch=1, tokens_seen=96, train_loss=8.0, val_loss=8.2)
                fh.write(json.dumps(event_to_record(eval_event)) + "\n")
            await wait_until(pilot, lambda: app.history.train.xs == [1, 2, 3], what="the new step on the chart")
            assert app.progress.best_val_loss == pytest.approx(8.2)

            control = run_dir / "control"
            await pilot.press("f8")  # checkpoint now
            await wait_until(pilot, lambda: (control / "checkpoint").exists(), what="a checkpoint request")
            await pilot.press("f5")  # pause
            await wait_until(pilot, lambda: (control / "pause").exists(), what="a pause request")
            assert app.progress.state == "paused"
            await pilot.press("f5")  # resume
            await wait_until(pilot, lambda: (control / "resume").exists(), what="a resume request")
            await pilot.press("f6")  # stop: the run saves and ends
            await wait_until(pilot, lambda: (control / "stop").exists(), what="a stop request")
            assert app.progress.state == "stopping"

            # The process stops as asked: its lock goes, its status says so.
            write_status(run_dir, "stopped", pid=holder.pid, step=3, total_steps=100)
            holder.stdin.close()
            holder.wait(timeout=30)
            await wait_until(pilot, lambda: app.progress.state == "stopped", what="the run to end")
            assert app.trainer is None and not attachment.live
            for request in control.iterdir():
                request.unlink()
            await pilot.press("ctrl+q")
        assert not any(control.iterdir()), "quitting the app sends the run nothing"
    finally:
        if holder.poll() is None:
            holder.kill()


@pytest.mark.anyio
async def test_quitting_while_attached_leaves_the_run_training(tmp_path):
    run_dir = tmp_path / "background"
    run_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        write_status(run_dir, "running", pid=holder.pid, step=1, total_steps=10)
        (run_dir / "metrics.jsonl").write_text(_step_line(1, 9.0))

        app = new_app()
        async with app.run_test(size=(100, 30)) as pilot:
            attach_to(app, run_dir)
            await wait_until(pilot, lambda: app.progress.state == "running", what="a live run")
            await pilot.press("ctrl+q")  # no question: the run is not this app's to stop
        assert not (run_dir / "control").exists()
        assert holder.poll() is None
    finally:
        holder.kill()


@pytest.mark.anyio
async def test_a_stale_run_says_so_and_offers_to_resume(finished_runs, tmp_path):
    import shutil

    first, _ = finished_runs
    stale = tmp_path / "stale"
    shutil.copytree(first, stale)
    write_status(stale, "running", pid=2**22 + 12345, step=6)  # a process that is long gone

    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        attach_to(app, stale)
        await wait_until(pilot, lambda: app.resume_from == str(stale), what="the offer to resume")
        assert app.progress.state == "stopped"
        assert any("stale" in n.message for n in app._notifications)


@pytest.mark.anyio
async def test_two_runs_overlaid_on_one_chart(finished_runs):
    first, second = finished_runs

    app = new_app()
    async with app.run_test(size=(110, 34)) as pilot:
        attach_to(app, first)
        compare_with(app, second)
        await wait_until(pilot, lambda: isinstance(app.chart.history, CombinedHistory) and app.chart.history.others[0][1].points > 0,
                         what="the second run's curves")
        await wait_until(pilot, lambda: "second train" in screen_text(app), what="the legend to name the compared run")
        labels = [s.label for s in app.chart.history.series("loss", 200)]
        assert labels == ["train", "val", "second train", "second val"]
        mine, theirs = app.chart.history.series("loss", 200)[0], app.chart.history.series("loss", 200)[2]
        assert mine.xs == theirs.xs and mine.ys != theirs.ys  # same steps, different learning rates


@pytest.mark.anyio
async def test_the_attach_command_opens_the_app_on_a_run_with_another_overlaid(finished_runs):
    first, second = finished_runs

    app = attached_app(first, second, stable=True, warm_up=False)
    async with app.run_test(size=(110, 34)) as pilot:
        await wait_until(pilot, lambda: app.progress.state == "finished" and app.query(RunAttachment), what="the run")
        await wait_until(pilot, lambda: "second val" in screen_text(app), what="the compared run's curves")
        assert app.progress.run_dir == str(first)


def test_attach_to_a_missing_run_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="does not exist; `gpt-tui runs` lists the runs"):
        run_app(attach=str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="nowhere-else does not exist"):
        run_app(attach=str(tmp_path), compare=str(tmp_path / "nowhere-else"))
    assert not list(tmp_path.iterdir())


@pytest.mark.anyio
@pytest.mark.slow
async def test_train_in_the_background_from_the_app(fast_tui_settings, monkeypatch):
    """The palette's "Train: in the background": a detached process, shown live, finishes on its own."""
    from dataclasses import replace

    from gpt_tui.tui.config import save_settings

    settings = replace(fast_tui_settings, training=replace(fast_tui_settings.training, max_steps=12, eval_freq=4))
    save_settings(settings)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the background process: one thread is plenty for this model

    app = new_app()
    async with app.run_test(size=(110, 34)) as pilot:
        app.action_train_background()
        await wait_until(pilot, lambda: bool(app.query(RunAttachment)), what="the background run")
        attachment = app.query_one(RunAttachment)
        await wait_until(pilot, lambda: app.progress.state == "finished", timeout=180, what="the run to finish")
        assert app.progress.step == 12 and app.history.train.xs[-1] == 12
        assert (attachment.run_dir / "train.log").exists()
        assert attachment.run_dir.parent.name == "runs"
        await pilot.press("ctrl+q")


@pytest.mark.anyio
async def test_hangup_stops_and_saves_a_run_training_in_the_app(fast_tui_settings):
    """SIGTERM (and SIGHUP, when an SSH connection drops) saves the app's run before the app goes."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGHUP, signal.SIGTERM)}

    try:
        app = new_app()
        async with app.run_test(size=(100, 30)) as pilot:
            handler = install_hangup_handler(app)
            assert signal.getsignal(signal.SIGTERM) is handler and signal.getsignal(signal.SIGHUP) is handler
            await pilot.press("f5")
            await wait_until(pilot, lambda: app.progress.step >= 2, what="training")
            run_dir = Path(app.progress.run_dir)
            handler(signal.SIGTERM, None)  # what the signal runs, on this (the app's) thread
            assert read_status(run_dir)["state"] == "stopped"
            assert read_status(run_dir)["reason"] == "terminated (SIGTERM)"  # why, for `gpt-tui runs`
            saved = load_checkpoint(latest_checkpoint(run_dir)).train_state["step"]
            assert 2 <= saved < 400
            await pilot.pause()
        assert app.return_code == 128 + signal.SIGTERM
    finally:
        for sig, previous_handler in previous.items():
            signal.signal(sig, previous_handler)


@pytest.mark.anyio
async def test_app_opened_on_a_stopped_run_shows_it_talks_to_it_and_start_continues_it(tmp_path, fast_tui_settings):
    """``gpt-tui app --run-dir``: the run's curves, its newest checkpoint in the REPL, F5 resumes it to the end."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(sample_text(1500, seed=5), encoding="utf-8")
    run_dir = tmp_path / "run"
    config = TrainConfig(
        data=str(corpus), model="tiny", context_length=16, batch_size=2, max_steps=8, eval_freq=2, eval_iter=1,
        warmup_steps=0, sample_tokens=0, device="cpu", precision="fp32", run_dir=str(run_dir),
    )
    trainer: Trainer | None = None

    def stop_at_four(event: object) -> None:
        if isinstance(event, StepEvent) and event.step == 4:
            trainer.request_stop()

    trainer = Trainer(config, stop_at_four)
    trainer.run()
    assert read_status(run_dir)["state"] == "stopped"
    assert latest_checkpoint(run_dir).stem.endswith("4")

    app = new_app(run_dir=str(run_dir))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.model_source.kind == "loaded" and not app.model_source.loading,
                         what="the run's checkpoint to load")
        assert app.progress.step == 4 and app.progress.state == "stopped"
        assert app.history.train.xs[-1] == 4 and app.history.val.xs == [0, 1, 3]  # stopped: no final evaluation
        assert "step-00000004" in app.model_source.describe()
        app.repl.input.value = "Every effort moves"
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.repl.last_reply is not None, what="a reply from the run's weights")
        assert "step-00000004" in app.repl.last_reply.footer
        await pilot.press("f5")
        await wait_until(pilot, lambda: app.progress.state == "finished", what="the resumed run to finish")
        assert app.progress.step == 8 and app.progress.run_dir == str(run_dir)
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
             if json.loads(line).get("type") == "step"]
    assert steps == list(range(1, 9))  # one run, continued in place, no step twice
    assert read_status(run_dir)["state"] == "finished"
