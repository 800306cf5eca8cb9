"""Pilot tests of the conversation and the app's messages: queued prompts, scrolling, screenshots,
the corpus picker, the status line's step, what idle keys say, and the wording of refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pilot import new_app, press_while_busy, screen_text, wait_until
from gpt_tui import paths
from gpt_tui.tui.app import GptTuiApp


async def submit(pilot: Any, app: GptTuiApp, line: str) -> None:
    """Type a line and press Enter; returns once the REPL took it (the input is cleared when it does)."""
    app.repl.input.value = line
    await press_while_busy(pilot, "enter")
    await wait_until(pilot, lambda: app.repl.input.value == "", timeout=10, what=f"the REPL to take {line!r}")


def notices(app: GptTuiApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


# ----- a prompt sent while a reply streams -----------------------------------------------------------


@pytest.mark.anyio
async def test_a_prompt_sent_while_a_reply_streams_waits_its_turn_then_runs(fast_tui_settings):
    import threading

    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        gate = threading.Event()  # the first reply waits for its weights until "Second" has been sent
        acquire = app.model_source.acquire
        app.model_source.acquire = lambda: (gate.wait(30), acquire())[1]  # type: ignore[method-assign]
        await submit(pilot, app, "/max 40")
        await submit(pilot, app, "First")
        await wait_until(pilot, lambda: app.repl.streaming, what="the first reply to begin")
        await submit(pilot, app, "Second")
        await wait_until(pilot, lambda: app.repl.query("Note.-queued") or app.repl.query("Note.-error"), what="an answer")
        queued = [str(n.render()) for n in app.repl.query("Note.-queued")]
        assert len(queued) == 1 and "Second" in queued[0] and "queued" in queued[0]
        assert not app.repl.query("Note.-error")  # not refused
        gate.set()
        await wait_until(pilot, lambda: app.repl.last_reply is not None and app.repl.last_reply.prompt == "Second"
                         and app.repl.current is None, what="the queued prompt's reply")
        from gpt_tui.tui.repl import Reply

        replies = list(app.repl.query(Reply))
        assert [r.prompt for r in replies] == ["First", "Second"]
        assert all("40 tokens" in r.footer and "cancelled" not in r.footer for r in replies)
        assert not app.repl.query("Note.-queued")  # the note gave its place to the reply


@pytest.mark.anyio
async def test_escape_cancels_the_streaming_reply_and_the_queue(fast_tui_settings):
    app = new_app()
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await submit(pilot, app, "/max 5000")
        await submit(pilot, app, "First")
        for n, line in enumerate(("Second", "Third")):
            await submit(pilot, app, line)
            await wait_until(pilot, lambda: len(app.replies.queued) == n + 1, timeout=10, what=f"{line} queued")
        assert [text for text, _ in app.replies.queued] == ["Second", "Third"]
        await wait_until(pilot, lambda: app.repl.current is not None and app.repl.current.updates >= 1, what="first piece")
        await press_while_busy(pilot, "escape")
        assert app.repl.current is None and app.replies.queued == []
        await wait_until(pilot, lambda: not app.repl.query("Note.-queued"), what="the queued notes to go")
        worker = app._reply_worker
        await wait_until(pilot, lambda: worker is not None and worker.is_finished, timeout=30, what="worker to stop")
        await pilot.pause(0.2)
        assert app.repl.current is None and app._reply_worker is worker  # nothing queued started
        assert any("Cancelled 2 queued prompts" in n for n in notices(app))


# ----- scrolling the conversation from the keyboard --------------------------------------------------


@pytest.mark.anyio
async def test_the_conversation_scrolls_from_the_keyboard_while_the_input_keeps_focus(fast_tui_settings):
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        for n in range(60):
            app.repl.note(f"line {n}")
        log = app.repl.log_view
        await wait_until(pilot, lambda: log.max_scroll_y > 20 and log.scroll_y == log.max_scroll_y, what="the log at its end")
        bottom = log.max_scroll_y
        steps = [("pageup", lambda y: y < bottom - 5), ("shift+up", None), ("ctrl+up", None), ("ctrl+home", lambda y: y == 0),
                 ("pagedown", lambda y: y > 5), ("shift+down", None), ("ctrl+down", None), ("ctrl+end", lambda y: y == bottom)]
        for key, check in steps:
            before = log.scroll_y
            await pilot.press(key)
            await pilot.pause()
            if check is None:  # one line, up or down
                assert abs(log.scroll_y - before) == 1, key
            else:
                assert check(log.scroll_y), (key, before, log.scroll_y)
            assert app.focused is app.repl.input, key
        app.repl.note("a new line")  # back at the end, the newest entry still comes into view
        await wait_until(pilot, lambda: log.max_scroll_y > bottom and log.scroll_y == log.max_scroll_y, what="follow")

        await pilot.press("f1")
        await pilot.pause()
        from gpt_tui.tui.help import HelpScreen

        assert isinstance(app.screen, HelpScreen)
        helps = " ".join(str(s.render()) for s in app.screen.query("Static"))
        assert "PgUp/PgDn" in helps and "Ctrl+Home" in helps and "Corpus" in helps


# ----- palette: screenshot ---------------------------------------------------------------------------


def _screenshot_command(app: GptTuiApp) -> Any:
    return next(c for c in app.get_system_commands(app.screen) if c.title == "Screenshot")


@pytest.mark.anyio
async def test_screenshot_goes_to_the_data_directory_or_the_run_and_says_where(fast_tui_settings, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # Textual's own default is ~/Downloads: never the real one
    app = new_app()
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        folder = paths.screenshots_dir()
        assert not folder.exists()
        _screenshot_command(app).callback()
        await wait_until(pilot, lambda: folder.is_dir() and any(folder.glob("*.svg")), timeout=10, what="the screenshot")
        (shot,) = folder.glob("*.svg")
        assert "<svg" in shot.read_text(encoding="utf-8")
        await wait_until(pilot, lambda: any(str(shot.resolve()) in n for n in notices(app)), timeout=5, what="the notice")

        run_dir = tmp_path / "run"
        run_dir.mkdir()
        app.progress.run_dir = str(run_dir)
        _screenshot_command(app).callback()
        await wait_until(pilot, lambda: any(run_dir.glob("*.svg")), timeout=10, what="the run's screenshot")

        app.progress.run_dir = ""
        for old in folder.iterdir():
            old.unlink()
        folder.rmdir()
        folder.write_text("a file where the folder belongs")
        count = len(notices(app))
        _screenshot_command(app).callback()
        await wait_until(pilot, lambda: len(notices(app)) > count, timeout=10, what="the failure notice")
        failure = notices(app)[-1]
        assert "Could not save the screenshot" in failure and str(folder) in failure
        assert not (tmp_path / "home" / "Downloads").exists()


# ----- the corpus picker and path completion ---------------------------------------------------------


def test_path_completion_completes_from_the_folder_and_stays_bounded(tmp_path):
    from gpt_tui.tui.corpus_picker import complete_path

    (tmp_path / "corpus.txt").write_text("text")
    (tmp_path / "books").mkdir()
    (tmp_path / ".hidden").write_text("")
    base = str(tmp_path)
    assert complete_path(base + "/cor") == base + "/corpus.txt"
    assert complete_path(base + "/bo") == base + "/books/"
    assert complete_path(base + "/corpus.txt") is None  # complete already
    assert complete_path(base + "/zzz") is None
    assert complete_path(base + "/") in (base + "/books/", base + "/corpus.txt")  # dot-files stay hidden
    assert complete_path(base + "/.h") == base + "/.hidden"
    assert complete_path(f"{base}/corpus.txt; {base}/bo") == f"{base}/corpus.txt; {base}/books/"  # the last value
    assert complete_path("/proc/sel") is None and complete_path("hf:wikitext") is None
    many = tmp_path / "many"
    many.mkdir()
    for n in range(50):
        (many / f"f{n:03d}.txt").write_text("")
    found = complete_path(str(many) + "/f", limit=10)
    assert found is not None and found.startswith(str(many) + "/f")
    listed = [complete_path(str(many) + "/f", limit=limit) for limit in (1, 1000)]
    assert listed[1] == str(many) + "/f000.txt" and listed[0] is not None


async def _open_picker(pilot: Any, app: GptTuiApp, start: Path) -> Any:
    from gpt_tui.tui.corpus_picker import CorpusPicker

    app.screen.query_one("#input-data").value = str(start) + "/"
    await pilot.click("#browse-data")
    await wait_until(pilot, lambda: isinstance(app.screen, CorpusPicker), what="the picker")
    picker = app.screen
    tree = picker.tree
    await wait_until(pilot, lambda: len(tree.root.children) >= 2, what="the folder listed")
    assert Path(tree.path) == start
    return picker


def _move_to(tree: Any, name: str) -> None:
    for line in range(tree.last_line + 1):
        node = tree.get_node_at_line(line)
        if node is not None and node.data is not None and node.data.path.name == name:
            tree.cursor_line = line
            return
    raise AssertionError(f"{name} is not listed")


@pytest.mark.anyio
async def test_the_corpus_field_has_a_browser_for_a_file_or_a_folder_and_completes_paths(fast_tui_settings, tmp_path):
    from gpt_tui.tui.corpus_picker import CorpusPicker
    from gpt_tui.tui.settings import SettingsScreen

    (tmp_path / "corpus.txt").write_text("Some text to train on.\n")
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "one.txt").write_text("More text.\n")
    app = new_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f2")
        await wait_until(pilot, lambda: isinstance(app.screen, SettingsScreen), what="settings")
        settings = app.screen
        box = settings.query_one("#input-data")

        picker = await _open_picker(pilot, app, tmp_path)
        _move_to(picker.tree, "corpus.txt")
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.screen is settings, what="the picker to close")
        assert box.value == str(tmp_path / "corpus.txt")

        picker = await _open_picker(pilot, app, tmp_path)
        _move_to(picker.tree, "books")
        await pilot.press("ctrl+o")
        await wait_until(pilot, lambda: app.screen is settings, what="the picker to close")
        assert box.value == str(tmp_path / "books")

        picker = await _open_picker(pilot, app, tmp_path)
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is settings, what="the picker to close")
        assert box.value == str(tmp_path) + "/"  # Esc keeps what was typed

        box.focus()
        box.value = str(tmp_path) + "/cor"
        box.cursor_position = len(box.value)
        await wait_until(pilot, lambda: box._suggestion == str(tmp_path / "corpus.txt"), timeout=10, what="completion")
        await pilot.press("right")
        assert box.value == str(tmp_path / "corpus.txt")

        await pilot.press("ctrl+o")  # the key opens the browser too
        await wait_until(pilot, lambda: isinstance(app.screen, CorpusPicker), what="the picker by key")
        await pilot.press("escape")


def test_the_welcome_text_says_how_to_train_on_your_own_file():
    app = GptTuiApp(stable=True, warm_up=False)
    welcome = str(app._welcome())
    assert "Settings (F2)" in welcome and "Corpus" in welcome


# ----- the status line follows the live step ---------------------------------------------------------


@pytest.mark.anyio
async def test_the_status_line_shows_the_runs_current_step_not_the_first_snapshots(fast_tui_settings):
    class FakeTrainer:
        model = object()
        step = 315

        def snapshot_model(self) -> str:
            return "weights"

    app = new_app()
    async with app.run_test(size=(120, 36)) as pilot:
        trainer = FakeTrainer()
        app.model_source.use_trainer(trainer)
        model, label = app.model_source.acquire()  # a reply's snapshot, at step 315
        assert label == "training weights (step 315)"
        app.progress.step = 2048
        app.update_repl_status()
        await pilot.pause()
        text = screen_text(app)
        assert "training weights (step 2048)" in text and "step 315" not in text


# ----- what the keys say when there is nothing for them to do ----------------------------------------


@pytest.mark.anyio
async def test_idle_keys_say_why_nothing_happened_and_f8_warns_about_untrained_weights(fast_tui_settings):
    app = new_app()
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        for key, expected in (("f6", "No training is running"), ("ctrl+y", "No reply to copy"), ("escape", "Nothing to cancel")):
            count = len(notices(app))
            await pilot.press(key)
            await wait_until(pilot, lambda: len(notices(app)) > count, timeout=5, what=f"a notice for {key}")
            assert expected in notices(app)[-1], (key, notices(app)[-1])
        count = len(notices(app))
        await pilot.press("f8")
        await wait_until(pilot, lambda: any("never been trained" in n for n in notices(app)[count:]), timeout=60,
                         what="the save's warning")
        saved = list(paths.models_dir().glob("*.safetensors"))
        assert len(saved) == 1
        warning = next(n for n in notices(app)[count:] if "never been trained" in n)
        assert saved[0].name in warning and "untrained tiny" in warning
        assert [n.severity for n in app._notifications if "never been trained" in str(n.message)] == ["warning"]


# ----- wording ---------------------------------------------------------------------------------------


def test_a_refused_number_quotes_an_example_that_fits_the_option():
    from gpt_tui.errors import UserError
    from gpt_tui.tui.config import ALL_FIELDS, parse_value

    def refusal(key: str, raw: str) -> str:
        with pytest.raises(UserError) as caught:
            parse_value(ALL_FIELDS[key], raw)
        return str(caught.value)

    temperature = refusal("sampling.temperature", "warm")
    assert "4e-4" not in temperature and "e.g. 0.8" in temperature
    assert "e.g. 0.9" in refusal("sampling.top_p", "most")
    assert "e.g. 0.0004" in refusal("training.lr", "fast")
    for key in ("training.seed", "sampling.seed"):
        limit = refusal(key, str(2**64))
        assert "9223372036854775807" in limit and "e+" not in limit


def test_the_cli_prints_the_seed_limit_as_an_integer(capsys):
    from gpt_tui.cli import main

    assert main(["train", "--seed", str(2**64), "--max-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "9223372036854775807" in err and "e+" not in err


def test_a_path_wraps_after_its_separators():
    from gpt_tui.tui.path_text import wrap_path

    path = "runs/20261201-163000-tiny/checkpoints/step-00000120.safetensors"
    for width in range(len("step-00000120.safetensors"), len(path) + 2):  # each name fits a line
        lines = wrap_path(path, width)
        assert "".join(lines) == path and all(len(line) <= width for line in lines)
        assert all(line.endswith("/") for line in lines[:-1]), (width, lines)
    assert wrap_path("a" * 25, 10) == ["a" * 10, "a" * 10, "a" * 5]  # one name wider than the line is folded


@pytest.mark.anyio
async def test_the_delete_dialog_keeps_the_file_name_whole(fast_tui_settings):
    from gpt_tui.engine.checkpoint import save_checkpoint
    from gpt_tui.engine.model import GPTModel, get_preset
    from gpt_tui.tui.dialogs import ConfirmDialog
    from gpt_tui.tui.settings import SettingsScreen

    name = "a-long-checkpoint-name-for-the-dialog-xyz.safetensors"  # fits a line; with its folder it does not
    target = paths.models_dir() / name
    save_checkpoint(target, GPTModel(get_preset("tiny", context_length=16)))
    app = new_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f3")
        await wait_until(pilot, lambda: isinstance(app.screen, SettingsScreen))
        await wait_until(pilot, lambda: app.screen.checkpoints.entries, what="the list")
        await pilot.click("#ckpt-delete")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.pause()
        box = app.screen.query_one("#dialog").region  # the dialog alone: the list behind it shows the name too
        lines = [line[box.x : box.right] for line in screen_text(app).splitlines()[box.y : box.bottom]]
        assert any(name in line for line in lines), lines
        assert any("models/" in line for line in lines)
        await pilot.press("n")
        assert target.exists()

