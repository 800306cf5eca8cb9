"""Pilot tests of the app driving the real engine with the tiny preset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from textual.command import CommandList, CommandPalette

from pilot import new_app, press_while_busy, screen_text, wait_until
from gpt_tui import paths
from gpt_tui.tui.app import GptTuiApp
from gpt_tui.tui.config import load_settings, settings_path
from gpt_tui.tui.dialogs import ConfirmDialog, ErrorDialog
from gpt_tui.tui.repl import Reply
from gpt_tui.tui.settings import FieldRow, SettingsScreen


async def type_text(pilot: Any, text: str) -> None:
    for ch in text:
        await pilot.press("space" if ch == " " else ch)


async def submit(pilot: Any, app: GptTuiApp, line: str) -> None:
    """Put a line in the REPL input and press Enter (typing each key is tested once, not everywhere)."""
    app.repl.input.value = line
    await pilot.press("enter")


@pytest.mark.anyio
@pytest.mark.slow
async def test_training_fills_the_chart_saves_on_request_and_quit_asks_then_stops_and_saves(fast_tui_settings):
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        assert "idle" in screen_text(app)
        await pilot.press("f5")
        await wait_until(pilot, lambda: app.progress.step >= 2, what="first steps")
        first = app.progress.step
        await wait_until(pilot, lambda: app.progress.step > first, what="more steps")
        await wait_until(pilot, lambda: f"step   {app.progress.step}/400" in screen_text(app), what="step on screen")
        assert app.history.points >= 3  # the step-0 evaluation plus step losses
        assert app.history.train.xs[0] == 0 and app.history.train.ys[0] > 10  # ~ln(50257) before training
        drawn = app.chart.redraws
        await wait_until(pilot, lambda: app.chart.redraws > drawn, what="a chart redraw")
        await press_while_busy(pilot, "f8")  # save now, while training
        await wait_until(pilot, lambda: bool(app.progress.checkpoint), what="checkpoint")
        assert Path(app.progress.checkpoint).is_file()
        await press_while_busy(pilot, "ctrl+q")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await press_while_busy(pilot, "n")
        await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmDialog))
        assert app.is_running and app.progress.state == "running"
        await press_while_busy(pilot, "ctrl+q")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await press_while_busy(pilot, "y")
        await wait_until(pilot, lambda: not app.is_running, timeout=60, what="exit")
    assert app.progress.state == "stopped"
    assert app._training_worker is not None and app._training_worker.is_finished
    saved = sorted(paths.runs_dir().glob("*/checkpoints/step-*.safetensors"))
    assert len(saved) == 2 and app.progress.checkpoint == str(saved[-1])


@pytest.mark.anyio
async def test_chart_redraws_are_throttled_and_bounded_by_width(monkeypatch):
    """The throttle runs on the chart's own clock, faked here: the test does not depend on how fast plotext draws."""
    from types import SimpleNamespace

    from textual.app import App
    from textual_plotext import PlotextPlot

    from gpt_tui.engine.events import EvalEvent, StepEvent
    from gpt_tui.tui import chart as chart_module
    from gpt_tui.tui.chart import CPU_BUDGET, REDRAW_INTERVAL_S, LossChart
    from gpt_tui.tui.chart_data import LossHistory

    now = [1000.0]
    render_starts: list[float] = []
    cost = 0.05  # each draw "takes" 50 ms: the budget then allows one every cost / CPU_BUDGET seconds
    spacing = max(REDRAW_INTERVAL_S, cost / CPU_BUDGET)
    draw = PlotextPlot.render

    def timed_draw(self):
        render_starts.append(now[0])
        now[0] += cost
        return draw(self)

    monkeypatch.setattr(chart_module, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    monkeypatch.setattr(PlotextPlot, "render", timed_draw)
    history = LossHistory()

    class Host(App[None]):
        def compose(self):
            yield LossChart(history)

    app = Host()
    async with app.run_test(size=(60, 20)) as pilot:
        chart = app.query_one(LossChart)
        await wait_until(pilot, lambda: bool(render_starts), what="the first draw")
        before = chart.redraws
        for step in range(1, 10_001):
            history.add(StepEvent(step, 1, step * 64, 10 - step / 2000, 1e-3, 1.0, 1000.0, step / 10, 10_000))
            if step % 100 == 0:
                history.add(EvalEvent(step, 1, step * 64, 10 - step / 2000, 10.1 - step / 2000))
        now[0] = render_starts[-1] + spacing - 0.1
        for _ in range(3):
            chart.redraw_if_changed()
        assert chart.redraws == before  # new points wait for the budget
        now[0] = render_starts[-1] + spacing + 0.1
        chart.redraw_if_changed()
        chart.redraw_if_changed()
        assert chart.redraws == before + 1  # ten thousand new points, one redraw
        series = history.series("loss", chart.size.width * 2)
        assert all(len(s.xs) <= chart.size.width * 2 for s in series)
        now[0] += 10 * spacing
        chart.redraw_if_changed()
        assert chart.redraws == before + 1  # nothing changed, nothing redrawn
        chart.mode = "perplexity"
        assert chart.redraws == before + 2  # a mode change does not wait for the budget


@pytest.mark.anyio
async def test_a_reply_streams_in_several_updates(fast_tui_settings):
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        seen: list[str] = []
        original = Reply.append

        def spy(self: Reply, piece: str) -> None:
            original(self, piece)
            seen.append(self.text)

        Reply.append = spy  # type: ignore[method-assign]
        await submit(pilot, app, "/max 120")  # spans several 50 ms flushes, within the context of 128
        try:
            await type_text(pilot, "Every effort moves")
            await pilot.press("enter")
            await wait_until(pilot, lambda: app.repl.last_reply is not None, what="the reply to finish")
        finally:
            Reply.append = original  # type: ignore[method-assign]
        reply = app.repl.last_reply
        assert reply is not None and reply.prompt == "Every effort moves"
        assert len(seen) >= 2 and len(set(seen)) >= 2  # the text grew in separate steps
        assert seen[-1] == reply.text and reply.text
        assert "120 tokens" in reply.footer and "untrained tiny" in reply.footer
        await pilot.press("ctrl+y")
        assert app.clipboard == "Every effort moves" + reply.text  # OSC 52 goes to the terminal too



@pytest.mark.anyio
async def test_out_of_memory_in_a_reply_is_a_plain_message_and_the_repl_goes_on(fast_tui_settings, monkeypatch):
    import torch

    from gpt_tui.engine.model import GPTModel

    forward = GPTModel.forward
    calls = {"n": 0}

    def forward_that_runs_out(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(GPTModel, "forward", forward_that_runs_out)

    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await submit(pilot, app, "/max 8")
        await submit(pilot, app, "Every effort moves")
        await wait_until(pilot, lambda: app.repl.last_reply is not None, what="the failed reply to end")
        reply = app.repl.last_reply
        assert "Out of memory" in reply.footer and "Max new tokens (8)" in reply.footer
        assert not isinstance(app.screen, ErrorDialog)  # a message in the REPL, not a bug report
        assert "OutOfMemoryError" not in screen_text(app)
        await submit(pilot, app, "Every effort moves")
        await wait_until(pilot, lambda: app.repl.last_reply is not reply and app.repl.current is None, what="next reply")
        assert "8 tokens" in app.repl.last_reply.footer


@pytest.mark.anyio
async def test_help_screen_lists_keys_and_commands(fast_tui_settings):
    from gpt_tui.tui.help import HelpScreen

    app = new_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("f1")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = screen_text(app)
        for expected in ("f5", "Train", "Settings", "f4", "Runs", "/temp X"):
            assert expected in text
        app.screen.query_one("VerticalScroll").scroll_end(animate=False)  # the rest of a help longer than the window
        await pilot.pause()
        text = screen_text(app)
        for expected in ("/beams N", "Esc cancels a reply"):
            assert expected in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


@pytest.mark.anyio
async def test_escape_cancels_a_streaming_reply(fast_tui_settings):
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await submit(pilot, app, "/max 5000")
        assert app.sampling.max_new_tokens == 5000
        await submit(pilot, app, "Hello")
        await wait_until(pilot, lambda: app.repl.current is not None and app.repl.current.updates >= 1, what="first piece")
        await press_while_busy(pilot, "escape")
        assert app.repl.current is None
        reply = app.repl.last_reply
        assert reply is not None and "cancelled" in reply.footer
        worker = app._reply_worker
        await wait_until(pilot, lambda: worker is not None and worker.is_finished, timeout=30, what="worker to stop")
        assert reply.updates < 5000
        # the REPL is free again
        await submit(pilot, app, "/max 3")
        await submit(pilot, app, "Hi")
        await wait_until(pilot, lambda: app.repl.last_reply is not reply and app.repl.current is None, what="next reply")
        assert "3 tokens" in app.repl.last_reply.footer


@pytest.mark.anyio
async def test_slash_commands_change_sampling_and_refuse_bad_values(fast_tui_settings):
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        for line in ("/temp 0.7", "/topk 20", "/topp 0.9", "/seed 3", "/temp -2", "/bogus"):
            await submit(pilot, app, line)
        await wait_until(pilot, lambda: "Unknown command /bogus" in screen_text(app), what="the last command's answer")
        assert (app.sampling.temperature, app.sampling.top_k, app.sampling.top_p, app.sampling.seed) == (0.7, 20, 0.9, 3)
        text = screen_text(app)
        assert "temp 0.7 · top-k 20 · top-p 0.9" in text  # the settings in force are visible
        assert "Unknown command /bogus" in text
        notes = [str(n.render()) for n in app.repl.query("Note.-error")]
        assert any("Temperature must be >= 0" in n for n in notes)


@pytest.mark.anyio
async def test_bad_settings_are_refused_in_place_and_nothing_is_lost(fast_tui_settings):
    app = new_app()
    saved_before = settings_path().read_text()
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("f2")
        await wait_until(pilot, lambda: isinstance(app.screen, SettingsScreen), what="settings")
        screen = app.screen
        lr_row = screen.query_one("#field-training-lr", FieldRow)
        lr_input = lr_row.query_one("Input")
        lr_input.focus()
        lr_input.value = ""
        await type_text(pilot, "fast")
        await wait_until(pilot, lambda: lr_row.error is not None, what="the field's error")
        assert lr_row.error and "Learning rate must be a number" in lr_row.error
        assert "Learning rate must be a number" in screen_text(app)
        batch_row = screen.query_one("#field-training-batch_size", FieldRow)
        batch_row.query_one("Input").value = "16"
        await pilot.pause()  # the change is handled before saving
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "Not saved" in screen_text(app), what="the refusal")
        assert app.screen is screen  # refused: still open, typed values kept
        assert "Not saved" in screen_text(app)
        assert lr_input.value == "fast" and batch_row.query_one("Input").value == "16"
        assert settings_path().read_text() == saved_before
        lr_input.value = "3e-4"
        await wait_until(pilot, lambda: lr_row.error is None, what="the error to clear")
        assert lr_row.error is None
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: not isinstance(app.screen, SettingsScreen), what="settings to close")
    stored, problems = load_settings()
    assert problems == []
    assert stored.training.lr == 3e-4 and stored.training.batch_size == 16


