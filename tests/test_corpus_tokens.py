"""A corpus of many parts: tokenized once per part, in parallel, cached per part, read as one stream.

Adding a file to a folder tokenizes that file alone; documents are joined by
one <|endoftext|>; a part longer than the shard limit is kept in several token
files and read across their boundaries as if it were one; a damaged shard is
rebuilt; progress is reported while tokenizing.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from gpt_tui.engine import part_cache
from gpt_tui.engine.batches import TokenWindows
from gpt_tui.engine.corpus_parts import resolve_sources
from gpt_tui.engine.corpus_tokens import tokenize_parts
from gpt_tui.engine.events import TokenizeProgress
from gpt_tui.engine.token_cache import tokens_cache_dir
from gpt_tui.engine.token_stream import TokenStream
from gpt_tui.engine.tokenizer import EOT_ID, encode
from gpt_tui.errors import UserError
from quick_runs import count_encodes
from textgen import sample_text


def _folder(root: Path, count: int) -> list[str]:
    """``count`` text files in nested folders; their texts in the order a folder is read (sorted paths)."""
    texts = {}
    for i in range(count):
        path = root / f"shelf{i % 3}" / f"book{i:02d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        texts[path.relative_to(root).as_posix()] = sample_text(30 + i, seed=i)
        path.write_text(texts[path.relative_to(root).as_posix()], encoding="utf-8")
    return [texts[key] for key in sorted(texts)]


def _joined(texts: list[str]) -> list[int]:
    ids: list[int] = []
    for i, text in enumerate(texts):
        ids += ([EOT_ID] if i else []) + encode(text)
    return ids


def _parts(source: Path):
    return resolve_sources([str(source)])


def test_adding_one_file_to_a_folder_tokenizes_only_that_file(tmp_path, monkeypatch) -> None:
    texts = _folder(tmp_path / "books", 12)
    calls = count_encodes(monkeypatch)
    first = tokenize_parts(_parts(tmp_path / "books"), num_threads=2)
    assert (first.parts, first.tokenized_parts, first.cached_parts) == (12, 12, 0)
    assert first.stream.read(0, len(first.stream)).tolist() == _joined(texts)
    assert first.documents == 12 and first.doc_starts[0] == 0
    assert all(first.stream.read(int(s) - 1, int(s)).tolist() == [EOT_ID] for s in first.doc_starts[1:])

    calls.clear()
    added = sample_text(40, seed=99)
    (tmp_path / "books" / "shelf1" / "book99.txt").write_text(added, encoding="utf-8")
    second = tokenize_parts(_parts(tmp_path / "books"), num_threads=2)
    assert (second.parts, second.tokenized_parts, second.cached_parts) == (13, 1, 12)
    assert calls == [added]  # the new file's text, and nothing else, went through the tokenizer
    expected = _joined(_folder_texts_with(tmp_path / "books"))
    assert second.stream.read(0, len(second.stream)).tolist() == expected


def _folder_texts_with(root: Path) -> list[str]:
    return [p.read_text(encoding="utf-8") for p in sorted(root.rglob("*.txt"), key=lambda p: p.relative_to(root).as_posix())]


def test_parallel_and_serial_tokenizing_give_the_same_stream(tmp_path, monkeypatch) -> None:
    texts = _folder(tmp_path / "books", 9)
    monkeypatch.setenv("GPT_TUI_CACHE_DIR", str(tmp_path / "serial"))
    serial = tokenize_parts(_parts(tmp_path / "books"), num_threads=1)
    monkeypatch.setenv("GPT_TUI_CACHE_DIR", str(tmp_path / "parallel"))
    monkeypatch.setattr("gpt_tui.engine.corpus_tokens.PARALLEL_PART_BYTES", 64)  # every file cut into chunks too
    parallel = tokenize_parts(_parts(tmp_path / "books"), num_threads=3, chunk_bytes=32)
    assert serial.stream.read(0, len(serial.stream)).tolist() == _joined(texts)
    assert parallel.stream.read(0, len(parallel.stream)).tolist() == _joined(texts)
    assert np.array_equal(serial.doc_starts, parallel.doc_starts)


def test_documents_of_a_jsonl_file_and_a_text_file_are_joined_by_one_separator(tmp_path) -> None:
    docs = ["The first record.", "A second one, longer than the first.", "Third."]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    (tmp_path / "b.txt").write_text("A text file is one document.\n", encoding="utf-8")
    tokens = tokenize_parts(resolve_sources([str(tmp_path / "a.jsonl"), str(tmp_path / "b.txt")]))
    assert tokens.stream.read(0, len(tokens.stream)).tolist() == _joined([*docs, "A text file is one document.\n"])
    assert tokens.documents == 4
    starts = [0]
    for d in docs:
        starts.append(starts[-1] + len(encode(d)) + 1)
    assert tokens.doc_starts.tolist() == starts
    again = tokenize_parts(resolve_sources([str(tmp_path / "a.jsonl"), str(tmp_path / "b.txt")]))
    assert again.cached_parts == 2 and again.doc_starts.tolist() == starts  # document starts come back from the cache


def test_a_part_over_the_shard_limit_is_kept_in_several_files_and_read_across_them(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(part_cache, "SHARD_TOKENS", 50)
    text = sample_text(120, seed=5)
    expected = np.array(encode(text), dtype=np.uint16)
    assert len(expected) > 120
    (tmp_path / "long.txt").write_text(text, encoding="utf-8")
    tokens = tokenize_parts(_parts(tmp_path / "long.txt"))
    shards = sorted(tokens_cache_dir().glob("*.u16"))
    assert len(shards) == -(-len(expected) // 50) and all(p.stat().st_size <= 100 for p in shards)
    stream = tokens.stream
    assert stream.pieces == len(shards) and len(stream) == len(expected)
    assert np.array_equal(stream.read(0, len(stream)), expected)
    for start, stop in ((45, 55), (49, 50), (50, 51), (0, 101), (99, 130)):  # across and at the boundaries
        assert np.array_equal(stream.read(start, stop), expected[start:stop]), (start, stop)
    assert np.shares_memory(stream.read(10, 40), stream.read(0, 50))  # inside one shard: a view of its memory map
    with pytest.raises(ValueError, match="spans"):
        stream.as_array()
    flat = TokenWindows(expected, context_length=16, stride=7)
    sharded = TokenWindows(stream, context_length=16, stride=7)
    assert len(flat) == len(sharded)
    rows = np.arange(len(flat))
    for a, b in zip(flat.gather(rows), sharded.gather(rows)):
        assert np.array_equal(a.numpy(), b.numpy())
    assert all(np.array_equal(flat[i][0].numpy(), sharded[i][0].numpy()) for i in range(len(flat)))
    again = tokenize_parts(_parts(tmp_path / "long.txt"))
    assert again.cached_parts == 1 and np.array_equal(again.stream.read(0, len(again.stream)), expected)


def test_a_damaged_shard_is_rebuilt_with_a_notice(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(part_cache, "SHARD_TOKENS", 40)
    text = sample_text(100, seed=8)
    (tmp_path / "long.txt").write_text(text, encoding="utf-8")
    tokenize_parts(_parts(tmp_path / "long.txt"))
    second = next(p for p in tokens_cache_dir().glob("*.1.u16"))
    ids = np.fromfile(second, dtype=np.uint16)
    ids[3] = (int(ids[3]) + 1) % 50000
    second.write_bytes(ids.tobytes())
    with pytest.warns(UserWarning, match=r"long\.txt is damaged \(its checksum does not match\)"):
        rebuilt = tokenize_parts(_parts(tmp_path / "long.txt"))
    assert rebuilt.tokenized_parts == 1
    assert rebuilt.stream.read(0, len(rebuilt.stream)).tolist() == encode(text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tokenize_parts(_parts(tmp_path / "long.txt")).cached_parts == 1


def test_an_interrupted_part_leaves_no_entry_and_the_others_are_kept(tmp_path, monkeypatch) -> None:
    _folder(tmp_path / "books", 4)
    (tmp_path / "books" / "shelf0" / "zz.txt").write_text("   \n\n  ", encoding="utf-8")  # nothing but whitespace
    with pytest.raises(UserError, match="empty or only whitespace"):
        tokenize_parts(_parts(tmp_path / "books"), num_threads=2)
    names = [p.name for p in tokens_cache_dir().iterdir()]
    assert not [n for n in names if not n.endswith((".u16", ".json"))], names  # no temporary file is left
    assert len([n for n in names if n.endswith(".json")]) == len([n for n in names if n.endswith(".u16")]) <= 4


def test_progress_reports_files_bytes_and_tokens_up_to_the_totals(tmp_path) -> None:
    _folder(tmp_path / "books", 6)
    seen: list[TokenizeProgress] = []
    tokens = tokenize_parts(_parts(tmp_path / "books"), progress=seen.append, num_threads=2)
    last = seen[-1]
    size = sum(p.stat().st_size for p in (tmp_path / "books").rglob("*.txt"))
    assert last.done and (last.files_done, last.files_total) == (6, 6)
    assert last.bytes_done == last.bytes_total == size
    assert last.tokens == len(tokens.stream) - 5  # every id but the separators between files
    assert [p.files_done for p in seen] == sorted(p.files_done for p in seen)
    assert not any(p.done for p in seen[:-1])
    assert "6/6 files" in last.line() and "MB/s" in last.line() and f"{last.tokens:,} tokens" in last.line()
    seen.clear()
    tokenize_parts(_parts(tmp_path / "books"), progress=seen.append)
    assert seen[-1].done and seen[-1].cached_files == 6 and seen[-1].bytes_total == 0


def test_a_stream_of_one_piece_is_its_memory_map_and_slices_copy_nothing(tmp_path) -> None:
    (tmp_path / "one.txt").write_text(sample_text(50, seed=2), encoding="utf-8")
    stream = tokenize_parts(_parts(tmp_path / "one.txt")).stream
    whole = stream.as_array()
    assert isinstance(whole, np.memmap) and len(whole) == len(stream)
    part = stream.slice(5, 25)
    assert len(part) == 20 and np.shares_memory(part.as_array(), whole)
    assert np.array_equal(part.read(0, 20), whole[5:25])
    two = TokenStream([np.arange(5, dtype=np.uint16), np.arange(5, 9, dtype=np.uint16)])
    assert two.slice(3, 7).read(0, 4).tolist() == [3, 4, 5, 6]
    assert two.slice(5, 9).as_array().tolist() == [5, 6, 7, 8]  # a slice inside one piece is that piece's view


def test_a_corpus_of_more_files_than_may_be_open_raises_the_limit_or_says_how(tmp_path, monkeypatch) -> None:
    resource = pytest.importorskip("resource")
    from gpt_tui.engine import corpus_tokens

    limits: list[tuple[int, int]] = []
    monkeypatch.setattr(resource, "getrlimit", lambda _kind: (100, 1000))
    monkeypatch.setattr(resource, "setrlimit", lambda _kind, value: limits.append(value))
    corpus_tokens.allow_open_files(50)
    assert limits == []  # within the limit: left alone
    corpus_tokens.allow_open_files(600)
    assert limits == [(600, 1000)]
    with pytest.raises(UserError, match=r"allows 1,000 open files; raise the limit \(ulimit -n 5000\)"):
        corpus_tokens.allow_open_files(5000)
