"""The app's Corpus field takes several sources and says what they hold, worked out off the UI thread."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gpt_tui.engine.corpus_parts import resolve_sources
from gpt_tui.engine.corpus_summary import summarize
from gpt_tui.engine.corpus_tokens import tokenize_parts
from gpt_tui.tui.config import field_spec, parse_value, train_config_kwargs
from gpt_tui.tui.config import TrainingSettings
from gpt_tui.errors import UserError
from pilot import new_app, wait_until
from textgen import sample_text


def _books(root, n):
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / f"{i}.txt").write_text(sample_text(80 + 10 * i, seed=i), encoding="utf-8")


def test_the_corpus_box_takes_several_sources_separated_by_semicolons_or_lines(tmp_path) -> None:
    _books(tmp_path / "books", 2)
    (tmp_path / "one.txt").write_text("text", encoding="utf-8")
    spec = field_spec("training", "data")
    typed = f"{tmp_path / 'books'}; {tmp_path / 'one.txt'}\nhf:roneneldan/TinyStories"
    assert parse_value(spec, typed) == typed
    kwargs = train_config_kwargs(replace(TrainingSettings(), data=typed))
    assert kwargs["data"] == (str(tmp_path / "books"), str(tmp_path / "one.txt"), "hf:roneneldan/TinyStories")
    assert train_config_kwargs(TrainingSettings())["data"] is None  # empty: the built-in corpus
    with pytest.raises(UserError, match=r"corpus '.*gone\.txt' does not exist"):
        parse_value(spec, f"{tmp_path / 'books'}; {tmp_path / 'gone.txt'}")
    assert parse_value(spec, [str(tmp_path / "one.txt"), "hf:x/y"]) == f"{tmp_path / 'one.txt'}; hf:x/y"  # TOML list


def test_the_summary_counts_cached_parts_then_both_splits(tmp_path) -> None:
    _books(tmp_path / "books", 4)
    before = summarize([str(tmp_path / "books")], train_ratio=0.75)
    assert (before.parts, before.cached_parts, before.split) == (4, 0, None)
    assert "4 parts, " in before.line() and "; 0 of 4 cached" in before.line()
    tokens = tokenize_parts(resolve_sources([str(tmp_path / "books")]))
    after = summarize([str(tmp_path / "books")], train_ratio=0.75)
    assert after.cached_parts == 4 and after.split is not None
    assert after.split.train_tokens + after.split.val_tokens == len(tokens.stream)
    assert after.split.train_documents + after.split.val_documents == 4
    assert f"train {after.split.train_tokens:,} tokens in {after.split.train_documents}, " in after.line()
    assert after.line().endswith("all cached")


def test_one_text_file_is_one_document_cut_by_tokens(tmp_path) -> None:
    _books(tmp_path / "books", 1)
    source = [str(tmp_path / "books" / "0.txt")]
    tokenize_parts(resolve_sources(source))
    line = summarize(source, train_ratio=0.9).line()
    assert "1 document split by tokens; train " in line and "documents" not in line


@pytest.mark.anyio
async def test_the_settings_panel_shows_what_the_corpus_holds(fast_tui_settings, tmp_path) -> None:
    from gpt_tui.tui.corpus_view import CorpusView
    from gpt_tui.tui.settings import SettingsScreen

    _books(tmp_path / "books", 3)
    tokenize_parts(resolve_sources([str(tmp_path / "books")]))
    app = new_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("f2")
        await wait_until(pilot, lambda: isinstance(app.screen, SettingsScreen), what="settings")
        view = app.screen.query_one(CorpusView)
        await wait_until(pilot, lambda: "1 part" in str(view.render()), what="the built-in corpus's summary")
        box = app.screen.query_one("#input-data")
        box.value = f"{tmp_path / 'books'}; {tmp_path / 'nothing-*.txt'}"
        await wait_until(pilot, lambda: "matches no files" in str(view.render()), what="the refusal")
        box.value = str(tmp_path / "books")
        await wait_until(pilot, lambda: "all cached" in str(view.render()), what="the folder's summary")
        assert "3 parts" in str(view.render()) and "3 documents" in str(view.render())


def test_the_summary_does_not_fetch_a_dataset_while_online(tmp_path, monkeypatch) -> None:
    from gpt_tui.engine import hf_source

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    asked: list[str] = []
    monkeypatch.setattr(hf_source, "load_hf_split", lambda source: asked.append(source))
    _books(tmp_path / "books", 2)
    summary = summarize([str(tmp_path / "books"), "hf:roneneldan/TinyStories"], train_ratio=0.9)
    assert asked == [] and (summary.parts, summary.datasets, summary.split) == (2, 1, None)
    assert "and 1 dataset (looked up at Start)" in summary.line()
    with pytest.raises(UserError, match="is not a dataset name"):
        summarize(["hf:"], train_ratio=0.9)