@pytest.mark.anyio
async def test_save_checkpoint_appears_in_list_then_load_it_for_the_repl(fast_tui_settings):
    app = new_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f3")
        await wait_until(pilot, lambda: isinstance(app.screen, SettingsScreen), what="checkpoints tab")
        panel = app.screen.checkpoints
        assert panel.entries == []
        await pilot.click("#ckpt-save")  # not training: saves the weights the REPL talks to
        await wait_until(pilot, lambda: len(panel.entries) == 1, what="the checkpoint in the list")
        entry = panel.entries[0]
        assert entry.path.is_file() and entry.path.parent == paths.models_dir()
        assert entry.label in screen_text(app)
        await pilot.click("#ckpt-load")
        await wait_until(pilot, lambda: app.model_source.kind == "loaded", what="load")
        assert app.model_source.loaded.path == str(entry.path)
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, SettingsScreen))
        assert entry.path.stem in screen_text(app)  # the status line names the weights in use
        await submit(pilot, app, "The")
        await wait_until(pilot, lambda: app.repl.last_reply is not None, what="reply")
        assert entry.path.stem in app.repl.last_reply.footer


@pytest.mark.anyio
async def test_delete_asks_first_then_removes_the_file(fast_tui_settings):
    from gpt_tui.engine.checkpoint import save_checkpoint
    from gpt_tui.engine.model import GPTModel, get_preset

    target = paths.models_dir() / "mine.safetensors"
    save_checkpoint(target, GPTModel(get_preset("tiny", context_length=16)))

    app = new_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f3")
        await wait_until(pilot, lambda: isinstance(app.screen, SettingsScreen))
        settings_screen = app.screen
        assert [e.path for e in settings_screen.checkpoints.entries] == [target]
        await pilot.click("#ckpt-delete")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("n")
        await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmDialog), what="the dialog to close")
        assert target.exists()
        await pilot.click("#ckpt-delete")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_until(pilot, lambda: not target.exists(), what="delete")
        assert settings_screen.checkpoints.entries == []


