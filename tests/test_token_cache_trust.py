"""A token cache entry is checked on every use: damaged or mislabelled ids are rebuilt with a note, never trained on.

The cache is keyed by the sha256 of the corpus bytes; these tests damage an
entry the ways a disk, a hand edit or a corpus edited mid-read can, and check
that the ids handed to training are always the corpus's own.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from gpt_tui.cli import main
from gpt_tui.engine import corpus_encoding
from gpt_tui.engine.token_cache import tokenize_corpus, tokens_cache_dir
from gpt_tui.engine.tokenizer import decode, encode
from gpt_tui.errors import Notice
from quick_runs import count_encodes
from textgen import sample_text


def _entry() -> tuple[Path, Path]:
    """The one cache entry there is: its token file and its sidecar."""
    files = sorted(tokens_cache_dir().glob("*.u16"))
    assert len(files) == 1, files
    return files[0], files[0].with_suffix(".json")



def _all_ones(tokens: Path, sidecar: Path) -> None:
    tokens.write_bytes(b"\xff" * tokens.stat().st_size)  # id 65535: past the vocabulary


def _zeros(tokens: Path, sidecar: Path) -> None:
    tokens.write_bytes(bytes(tokens.stat().st_size))  # id 0 ("!") everywhere: valid ids, wrong text


def _shortened(tokens: Path, sidecar: Path) -> None:
    meta = json.loads(sidecar.read_text())
    meta["tokens"] //= 2
    sidecar.write_text(json.dumps(meta))
    tokens.write_bytes(tokens.read_bytes()[: 2 * meta["tokens"]])


def _one_id_changed(tokens: Path, sidecar: Path) -> None:
    ids = np.fromfile(tokens, dtype=np.uint16)
    ids[5] = (int(ids[5]) + 1) % 50000  # another valid id
    tokens.write_bytes(ids.tobytes())


@pytest.mark.parametrize("damage", [_all_ones, _zeros, _shortened, _one_id_changed], ids=lambda f: f.__name__)
def test_a_damaged_entry_is_rebuilt_with_a_notice(damage: Callable[[Path, Path], None], tmp_path, monkeypatch) -> None:
    text = sample_text(300, seed=11)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text, encoding="utf-8")
    expected = encode(text)
    assert tokenize_corpus(str(corpus)).tolist() == expected
    damage(*_entry())
    calls = count_encodes(monkeypatch)
    with pytest.warns(UserWarning, match=r"token cache entry for .*corpus\.txt is damaged .*tokenizing the corpus again"):
        rebuilt = tokenize_corpus(str(corpus))
    assert calls, "the damaged ids were used instead of tokenizing again"
    assert rebuilt.tolist() == expected
    calls.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt entry is trusted again, silently
        assert tokenize_corpus(str(corpus)).tolist() == expected
    assert calls == []


def test_training_on_a_damaged_entry_notes_it_and_trains_on_the_corpus(corpus_and_init, tmp_path, capsys) -> None:
    corpus, init = corpus_and_init
    tokenize_corpus(str(corpus))
    _all_ones(*_entry())
    args = [
        "train", "--data", str(corpus), "--init-from", str(init), "--run-dir", str(tmp_path / "run"),
        "--context-length", "16", "--batch-size", "2", "--max-steps", "2", "--eval-iter", "1",
        "--sample-tokens", "0", "--device", "cpu", "--precision", "fp32", "--quiet",
    ]
    assert main(args) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("gpt-tui: note: ")]
    assert len(notes) == 1 and "is damaged" in notes[0] and "tokenizing the corpus again" in notes[0], err
    assert "Traceback" not in err
    assert np.array_equal(tokenize_corpus(str(corpus)), encode(corpus.read_text(encoding="utf-8")))


def _edit_in_place_when_read(path: Path, other: str, monkeypatch) -> None:
    """The corpus is rewritten (same file) just as the tokenizer starts to read it."""
    real = corpus_encoding.iter_text_chunks

    def editing(stream, **kwargs):
        path.write_text(other, encoding="utf-8")
        return real(stream, **kwargs)

    monkeypatch.setattr(corpus_encoding, "iter_text_chunks", editing)


def _replace_when_read(path: Path, other: str, monkeypatch) -> None:
    """The corpus is replaced by another file (a new inode) just before the tokenizer opens it."""
    real = corpus_encoding._read_chunks

    def replacing(source, chunk_bytes):
        fresh = path.with_name("fresh.txt")
        fresh.write_text(other, encoding="utf-8")
        os.replace(fresh, path)
        return real(source, chunk_bytes)

    monkeypatch.setattr(corpus_encoding, "_read_chunks", replacing)


@pytest.mark.parametrize("change", [_edit_in_place_when_read, _replace_when_read], ids=lambda f: f.__name__)
def test_a_corpus_changed_while_read_never_stores_tokens_under_the_wrong_hash(change, tmp_path, monkeypatch) -> None:
    original = sample_text(200, seed=3)
    other = "Quite another text, " * 40
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(original, encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
        change(corpus, other, patch)
        warnings.simplefilter("ignore")  # a notice that the corpus changed is welcome, not required here
        got = tokenize_corpus(str(corpus)).tolist()
    assert got in (encode(original), encode(other))
    for tokens in tokens_cache_dir().glob("*.u16"):  # every entry holds the ids of the text its name is the hash of
        text = decode(np.fromfile(tokens, dtype=np.uint16).tolist())
        assert tokens.name.startswith(hashlib.sha256(text.encode("utf-8")).hexdigest() + "."), tokens.name
    corpus.write_text(original, encoding="utf-8")
    assert tokenize_corpus(str(corpus)).tolist() == encode(original)


@pytest.mark.anyio
async def test_the_app_shows_an_engine_notice_from_its_training_thread(capsys) -> None:
    """A notice warned on a worker thread (a damaged cache entry) is drawn by the app, not lost on stderr."""
    import threading

    from pilot import new_app, screen_text, wait_until

    app = new_app()
    async with app.run_test(size=(120, 36), notifications=True) as pilot:
        text = "the token cache entry for corpus.txt is damaged (its checksum differs); tokenizing the corpus again."
        worker = threading.Thread(target=lambda: warnings.warn(text, Notice))
        worker.start()
        worker.join()
        await wait_until(pilot, lambda: "damaged" in screen_text(app), timeout=20, what="the notice on screen")
    assert "is damaged" not in capsys.readouterr().err
    assert warnings.showwarning.__name__ != "show_notice"  # the app's route is gone with the app
