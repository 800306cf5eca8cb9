"""The data pipeline: corpus reading, cached chunked tokenization, windows, batches, splits."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt_tui.engine import corpus, corpus_encoding, data
from gpt_tui.engine.data import BatchLoader, TokenWindows, make_loaders, tokenize_corpus
from gpt_tui.engine.tokenizer import EOT_ID, decode, encode
from gpt_tui.errors import UserError
from quick_runs import count_encodes

VERDICT = Path("/work/shared/data/the-verdict.txt")
Reader = Callable[[str], object]

# Multi-byte letters, emoji, Unicode spaces, CRLF, contractions, digits and the
# document separator: everything that could tokenize differently across a cut.
TRICKY_ATOMS = [
    "a", "Z", "é", "ß", "中", "文", "😀", "1", "23", " ", "  ", "\n", "\n\n", "\r\n", "\t",
    "\u00a0", "\u3000", "\u2028", "'s", "'ll", "'", "!", "...", "<|endoftext|>", "\x0b", "-",
    " \n ", "\u0301",
]


@pytest.fixture(autouse=True)
def user_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("DATA", "CACHE", "CONFIG"):
        monkeypatch.setenv(f"GPT_TUI_{name}_DIR", str(tmp_path / name.lower()))
    return tmp_path



def cache_files(user_dirs: Path) -> list[Path]:
    folder = user_dirs / "cache" / "tokens"
    return sorted(folder.iterdir()) if folder.exists() else []


# --- windows ------------------------------------------------------------------------


def test_window_targets_are_inputs_shifted_by_one() -> None:
    tokens = np.arange(100, dtype=np.uint16)
    windows = TokenWindows(tokens, context_length=8, stride=5)
    for i in range(len(windows)):
        x, y = windows[i]
        assert x.dtype == torch.long and y.dtype == torch.long
        assert x.tolist() == list(range(5 * i, 5 * i + 8))
        assert y.tolist() == list(range(5 * i + 1, 5 * i + 9))
    assert windows[-1][0].tolist() == windows[len(windows) - 1][0].tolist()
    with pytest.raises(IndexError):
        windows[len(windows)]


@pytest.mark.parametrize(
    ("n_tokens", "context_length", "stride", "expected"),
    [
        (100, 8, 5, 19),  # starts 0, 5, ..., 90 (start 91 would have no target for its last token)
        (9, 8, 1, 1),
        (8, 8, 1, 0),  # a window needs context_length + 1 tokens
        (4630, 256, 256, 18),  # the-verdict's training split
        (515, 256, 256, 2),  # the-verdict's validation split
        (20, 4, 1, 16),
    ],
)
def test_window_count_follows_the_books_rule(
    n_tokens: int, context_length: int, stride: int, expected: int
) -> None:
    windows = TokenWindows(np.zeros(n_tokens, dtype=np.uint16), context_length, stride)
    assert len(windows) == expected


def test_batch_gather_matches_single_windows() -> None:
    tokens = (np.arange(300) * 7 % 50257).astype(np.uint16)
    windows = TokenWindows(tokens, context_length=16, stride=3)
    idx = np.array([5, 0, 17, 2])
    x, y = windows.gather(idx)
    assert x.shape == y.shape == (4, 16)
    for row, i in enumerate(idx):
        assert torch.equal(x[row], windows[int(i)][0])
        assert torch.equal(y[row], windows[int(i)][1])


# --- batches ------------------------------------------------------------------------


def make_loader(shuffle: bool, drop_last: bool, seed: int = 0, batch_size: int = 4) -> BatchLoader:
    windows = TokenWindows(np.arange(100, dtype=np.uint16), context_length=8, stride=5)  # 19 windows
    return BatchLoader(windows, batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed)


def first_tokens(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> list[list[int]]:
    return [x[:, 0].tolist() for x, _ in batches]


def test_drop_last_counts_and_last_partial_batch() -> None:
    assert len(make_loader(shuffle=True, drop_last=True)) == 4
    keep = make_loader(shuffle=False, drop_last=False)
    assert len(keep) == 5
    batches = list(keep)
    assert [x.shape[0] for x, _ in batches] == [4, 4, 4, 4, 3]


def test_unshuffled_batches_visit_windows_in_order() -> None:
    batches = list(make_loader(shuffle=False, drop_last=False).batches())
    starts = [t for row in first_tokens(batches) for t in row]
    assert starts == [5 * i for i in range(19)]


def test_shuffled_order_depends_only_on_seed_and_epoch() -> None:
    torch.manual_seed(123)
    np.random.seed(123)
    a = first_tokens(list(make_loader(True, True, seed=7).batches(epoch=0)))
    torch.manual_seed(999)
    np.random.seed(999)
    torch.rand(10)
    b = first_tokens(list(make_loader(True, True, seed=7).batches(epoch=0)))
    assert a == b
    epoch1 = first_tokens(list(make_loader(True, True, seed=7).batches(epoch=1)))
    other_seed = first_tokens(list(make_loader(True, True, seed=8).batches(epoch=0)))
    assert epoch1 != a
    assert other_seed != a
    # A shuffled epoch still visits distinct windows, each at most once.
    seen = [t for row in a for t in row]
    assert len(set(seen)) == len(seen) == 16
    assert set(seen) <= {5 * i for i in range(19)}


def test_start_resumes_the_same_remaining_batches_without_building_skipped_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loader = make_loader(shuffle=True, drop_last=True, seed=3)
    full = list(loader.batches(epoch=2))
    gathered: list[int] = []
    real_gather = loader.windows.gather

    def counting_gather(indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        gathered.append(len(indices))
        return real_gather(indices)

    monkeypatch.setattr(loader.windows, "gather", counting_gather)
    resumed = list(loader.batches(epoch=2, start=3))
    assert len(gathered) == len(full) - 3 == 1
    assert len(resumed) == 1
    assert torch.equal(resumed[0][0], full[3][0]) and torch.equal(resumed[0][1], full[3][1])
    assert list(loader.batches(epoch=2, start=len(loader))) == []
    with pytest.raises(ValueError):
        loader.batches(epoch=2, start=len(loader) + 1)


def test_pin_memory_flag_is_harmless_without_cuda() -> None:
    windows = TokenWindows(np.arange(50, dtype=np.uint16), 4, 4)
    x, y = next(iter(BatchLoader(windows, 2, shuffle=False, drop_last=False, pin_memory=True)))
    assert x.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert y.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]


# --- splits and sanity checks -------------------------------------------------------


def test_the_verdict_numbers_give_the_books_batch_counts() -> None:
    tokens = np.arange(5145, dtype=np.uint16)
    splits = make_loaders(tokens, context_length=256, stride=256, batch_size=2, train_ratio=0.9)
    assert (splits.train_tokens, splits.val_tokens) == (4630, 515)
    assert len(splits.train) == 9 and len(splits.val) == 1
    assert splits.train.shuffle and splits.train.drop_last
    assert not splits.val.shuffle and not splits.val.drop_last
    # Training comes first: validation windows start at the split point.
    x, _ = next(iter(splits.val))
    assert x[0, 0].item() == 4630
    assert "4,630" in splits.summary() and "515" in splits.summary()


@pytest.mark.skipif(not VERDICT.exists(), reason="the-verdict.txt is not on this machine")
def test_the_verdict_file_gives_the_books_counts() -> None:
    tokens = tokenize_corpus(str(VERDICT))
    assert len(tokens) == 5145
    splits = make_loaders(tokens, context_length=256, stride=256, batch_size=2)
    assert len(splits.train) == 9 and len(splits.val) == 1


def test_short_validation_split_says_which_split_and_counts() -> None:
    with pytest.raises(UserError) as err:
        make_loaders(np.zeros(1000, dtype=np.uint16), context_length=256, stride=256, batch_size=1)
    message = str(err.value)
    assert "validation" in message and "100 tokens" in message and "257" in message
    assert "--context-length" in message and "--train-ratio" in message


def test_short_training_split_says_which_split_and_counts() -> None:
    with pytest.raises(UserError) as err:
        make_loaders(
            np.zeros(1000, dtype=np.uint16), context_length=128, stride=128, batch_size=1, train_ratio=0.1
        )
    message = str(err.value)
    assert "training" in message and "100 tokens" in message and "129" in message


def test_too_few_training_windows_for_one_batch() -> None:
    with pytest.raises(UserError, match="--batch-size"):
        # 1000 training tokens, context 256, stride 256: 3 windows < batch size 4.
        make_loaders(
            np.zeros(2000, dtype=np.uint16), context_length=256, stride=256, batch_size=4, train_ratio=0.5
        )


@pytest.mark.parametrize("ratio", [0.0, 1.0, 1.5, -0.2])
def test_train_ratio_outside_zero_one_is_refused(ratio: float) -> None:
    with pytest.raises(UserError, match="--train-ratio"):
        make_loaders(
            np.zeros(1000, dtype=np.uint16), context_length=4, stride=4, batch_size=1, train_ratio=ratio
        )


@pytest.mark.parametrize(
    ("field", "flag"),
    [("context_length", "--context-length"), ("stride", "--stride"), ("batch_size", "--batch-size")],
)
@pytest.mark.parametrize("value", [0, -3])
def test_non_positive_sizes_are_refused(field: str, flag: str, value: int) -> None:
    sizes = {"context_length": 4, "stride": 4, "batch_size": 1, field: value}
    with pytest.raises(UserError, match=flag):
        make_loaders(np.zeros(1000, dtype=np.uint16), **sizes)


# --- reading a corpus ---------------------------------------------------------------


def test_default_corpus_is_deterministic_and_sizeable() -> None:
    text = corpus.read_corpus(None)
    assert text == corpus.read_corpus(corpus.DEFAULT_CORPUS)
    assert len(text) > 400_000
    assert "python-docs" in corpus.corpus_label(None)
    assert corpus.corpus_label("some/dir/the-verdict.txt") == "the-verdict.txt"


def test_unknown_builtin_corpus_is_refused() -> None:
    with pytest.raises(UserError, match="builtin:python-docs"):
        corpus.read_corpus("builtin:nope")
    with pytest.raises(UserError, match="builtin:python-docs"):
        tokenize_corpus("builtin:nope")


@pytest.mark.parametrize("reader", [corpus.read_corpus, tokenize_corpus])
def test_missing_file_and_directory_are_refused(reader: Reader, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        reader(str(tmp_path / "nope.txt"))
    with pytest.raises(UserError, match="directory"):
        reader(str(tmp_path))


@pytest.mark.parametrize("reader", [corpus.read_corpus, tokenize_corpus])
def test_unreadable_file_is_refused(
    reader: Reader, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "locked.txt"
    file.write_text("some text")

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(corpus, "open", denied, raising=False)
    with pytest.raises(UserError, match="permission denied"):
        reader(str(file))


@pytest.mark.parametrize("reader", [corpus.read_corpus, tokenize_corpus])
@pytest.mark.parametrize("bom", [b"", corpus.UTF8_BOM])
def test_non_utf8_names_the_byte_offset(reader: Reader, bom: bytes, tmp_path: Path) -> None:
    file = tmp_path / "latin1.txt"
    file.write_bytes(bom + "naïve café\n".encode("utf-8") + "déjà vu".encode("latin-1"))
    bad_offset = len(bom) + len("naïve café\n".encode("utf-8")) + 1
    with pytest.raises(UserError) as err:
        reader(str(file))
    assert f"offset {bad_offset}" in str(err.value)
    assert "iconv" in str(err.value)


def test_non_utf8_offset_is_exact_in_later_chunks(tmp_path: Path) -> None:
    file = tmp_path / "late.txt"
    prefix = ("word " * 400).encode()
    file.write_bytes(prefix + b"\xff tail")
    with pytest.raises(UserError, match=f"offset {len(prefix)}"):
        tokenize_corpus(str(file), chunk_bytes=16)


@pytest.mark.parametrize("reader", [corpus.read_corpus, tokenize_corpus])
@pytest.mark.parametrize("content", [b"", b"  \n\t\r\n ", corpus.UTF8_BOM])
def test_empty_or_whitespace_corpus_is_refused(
    reader: Reader, content: bytes, tmp_path: Path
) -> None:
    file = tmp_path / "empty.txt"
    file.write_bytes(content)
    with pytest.raises(UserError, match="empty"):
        reader(str(file))


def test_byte_order_mark_is_stripped(tmp_path: Path) -> None:
    file = tmp_path / "bom.txt"
    file.write_bytes(corpus.UTF8_BOM + b"Hello world")
    assert corpus.read_corpus(str(file)) == "Hello world"
    assert tokenize_corpus(str(file)).tolist() == encode("Hello world")


# --- tokenizing and the cache -------------------------------------------------------


def test_tokenize_corpus_reads_endoftext_as_the_separator(tmp_path: Path) -> None:
    file = tmp_path / "docs.txt"
    file.write_text("First doc.<|endoftext|>Second doc.", encoding="utf-8")
    tokens = tokenize_corpus(str(file))
    assert tokens.dtype == np.uint16
    assert tokens.tolist().count(EOT_ID) == 1
    assert decode(tokens.tolist()) == "First doc.<|endoftext|>Second doc."
    with pytest.raises(ValueError):
        tokens[0] = 1  # the cached array is read-only


def test_cache_is_reused_without_tokenizing_again(
    tmp_path: Path, user_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "text.txt"
    file.write_text("The cache keeps these tokens. " * 50, encoding="utf-8")
    calls = count_encodes(monkeypatch)
    first = np.array(tokenize_corpus(str(file)))
    assert len(calls) == 1
    second = tokenize_corpus(str(file))
    assert len(calls) == 1
    assert isinstance(second, np.memmap)
    assert np.array_equal(first, second)
    names = [p.name for p in cache_files(user_dirs)]
    assert len(names) == 2 and any(n.endswith(".json") for n in names)
    # Same bytes under another name share the entry; other bytes get their own.
    copy = tmp_path / "copy.txt"
    copy.write_bytes(file.read_bytes())
    tokenize_corpus(str(copy))
    assert len(calls) == 1
    file.write_text("Different text now.", encoding="utf-8")
    assert decode(tokenize_corpus(str(file)).tolist()) == "Different text now."
    assert len(calls) == 2


@pytest.mark.parametrize("damage", ["truncate", "drop_sidecar", "garble_sidecar", "wrong_count"])
def test_corrupt_cache_entry_is_rebuilt(
    damage: str, tmp_path: Path, user_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "text.txt"
    text = "Rebuild me if broken. " * 40
    file.write_text(text, encoding="utf-8")
    tokenize_corpus(str(file))
    tokens_file = next(p for p in cache_files(user_dirs) if p.suffix == ".u16")
    sidecar = tokens_file.with_suffix(".json")
    if damage == "truncate":
        tokens_file.write_bytes(tokens_file.read_bytes()[:-6])
    elif damage == "drop_sidecar":
        sidecar.unlink()
    elif damage == "garble_sidecar":
        sidecar.write_text("{not json")
    else:
        meta = json.loads(sidecar.read_text())
        meta["tokens"] += 1
        sidecar.write_text(json.dumps(meta))
    calls = count_encodes(monkeypatch)
    rebuilt = tokenize_corpus(str(file))
    assert len(calls) == 1
    assert rebuilt.tolist() == encode(text)
    tokenize_corpus(str(file))
    assert len(calls) == 1


def test_interrupted_tokenization_leaves_no_cache_entry(
    tmp_path: Path, user_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "text.txt"
    file.write_text("Several chunks of words here. " * 20, encoding="utf-8")

    def crash(text: str) -> np.ndarray:
        raise KeyboardInterrupt

    monkeypatch.setattr(corpus_encoding, "_encode_chunk", crash)
    with pytest.raises(KeyboardInterrupt):
        tokenize_corpus(str(file), chunk_bytes=32)
    assert cache_files(user_dirs) == []
    monkeypatch.undo()
    monkeypatch.setenv("GPT_TUI_CACHE_DIR", str(user_dirs / "cache"))
    assert tokenize_corpus(str(file)).tolist() == encode(file.read_text(encoding="utf-8"))


def test_chunked_encoding_equals_whole_text_encoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [
        "Ünïcödé façade — naïve 😀 emoji, 中文字符 and Ελληνικά.",
        "",
        "  indented line with  double  spaces\tand a tab",
        "Windows line end\r",
        "don't, we'll, they're: contractions<|endoftext|>Next document 12345.",
        "\u00a0non-breaking\u3000ideographic space",
    ]
    text = "\n".join(lines * 30) + "\n\n"
    file = tmp_path / "multi.txt"
    file.write_text(text, encoding="utf-8")
    expected = encode(text)
    for chunk_bytes in (1, 3, 7, 64, 1000):
        monkeypatch.setenv("GPT_TUI_CACHE_DIR", str(tmp_path / f"cache-{chunk_bytes}"))
        calls = count_encodes(monkeypatch)
        tokens = tokenize_corpus(str(file), chunk_bytes=chunk_bytes, num_threads=2)
        assert tokens.tolist() == expected, chunk_bytes
        if chunk_bytes < 100:
            assert len(calls) > 10  # really split into many chunks


@settings(max_examples=150, deadline=None)
@given(
    atoms=st.lists(st.sampled_from(TRICKY_ATOMS), min_size=1, max_size=50),
    chunk_bytes=st.integers(min_value=1, max_value=12),
)
def test_chunk_cuts_never_change_tokens(atoms: list[str], chunk_bytes: int) -> None:
    text = "".join(atoms)
    stream = io.BytesIO(text.encode())
    pieces = [piece for piece, _ in data.iter_text_chunks(stream, chunk_bytes=chunk_bytes)]
    assert "".join(pieces) == text
    ids = [i for piece in pieces for i in data.encode_text(piece).tolist()]
    assert ids == encode(text)


def test_text_without_whitespace_is_still_cut_at_character_boundaries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(corpus_encoding, "_MIN_FORCED_CUT", 64)
    text = "é1中2😀-" * 200  # no whitespace anywhere: only forced cuts are possible
    raw = text.encode()
    chunks = list(data.iter_text_chunks(io.BytesIO(raw), chunk_bytes=8))
    assert len(chunks) > 10
    assert "".join(piece for piece, _ in chunks) == text
    assert [end for _, end in chunks] == sorted(end for _, end in chunks)
    assert chunks[-1][1] == len(raw)
    ids = [i for piece, _ in chunks for i in data.encode_text(piece).tolist()]
    assert decode(ids) == text


def test_progress_reports_bytes_up_to_the_total(tmp_path: Path) -> None:
    file = tmp_path / "progress.txt"
    file.write_text("progress is reported per chunk\n" * 100, encoding="utf-8")
    seen: list[tuple[int, int]] = []
    tokenize_corpus(
        str(file), chunk_bytes=256, on_progress=lambda done, total: seen.append((done, total))
    )
    size = file.stat().st_size
    assert len(seen) > 5
    assert all(total == size for _, total in seen)
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[-1] == size


def test_default_corpus_tokenizes_to_a_plausible_size(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_encodes(monkeypatch)
    tokens = tokenize_corpus(None)
    text = corpus.default_corpus_text()
    # English prose and code: roughly 3-4 characters per GPT-2 token.
    assert len(text) // 5 < len(tokens) < len(text) // 2
    assert int(tokens.max()) < 50257
    encoded = len(calls)
    assert encoded >= 1
    assert np.array_equal(tokenize_corpus(corpus.DEFAULT_CORPUS), tokens)
    assert len(calls) == encoded  # the second call is a cache hit
    splits = make_loaders(tokens, context_length=256, stride=256, batch_size=8)
    assert len(splits.train) > 10 and len(splits.val) > 1