@pytest.mark.anyio
async def test_import_gpt2_weights_from_a_path(fast_tui_settings, tmp_path):
    """A Hugging Face-style GPT-2 folder (written here, tiny) is imported and then talked to."""
    import json

    import torch
    from safetensors.torch import save_file

    folder = tmp_path / "hf-gpt2"
    folder.mkdir()
    d, layers, vocab, ctx = 32, 1, 50257, 16
    config = {"model_type": "gpt2", "n_embd": d, "n_layer": layers, "n_head": 2, "n_positions": ctx, "vocab_size": vocab,
              "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5}
    (folder / "config.json").write_text(json.dumps(config))
    g = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.02

    state = {"wte.weight": rand(vocab, d), "wpe.weight": rand(ctx, d), "ln_f.weight": torch.ones(d), "ln_f.bias": torch.zeros(d)}
    for i in range(layers):
        p = f"h.{i}."
        state.update({
            p + "ln_1.weight": torch.ones(d), p + "ln_1.bias": torch.zeros(d),
            p + "attn.c_attn.weight": rand(d, 3 * d), p + "attn.c_attn.bias": torch.zeros(3 * d),
            p + "attn.c_proj.weight": rand(d, d), p + "attn.c_proj.bias": torch.zeros(d),
            p + "ln_2.weight": torch.ones(d), p + "ln_2.bias": torch.zeros(d),
            p + "mlp.c_fc.weight": rand(d, 4 * d), p + "mlp.c_fc.bias": torch.zeros(4 * d),
            p + "mlp.c_proj.weight": rand(4 * d, d), p + "mlp.c_proj.bias": torch.zeros(d),
        })
    save_file(state, str(folder / "model.safetensors"))

    app = new_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f3")
        await wait_until(pilot, lambda: isinstance(app.screen, SettingsScreen))
        app.screen.query_one("#ckpt-import-path").value = str(folder)
        await pilot.click("#ckpt-import")
        await wait_until(pilot, lambda: app.model_source.kind == "loaded", timeout=60, what="import")
        assert Path(app.model_source.loaded.path).parent == paths.models_dir()
        assert len(app.screen.checkpoints.entries) == 1
        # a path that is not weights gives a message, not a crash
        app.screen.query_one("#ckpt-import-path").value = str(tmp_path / "nothing-here")
        await pilot.click("#ckpt-import")
        await wait_until(pilot, lambda: isinstance(app.screen, ErrorDialog), what="error dialog")
        assert "nothing-here" in app.screen.message
        await pilot.press("escape")
        assert isinstance(app.screen, SettingsScreen)


@pytest.mark.anyio
async def test_theme_switch_persists_across_a_restart(fast_tui_settings):
    app = new_app()
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.theme == "gpt-tui-dark"
        assert {"gpt-tui-dark", "gpt-tui-light", "phosphor"} <= set(app.available_themes)
        app.theme = "phosphor"
        await wait_until(pilot, lambda: 'theme = "phosphor"' in settings_path().read_text(), what="the theme saved")
    assert 'theme = "phosphor"' in settings_path().read_text()
    app = new_app()
    async with app.run_test(size=(80, 24)):
        assert app.theme == "phosphor"  # in force from the first frame


@pytest.mark.anyio
async def test_theme_is_switchable_from_the_command_palette(fast_tui_settings):
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await type_text(pilot, "theme")
        await wait_until(pilot, lambda: app.screen.query_one(CommandList).option_count > 0, what="palette hits")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette) and app.screen.query_one("Input").value == ""
                         and app.screen.query_one(CommandList).option_count >= 3, what="the list of themes")
        await type_text(pilot, "phosphor")
        await wait_until(pilot, lambda: app.screen.query_one(CommandList).option_count >= 1
                         and "phosphor" in str(app.screen.query_one(CommandList).get_option_at_index(0).prompt), what="phosphor first")
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.theme == "phosphor", timeout=10, what="theme change")
    assert load_settings()[0].theme == "phosphor"


