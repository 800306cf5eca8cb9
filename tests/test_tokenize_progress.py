"""Progress while a corpus is tokenized: one updating line on a terminal, and a line in the app's training pane."""

from __future__ import annotations

import io

import pytest

from gpt_tui.cli.tokenize_line import TokenizeLine
from gpt_tui.engine.events import StartEvent, TokenizeProgress
from gpt_tui.tui.progress import TrainingProgress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _progress(**changes) -> TokenizeProgress:
    values = dict(files_done=3, files_total=10, bytes_done=30_000_000, bytes_total=100_000_000, tokens=7_500_000, elapsed=2.0)
    values.update(changes)
    return TokenizeProgress(**values)


def test_the_line_says_files_speed_tokens_and_eta() -> None:
    line = _progress().line()
    assert line == "Tokenizing: 3/10 files, 15.0 MB/s, 7,500,000 tokens, ETA 5s"  # 70 MB left at 15 MB/s
    assert _progress(done=True, files_done=10, cached_files=4).line().endswith("(4 cached), 15.0 MB/s, 7,500,000 tokens, done")
    assert _progress(bytes_done=0, elapsed=0.0).eta is None


def test_a_terminal_gets_one_updating_line_ended_when_done() -> None:
    out = _Terminal()
    show = TokenizeLine(out)
    show(_progress())
    show(_progress(files_done=10, bytes_done=100_000_000, done=True))
    text = out.getvalue()
    assert text.count("\r") == 2 and text.endswith("done\x1b[K\n") and text.count("\n") == 1
    assert "3/10 files" in text


def test_a_pipe_or_a_corpus_read_from_the_cache_prints_nothing() -> None:
    pipe = io.StringIO()
    TokenizeLine(pipe)(_progress())
    assert pipe.getvalue() == ""
    terminal = _Terminal()
    TokenizeLine(terminal)(_progress(bytes_total=0, bytes_done=0, cached_files=10, files_done=10, done=True))
    assert terminal.getvalue() == ""


def test_the_training_pane_shows_the_corpus_being_prepared_until_the_run_starts() -> None:
    progress = TrainingProgress(state="preparing")
    progress.apply(_progress())
    assert progress.corpus_progress == _progress().line()
    progress.apply(StartEvent(run_dir="r", device="cpu", num_parameters=1, train_tokens=9, val_tokens=1,
                              train_batches=1, val_batches=1, total_steps=1, start_step=0))
    assert progress.corpus_progress == ""


@pytest.mark.anyio
async def test_the_training_pane_shows_the_tokenizing_line_while_preparing() -> None:
    from textual.app import App

    from pilot import screen_text

    from gpt_tui.tui.training_pane import TrainingPane

    progress = TrainingProgress(state="preparing")

    class PaneApp(App):
        def compose(self):
            yield TrainingPane(progress)

    app = PaneApp()
    async with app.run_test(size=(100, 12)) as pilot:
        pane = app.query_one(TrainingPane)
        progress.apply(_progress())
        pane.refresh_progress()
        await pilot.pause()
        assert "Tokenizing: 3/10 files, 15.0 MB/s" in screen_text(app)
        progress.apply(_progress(done=True))
        pane.refresh_progress()
        await pilot.pause()
        assert "Tokenizing" not in screen_text(app)
