"""The app keeps your run: F6 then F5 continues it, a relaunch offers it, F3 weights ask what to train, one set of defaults."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest
from textual.screen import ModalScreen

from pilot import new_app, press_while_busy, wait_until
from gpt_tui import paths
from gpt_tui.tui.app import GptTuiApp
from gpt_tui.tui.config import TrainingSettings, load_settings, save_settings, train_config_kwargs
from gpt_tui.tui.dialogs import ConfirmDialog
from gpt_tui.tui.settings import SettingsScreen


def is_question(app: GptTuiApp) -> bool:
    """A dialog with more than a yes and a no: continue that run, a new run from these weights, or cancel."""
    return isinstance(app.screen, ModalScreen) and len(app.screen.query("Button")) == 3


def step_records(run_dir: str | Path) -> list[int]:
    lines = (Path(run_dir) / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [record["step"] for record in map(json.loads, lines) if record.get("type") == "step"]


def notes_text(app: GptTuiApp) -> str:
    return " ".join(str(note.render()) for note in app.repl.query("Note"))


async def train_then_stop(pilot: Any, app: GptTuiApp, key: str = "f5", at_least: int = 3) -> tuple[str, int]:
    """Start (or continue) with ``key``, let a few steps run, stop with F6 and wait for the save."""
    before = app.progress.step
    await press_while_busy(pilot, key)
    await wait_until(pilot, lambda: app.progress.state == "running" and app.progress.step >= before + at_least, what="steps")
    await press_while_busy(pilot, "f6")
    await wait_until(pilot, lambda: app.progress.state == "stopped" and app._training_worker.is_finished, what="the stop")
    return app.progress.run_dir, app.progress.step


@pytest.mark.anyio
async def test_stop_then_start_continues_the_same_run(fast_tui_settings):
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await press_while_busy(pilot, "f5")
        await wait_until(pilot, lambda: app.progress.step >= 3, what="first steps")
        await press_while_busy(pilot, "f6")
        await wait_until(pilot, lambda: app.progress.state == "stopped", what="the stop")
        run_dir, stopped_at = app.progress.run_dir, app.progress.step
        curve = list(app.history.train.xs)
        assert curve[-1] == stopped_at
        await press_while_busy(pilot, "f5")  # at once: the continued run waits for the stopped one to let go
        await wait_until(pilot, lambda: app.progress.step >= stopped_at + 3, what="steps after the stop")
        assert app.progress.run_dir == run_dir and app.progress.start_step == stopped_at
        assert app.history.train.xs[: len(curve)] == curve  # the chart kept the run's history
        await press_while_busy(pilot, "f6")
        await wait_until(pilot, lambda: app.progress.state == "stopped" and app._training_worker.is_finished, what="the second stop")
    steps = step_records(run_dir)
    assert steps == list(range(1, steps[-1] + 1))  # one run, continued in place, no step twice
    assert [p.name for p in paths.runs_dir().iterdir()] == [Path(run_dir).name]


@pytest.mark.slow
@pytest.mark.anyio
async def test_relaunch_offers_the_last_run_and_f5_continues_it(fast_tui_settings):
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        run_dir, step = await train_then_stop(pilot, app)
        curve = list(app.history.train.xs)

    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.model_source.kind == "loaded", what="the last run's checkpoint in the REPL")
        assert app.progress.run_dir == run_dir and app.progress.state == "stopped" and app.progress.step == step
        assert app.history.train.xs == curve and app.history.val.xs[0] == 0  # its chart, from metrics.jsonl
        assert f"step-{step:08d}" in app.model_source.describe()
        notes = notes_text(app)
        assert f"{Path(run_dir).name}, stopped at step {step}" in notes and "Train: new run" in notes
        again, stopped_at = await train_then_stop(pilot, app)
        assert again == run_dir and app.progress.start_step == step and stopped_at > step
    steps = step_records(run_dir)
    assert steps == list(range(1, steps[-1] + 1))
    assert len(list(paths.runs_dir().iterdir())) == 1


@pytest.mark.anyio
@pytest.mark.slow
async def test_a_finished_run_asks_before_a_new_one_and_new_run_has_its_own_key(fast_tui_settings):
    save_settings(replace(fast_tui_settings, training=replace(fast_tui_settings.training, max_steps=4)))

    async def finish(pilot: Any, app: GptTuiApp, key: str, step: int) -> None:
        await press_while_busy(pilot, key)
        await wait_until(pilot, lambda: app.progress.state == "finished" and app.progress.step == step
                         and app._training_worker.is_finished, what=f"the run to finish at step {step}")

    async def asked(pilot: Any, app: GptTuiApp, answer: str) -> str:
        await press_while_busy(pilot, "f5")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the finished run's question")
        question = app.screen.question
        await press_while_busy(pilot, answer)
        await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmDialog))
        return question

    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        assert any("[train.new]" in what for _, what in app.key_help())  # F1 lists it
        await finish(pilot, app, "f5", 4)
        first, worker = app.progress.run_dir, app._training_worker
        assert "finished all its 4 steps" in await asked(pilot, app, "n")
        assert app.progress.state == "finished" and app.progress.run_dir == first and app._training_worker is worker
        app.settings = app.settings.with_value("training", "max_steps", 7)  # Max steps raised: the run goes on
        await finish(pilot, app, "f5", 7)
        assert app.progress.run_dir == first and app.progress.start_step == 4
        assert "finished all its 7 steps" in await asked(pilot, app, "y")
        await wait_until(pilot, lambda: app.progress.state == "finished" and app.progress.run_dir != first
                         and app._training_worker.is_finished, what="the new run")
        second = app.progress.run_dir
        assert app.progress.start_step == 0
        await finish(pilot, app, "ctrl+n", 7)  # a new run without a question
        assert app.progress.run_dir not in (first, second)
        third = app.progress.run_dir
    assert step_records(first) == list(range(1, 8))
    assert step_records(second) == step_records(third) == list(range(1, 8))


def _stopped_run(step: int = 10) -> Path:
    """A run of the app's test settings in the user's runs folder, stopped at ``step``."""
    from gpt_tui.engine.events import StepEvent
    from gpt_tui.engine.trainer import Trainer, TrainConfig

    settings, _ = load_settings()
    run_dir = paths.runs_dir() / "20260101-000000-tiny"
    config = TrainConfig(**{**train_config_kwargs(settings.training), "lr": 2e-3, "run_dir": str(run_dir)})  # learns fast
    trainer: Any = None

    def stop(event: object) -> None:
        if isinstance(event, StepEvent) and event.step == step:
            trainer.request_stop()

    trainer = Trainer(config, stop)
    trainer.run()
    return run_dir


async def _load_in_f3(pilot: Any, app: GptTuiApp, path: Path) -> None:
    await pilot.press("f3")
    await wait_until(pilot, lambda: isinstance(app.screen, SettingsScreen), what="the checkpoints panel")
    panel = app.screen.checkpoints
    await wait_until(pilot, lambda: any(entry.path == path for entry in panel.entries), what="the checkpoint listed")
    panel.reload(select=str(path))
    assert panel.selected is not None and panel.selected.path == path
    await pilot.click("#ckpt-load")
    await wait_until(pilot, lambda: app.model_source.kind == "loaded" and app.model_source.loaded.path == str(path), what="the load")
    await pilot.press("escape")
    await wait_until(pilot, lambda: not isinstance(app.screen, SettingsScreen))


def _first_val_loss(run_dir: str | Path) -> float:
    lines = (Path(run_dir) / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return next(r["val_loss"] for r in map(json.loads, lines) if r.get("type") == "eval")


@pytest.mark.anyio
@pytest.mark.slow
async def test_f3_load_then_f5_asks_and_each_answer_does_what_it_says(fast_tui_settings):
    from gpt_tui.engine.checkpoint import save_checkpoint
    from gpt_tui.engine.weights import load_model

    steps = 11  # an evaluation point (after updates 1, 6, 11 at eval_freq 5), so the run measured these very weights
    source = _stopped_run(steps)
    checkpoint = source / "checkpoints" / f"step-{steps:08d}.safetensors"
    lines = (source / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    val_at_end = next(r["val_loss"] for r in map(json.loads, lines) if r.get("type") == "eval" and r["step"] == steps)
    assert abs(_first_val_loss(source) - val_at_end) > 0.3  # eleven steps moved the loss: weights can be told apart
    weights_only = paths.models_dir() / "plain.safetensors"
    save_checkpoint(weights_only, load_model(str(checkpoint), "cpu").model)  # the same weights, without a run

    app = new_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await _load_in_f3(pilot, app, checkpoint)  # the newest checkpoint of the run the app offers, picked by hand
        await press_while_busy(pilot, "f5")
        await wait_until(pilot, lambda: is_question(app), what="the question")
        await press_while_busy(pilot, "escape")  # cancel: nothing starts
        await wait_until(pilot, lambda: not is_question(app))
        assert not app.progress.active and app.trainer is None

        await press_while_busy(pilot, "f5")
        await wait_until(pilot, lambda: is_question(app), what="the question again")
        await press_while_busy(pilot, "c")  # continue that run
        run_dir, _ = await train_then_stop_after_start(pilot, app)
        assert run_dir == str(source) and app.progress.start_step == steps

        await _load_in_f3(pilot, app, checkpoint)
        await press_while_busy(pilot, "f5")
        await wait_until(pilot, lambda: is_question(app), what="the question a third time")
        await press_while_busy(pilot, "n")  # a new run from these weights
        tuned, _ = await train_then_stop_after_start(pilot, app)
        assert tuned != str(source) and app.progress.start_step == 0
        # It starts from the checkpoint's weights: its first evaluation equals the source's at its last step.
        assert abs(_first_val_loss(tuned) - val_at_end) < 1e-3

        await _load_in_f3(pilot, app, weights_only)
        await press_while_busy(pilot, "f5")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the weights-only question")
        assert "weights only" in app.screen.question
        await press_while_busy(pilot, "y")
        plain, _ = await train_then_stop_after_start(pilot, app)
        assert plain not in (str(source), tuned) and app.progress.start_step == 0
        assert abs(_first_val_loss(plain) - val_at_end) < 1e-3
    steps = step_records(source)
    assert steps == list(range(1, steps[-1] + 1))


async def train_then_stop_after_start(pilot: Any, app: GptTuiApp) -> tuple[str, int]:
    await wait_until(pilot, lambda: app.progress.state == "running" and app.progress.step >= app.progress.start_step + 2, what="steps")
    await press_while_busy(pilot, "f6")
    await wait_until(pilot, lambda: app.progress.state == "stopped" and app._training_worker.is_finished, what="the stop")
    return app.progress.run_dir, app.progress.step


def test_app_and_command_line_share_one_set_of_defaults():
    from gpt_tui.cli import build_parser
    from gpt_tui.cli.train import _train_overrides
    from gpt_tui.engine.trainer import TrainConfig

    engine = TrainConfig()
    app = TrainingSettings()
    shared = [f.name for f in fields(TrainingSettings) if f.name in {g.name for g in fields(TrainConfig)}]
    assert len(shared) >= 20
    for name in shared:
        expected = getattr(engine, name)
        if name == "data":
            expected = expected or ""  # the app spells "the built-in corpus" as an empty field
        assert getattr(app, name) == expected, name
    # The same run: `gpt-tui train` with no flags and the app's Start build equal configs.
    from_cli = TrainConfig(**_train_overrides(build_parser().parse_args(["train"])))
    assert TrainConfig(**train_config_kwargs(app)) == from_cli
    assert (from_cli.lr, from_cli.weight_decay, from_cli.min_lr) == (4e-4, 0.1, None)  # the book's AdamW, constant rate