@pytest.mark.anyio
async def test_user_theme_loads_and_a_broken_one_gives_a_message(fast_tui_settings):
    folder = paths.config_dir() / "themes"
    folder.mkdir(parents=True)
    (folder / "mine.toml").write_text('name = "my-own"\nprimary = "#ff00ff"\nbackground = "#000000"\n')
    (folder / "broken.toml").write_text('name = "broken"\nprimary = "not-a-colour"\n')
    (folder / "garbage.toml").write_text("this is = = not toml")

    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: len(app._notifications) >= 2, what="both theme problems")
        assert "my-own" in app.available_themes and "broken" not in app.available_themes
        messages = " ".join(str(n.message) for n in app._notifications)
        assert "broken.toml" in messages and "garbage.toml" in messages
        app.theme = "my-own"
        await wait_until(pilot, lambda: 'theme = "my-own"' in settings_path().read_text(), what="the theme saved")
    assert load_settings()[0].theme == "my-own"


@pytest.mark.anyio
async def test_keys_can_be_remapped_by_binding_id(fast_tui_settings):
    from dataclasses import replace

    from gpt_tui.tui.config import save_settings

    save_settings(replace(fast_tui_settings, keys={"chart.mode": "ctrl+g"}))

    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        assert app.chart.mode == "loss"
        await pilot.press("ctrl+g")
        assert app.chart.mode == "perplexity"
        await pilot.press("f7")  # the old key no longer switches
        assert app.chart.mode == "perplexity"
        assert "^g Chart" in screen_text(app)


