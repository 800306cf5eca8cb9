"""Weights the app loads on a worker (a run opened with --run-dir, the relaunch offer, F3 load): a prompt
typed before they arrive is answered by them, and a load that fails never leaves a prompt waiting."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pilot import new_app, screen_text, wait_until
from test_runs_screen import PROMPT, stopped_run
from gpt_tui import paths
from gpt_tui.tui.checkpoints import CheckpointsPanel
from gpt_tui.tui.dialogs import ErrorDialog

HOLD_S = 30.0  # a held load goes on after this even if no reply asked for weights (the test then fails)


def engine_greedy(run_dir: Path, max_new_tokens: int) -> str:
    """The engine's greedy continuation of PROMPT by the run's newest checkpoint."""
    from gpt_tui.engine.checkpoint import latest_checkpoint, load_model_from_checkpoint
    from gpt_tui.engine.generation import SamplingConfig, stream_text

    model = load_model_from_checkpoint(latest_checkpoint(run_dir), "cpu").eval()
    return "".join(stream_text(model, PROMPT, SamplingConfig(temperature=0.0, max_new_tokens=max_new_tokens)))


def hold_loads_until_a_reply_asks(monkeypatch, app) -> threading.Event:
    """From now on a weight load in the app starts reading only once a reply has asked for its model."""
    from gpt_tui.tui import model_source, run_weights, weight_actions

    asked = threading.Event()
    real_acquire, real_load = app.model_source.acquire, model_source.load_model_file

    def acquire():
        asked.set()
        return real_acquire()

    def held_load(source: str, device: str):
        asked.wait(HOLD_S)
        return real_load(source, device)

    monkeypatch.setattr(app.model_source, "acquire", acquire)
    monkeypatch.setattr(model_source, "load_model_file", held_load)
    monkeypatch.setattr(weight_actions, "load_model_file", held_load)
    monkeypatch.setattr(run_weights, "load_model_file", held_load)
    return asked


async def reply_to(pilot, app, prompt: str = PROMPT):
    """Type ``prompt``, press Enter, and wait for the whole reply."""
    before = app.repl.last_reply
    app.repl.input.value = prompt
    await pilot.press("enter")
    await wait_until(pilot, lambda: app.repl.last_reply is not before and bool(app.repl.last_reply.footer), what="the reply")
    return app.repl.last_reply


@pytest.mark.anyio
async def test_a_prompt_typed_at_once_on_an_opened_run_gets_its_checkpoint(corpus_and_init, fast_tui_settings, tmp_path, monkeypatch):
    """`gpt-tui app --run-dir RUN`, a prompt before the checkpoint has loaded: the reply is the checkpoint's greedy one."""
    corpus, init = corpus_and_init
    run_dir = stopped_run(corpus, init, tmp_path / "opened")
    expected = engine_greedy(run_dir, fast_tui_settings.sampling.max_new_tokens)
    app = new_app(run_dir=str(run_dir))
    asked = hold_loads_until_a_reply_asks(monkeypatch, app)
    async with app.run_test(size=(110, 34)) as pilot:
        reply = await reply_to(pilot, app)
        assert asked.is_set()
        assert reply.text == expected
        assert "step-00000003" in reply.footer
        assert "step-00000003" in app.repl._status_text and not app.model_source.loading


@pytest.mark.anyio
async def test_a_prompt_after_the_relaunch_offer_gets_the_last_runs_checkpoint(corpus_and_init, fast_tui_settings, monkeypatch):
    """The offer says the REPL talks to the run's newest checkpoint: so does a prompt typed while it loads."""
    corpus, init = corpus_and_init
    paths.runs_dir().mkdir(parents=True)
    run_dir = stopped_run(corpus, init, paths.runs_dir() / "20260101-000000-tiny")
    expected = engine_greedy(run_dir, fast_tui_settings.sampling.max_new_tokens)
    app = new_app()
    asked = hold_loads_until_a_reply_asks(monkeypatch, app)
    async with app.run_test(size=(110, 34)) as pilot:
        await wait_until(pilot, lambda: "talks to its newest checkpoint" in screen_text(app), what="the offer")
        assert not asked.is_set()  # the checkpoint is still held back
        reply = await reply_to(pilot, app)
        assert reply.text == expected
        assert "step-00000003" in reply.footer


@pytest.mark.anyio
async def test_a_failed_load_lets_the_waiting_prompt_go_on_with_the_previous_weights(corpus_and_init, fast_tui_settings, tmp_path, monkeypatch):
    """F3 load of a corrupt file while a prompt waits: the previous weights answer, the error says why, the REPL goes on."""
    corpus, init = corpus_and_init
    run_dir = stopped_run(corpus, init, tmp_path / "good")
    expected = engine_greedy(run_dir, fast_tui_settings.sampling.max_new_tokens)
    broken = paths.models_dir() / "broken.safetensors"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header at all" * 8)
    app = new_app(run_dir=str(run_dir))
    async with app.run_test(size=(110, 34)) as pilot:
        await wait_until(pilot, lambda: app.model_source.kind == "loaded" and not app.model_source.loading,
                         what="the run's checkpoint")
        asked = hold_loads_until_a_reply_asks(monkeypatch, app)
        app.post_message(CheckpointsPanel.Requested("load", str(broken)))
        await wait_until(pilot, lambda: app.model_source.loading, timeout=10, what="the load to start")
        reply = await reply_to(pilot, app)
        assert asked.is_set()
        assert reply.text == expected and "step-00000003" in reply.footer
        await wait_until(pilot, lambda: isinstance(app.screen, ErrorDialog), what="the error")
        assert "broken.safetensors" in app.screen.message and "corrupt" in app.screen.message
        await pilot.press("escape")
        assert not app.model_source.loading and "loading" not in app.repl._status_text
        assert "step-00000003" in app.repl._status_text
        again = await reply_to(pilot, app)
        assert again.text == expected and again.footer.endswith("step-00000003")
