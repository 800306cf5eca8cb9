"""Periodic checkpoints bounded in time by default: a kill -9 loses minutes of training, not the run."""

from __future__ import annotations

from dataclasses import replace

from gpt_tui.cli import build_parser
from gpt_tui.cli.detach import _train_argv
from gpt_tui.cli.train import _train_overrides
from gpt_tui.engine.checkpoint_schedule import CheckpointSchedule
from gpt_tui.engine.events import CheckpointEvent
from gpt_tui.engine.trainer import Trainer, TrainConfig
from gpt_tui.tui.attach import background_train_args
from gpt_tui.tui.config import Settings, train_config_kwargs


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_schedule_saves_by_steps_and_after_the_time_bound_since_the_last_save():
    clock = FakeClock()
    by_time = CheckpointSchedule(every_steps=0, every_minutes=10, clock=clock)
    clock.now += 599
    assert not by_time.due(7)
    clock.now += 1
    assert by_time.due(8)
    by_time.restart()  # a save happened
    clock.now += 300
    assert not by_time.due(9)

    by_steps = CheckpointSchedule(every_steps=5, every_minutes=0, clock=clock)
    clock.now += 10**6
    assert [s for s in range(1, 16) if by_steps.due(s)] == [5, 10, 15]


def _run(corpus_and_init, tmp_path, **changes) -> list[int]:
    corpus, init = corpus_and_init
    config = TrainConfig(
        data=str(corpus), context_length=16, batch_size=2, max_steps=6, eval_freq=100, eval_iter=1,
        sample_tokens=0, device="cpu", precision="fp32", run_dir=str(tmp_path / "run"), **changes,
    )
    seen: list = []
    Trainer(config, seen.append, init_from=str(init)).run()
    return [e.step for e in seen if isinstance(e, CheckpointEvent)]


def test_a_time_bound_alone_writes_periodic_checkpoints(corpus_and_init, tmp_path):
    # 60 microseconds: shorter than any step, so every step is past the bound.
    assert _run(corpus_and_init, tmp_path / "timed", checkpoint_every=0, checkpoint_minutes=1e-6) == [1, 2, 3, 4, 5, 6]
    assert _run(corpus_and_init, tmp_path / "neither", checkpoint_every=0, checkpoint_minutes=0) == [6]  # the final one only


def test_the_time_bound_is_on_by_default_in_the_cli_the_app_and_detached_runs():
    assert TrainConfig().checkpoint_minutes > 0
    training = Settings().training
    assert training.checkpoint_minutes == TrainConfig().checkpoint_minutes
    assert TrainConfig(**train_config_kwargs(training)).checkpoint_minutes == training.checkpoint_minutes

    # The app's background run: its settings become `gpt-tui train` flags, which the command reads back.
    argv = background_train_args(replace(training, checkpoint_minutes=2.5))
    assert "--checkpoint-minutes=2.5" in argv
    args = build_parser().parse_args(["train", *argv])
    assert TrainConfig(**_train_overrides(args)).checkpoint_minutes == 2.5

    # `gpt-tui train --detach` passes the flag on to the background process.
    args = build_parser().parse_args(["train", "--detach", "--checkpoint-minutes", "3"])
    assert "--checkpoint-minutes=3.0" in _train_argv(args)