@pytest.mark.anyio
async def test_prompt_history_is_kept_across_launches(fast_tui_settings):
    app = new_app()
    async with app.run_test(size=(80, 24)) as pilot:
        for line in ("/seed 1", "/max 2"):
            await submit(pilot, app, line)
    app = new_app()
    async with app.run_test(size=(80, 24)) as pilot:
        box = app.repl.input
        await type_text(pilot, "dra")
        await pilot.press("up")
        assert box.value == "/max 2"
        await pilot.press("up")
        assert box.value == "/seed 1"
        await pilot.press("down", "down")
        assert box.value == "dra"


@pytest.mark.anyio
async def test_a_failing_run_shows_a_dialog_and_the_app_stays_up(fast_tui_settings, tmp_path):
    from dataclasses import replace

    from gpt_tui.tui.config import save_settings

    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 ".encode("latin-1") * 100)
    save_settings(replace(fast_tui_settings, training=replace(fast_tui_settings.training, data=str(bad))))

    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f5")
        await wait_until(pilot, lambda: isinstance(app.screen, ErrorDialog), what="error dialog")
        assert "not UTF-8" in app.screen.message
        await pilot.press("enter")
        assert app.progress.state == "failed"
        await submit(pilot, app, "/temp 0.5")
        assert app.sampling.temperature == 0.5  # still answering


def test_the_app_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, gpt_tui.tui.app; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr
