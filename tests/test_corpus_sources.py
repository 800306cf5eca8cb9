"""What --data can name: folders, globs, JSON Lines, JSON, CSV, Parquet and Hugging Face datasets, and the split.

A folder of many files is read recursively in sorted order, its files joined by
one <|endoftext|>; every record format gives the ids of the same text in a
folder of files; a Hugging Face dataset loads offline from a cache the test
writes; a multi-document corpus splits on a document boundary and --val-data
replaces the split. Every bad input is one UserError and leaves no cache entry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from gpt_tui.engine.corpus_parts import iter_documents, resolve_sources
from gpt_tui.engine.corpus_split import document_boundary, load_split
from gpt_tui.engine.corpus_tokens import tokenize_parts
from gpt_tui.engine.token_cache import tokens_cache_dir
from gpt_tui.engine.tokenizer import EOT_ID, encode
from gpt_tui.errors import Notice, UserError
from textgen import sample_text

ROOT = Path(__file__).resolve().parents[1]
TEXT_EXTENSIONS = (".txt", ".md", ".text")


def _joined(texts: list[str]) -> list[int]:
    ids: list[int] = []
    for i, text in enumerate(texts):
        ids += ([EOT_ID] if i else []) + encode(text)
    return ids


def _library(root: Path, count: int) -> list[str]:
    """``count`` files in nested folders: text ones (three extensions) and others a folder leaves out.

    Returns the texts of the files a folder contributes, in the order it reads them (sorted relative paths).
    """
    kept: dict[str, str] = {}
    for i in range(count):
        folder = root / f"shelf{i % 4}" / (f"row{i % 3}" if i % 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        ext = (TEXT_EXTENSIONS + (".rst", ".py"))[i % 5]
        name = f"{'.' if i == 7 else ''}book{i:03d}{ext}"  # one hidden file
        text = sample_text(5 + i % 17, seed=i)
        (folder / name).write_text(text, encoding="utf-8")
        if ext in TEXT_EXTENSIONS and not name.startswith("."):
            kept[(folder / name).relative_to(root).as_posix()] = text
    return [kept[key] for key in sorted(kept)]


def test_a_folder_of_200_files_gives_its_text_files_joined_by_one_separator(tmp_path) -> None:
    texts = _library(tmp_path / "lib", 200)
    binary = tmp_path / "lib" / "shelf2" / "cover.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(UserError, match=r"^1 file is not UTF-8 text: .*cover\.txt\. .*--skip-bad-files") as refused:
        resolve_sources([str(tmp_path / "lib")])
    assert "\n" not in str(refused.value)
    assert not tokens_cache_dir().exists()  # refused before anything was tokenized

    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        parts = resolve_sources([str(tmp_path / "lib")], skip_bad_files=True)
    assert [str(w.message) for w in said if issubclass(w.category, Notice)] == [
        f"skipped 1 file that is not UTF-8 text: {binary}."
    ]
    assert len(parts) == len(texts) == 119  # of 200: 80 .rst/.py and one hidden file left out; the binary one skipped
    tokens = tokenize_parts(parts, num_threads=2)
    expected = _joined(texts)
    assert tokens.stream.read(0, len(tokens.stream)).tolist() == expected
    assert len(tokens.stream) == sum(len(encode(t)) for t in texts) + len(texts) - 1
    assert tokens.documents == len(texts)
    assert all(tokens.stream.read(int(s) - 1, int(s)).tolist() == [EOT_ID] for s in tokens.doc_starts[1:])


def test_glob_chooses_the_files_of_a_folder_and_a_pattern_is_a_source(tmp_path) -> None:
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for name, text in (("a/x.md", "em dee"), ("a/deep/y.md", "why"), ("a/z.txt", "zed")):
        (tmp_path / name).write_text(text, encoding="utf-8")
    in_folder = resolve_sources([str(tmp_path / "a")], glob="*.md")
    assert [Path(p.label).name for p in in_folder] == ["y.md", "x.md"]  # deep/y.md sorts before x.md
    by_pattern = resolve_sources([str(tmp_path / "a" / "**" / "*.md")])
    assert sorted(Path(p.label).name for p in by_pattern) == ["x.md", "y.md"]
    with pytest.raises(UserError, match=r"^The pattern .*\*\.csv matches no files"):
        resolve_sources([str(tmp_path / "a" / "*.csv")])


def _records(n: int) -> list[str]:
    return [sample_text(8 + i, seed=100 + i) + ' with "quotes", commas\nand a new line' for i in range(n)]


def test_jsonl_json_csv_and_parquet_give_the_tokens_of_the_same_text_in_files(tmp_path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    texts = _records(6)
    folder = tmp_path / "texts"
    folder.mkdir()
    for i, text in enumerate(texts):
        (folder / f"{i:02d}.txt").write_text(text, encoding="utf-8")
    (tmp_path / "d.jsonl").write_text(
        "\n".join(json.dumps({"id": i, "body": t}) for i, t in enumerate(texts)) + "\n\n", encoding="utf-8"
    )
    (tmp_path / "d.json").write_text(json.dumps([{"body": t} for t in texts]), encoding="utf-8")
    table = pa.table({"id": list(range(len(texts))), "body": texts})
    pa_csv.write_csv(table, tmp_path / "d.csv")
    pq.write_table(table, tmp_path / "d.parquet")

    expected = tokenize_parts(resolve_sources([str(folder)]))
    for name in ("d.jsonl", "d.json", "d.csv", "d.parquet"):
        parts = resolve_sources([str(tmp_path / name)], text_field="body")
        assert [p.kind for p in parts] == [name.split(".")[1]]
        assert list(iter_documents(parts[0])) == texts, name
        got = tokenize_parts(parts)
        assert got.stream.read(0, len(got.stream)).tolist() == expected.stream.read(0, len(expected.stream)).tolist()
        assert got.doc_starts.tolist() == expected.doc_starts.tolist(), name


_MAKE_HF_CACHE = r"""
import json, os, shutil, sys
from pathlib import Path
import datasets, pyarrow as pa, pyarrow.parquet as pq
datasets.disable_progress_bars()
home, texts = Path(sys.argv[1]), json.loads(sys.argv[2])
pq.write_table(pa.table({"story": texts}), home / "x.parquet")
built = datasets.load_dataset("parquet", data_files={"train": str(home / "x.parquet")}, split="train")
folder = Path(built.cache_files[0]["filename"]).parent
# the layout `datasets` keeps a hub dataset in once downloaded: NAMESPACE___NAME/CONFIG/VERSION/HASH
dest = home / "datasets" / "tester___tiny_stories" / "default" / "0.0.0" / folder.name
shutil.copytree(folder, dest)
for arrow in dest.glob("parquet-*.arrow"):
    arrow.rename(dest / arrow.name.replace("parquet-", "tiny_stories-"))
datasets.Dataset.from_dict({"story": texts}).save_to_disk(str(home / "saved"))
"""

_READ_HF = r"""
import json, sys
from gpt_tui.engine.corpus_parts import resolve_sources
from gpt_tui.engine.corpus_tokens import tokenize_parts
from gpt_tui.errors import UserError
out = {}
for source in sys.argv[1:]:
    try:
        parts = resolve_sources([source], text_field="story")
        tokens = tokenize_parts(parts)
        out[source] = {"ids": tokens.stream.read(0, len(tokens.stream)).tolist(), "kind": parts[0].kind,
                       "identity": parts[0].identity, "documents": tokens.documents}
    except UserError as exc:
        out[source] = {"error": str(exc)}
print(json.dumps(out))
"""


def test_a_hugging_face_dataset_loads_offline_from_the_local_cache(tmp_path) -> None:
    pytest.importorskip("datasets")
    home = tmp_path / "hf"
    home.mkdir()
    texts = _records(4)
    env = {**os.environ, "HF_HOME": str(home), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", _MAKE_HF_CACHE, str(home), json.dumps(texts)], env=env, check=True,
                   capture_output=True, timeout=120)
    sources = ["hf:tester/tiny_stories", "hf:tester/tiny_stories@validation", "hf:tester/not_fetched",
               f"hf:{home / 'saved'}", "hf:tester/tiny_stories:"]
    done = subprocess.run([sys.executable, "-c", _READ_HF, *sources], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    expected = _joined(texts)
    for source in (sources[0], sources[3]):
        assert got[source]["ids"] == expected and got[source]["documents"] == 4, source
        assert got[source]["kind"] == "hf" and got[source]["identity"], source
    assert got[sources[1]]["error"].startswith("Cannot load hf:tester/tiny_stories@validation: Unknown split")
    assert "not in the local dataset cache" in got[sources[2]]["error"]
    assert "datasets.load_dataset('tester/not_fetched')" in got[sources[2]]["error"]
    assert got[sources[4]]["error"].startswith("hf:tester/tiny_stories: is not a dataset name")
    assert all("\n" not in one.get("error", "") for one in got.values())


def _books(root: Path, sizes: list[int]) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    texts = [sample_text(n, seed=n) for n in sizes]
    for i, text in enumerate(texts):
        (root / f"{i:02d}.txt").write_text(text, encoding="utf-8")
    return texts


def test_several_documents_split_on_the_boundary_nearest_the_ratio(tmp_path) -> None:
    texts = _books(tmp_path / "books", [200, 150, 300, 100, 250, 120])
    split = load_split([str(tmp_path / "books")], train_ratio=0.7)
    tokens = tokenize_parts(resolve_sources([str(tmp_path / "books")]))
    n = len(tokens.stream)
    starts = tokens.doc_starts.tolist()
    nearest = min(range(1, len(starts)), key=lambda i: abs(starts[i] - 0.7 * n))
    assert document_boundary(tokens.doc_starts, n, 0.7) == nearest
    assert (split.train_documents, split.val_documents) == (nearest, len(texts) - nearest)
    assert split.train_tokens == starts[nearest] and split.train_tokens + split.val_tokens == n
    assert split.val.read(0, len(split.val)).tolist() == _joined(texts[nearest:])  # a whole document starts it
    assert split.train.read(split.train_tokens - 1, split.train_tokens).tolist() == [EOT_ID]


def test_one_document_splits_by_tokens_as_the_book_does(tmp_path) -> None:
    (tmp_path / "one.txt").write_text(sample_text(500, seed=3), encoding="utf-8")
    split = load_split([str(tmp_path / "one.txt")], train_ratio=0.9)
    n = len(encode(sample_text(500, seed=3)))
    assert (split.train_tokens, split.val_tokens) == (int(0.9 * n), n - int(0.9 * n))
    assert (split.train_documents, split.val_documents, split.held_out) == (1, 1, False)


def test_val_data_replaces_the_split(tmp_path) -> None:
    texts = _books(tmp_path / "books", [120, 80, 60])
    held = tmp_path / "held-out.txt"
    held.write_text(sample_text(90, seed=77), encoding="utf-8")
    split = load_split([str(tmp_path / "books")], train_ratio=0.5, val_data=[str(held)])
    assert split.held_out and (split.train_documents, split.val_documents) == (3, 1)
    assert split.train.read(0, len(split.train)).tolist() == _joined(texts)  # every training document trains
    assert split.val.read(0, len(split.val)).tolist() == encode(held.read_text(encoding="utf-8"))
    assert "validation (held-out set): " in split.summary()


def test_a_val_data_shorter_than_the_context_is_one_line(tmp_path) -> None:
    from gpt_tui.engine.split_loaders import split_loaders

    _books(tmp_path / "books", [300, 300])
    (tmp_path / "short.txt").write_text("Too short.", encoding="utf-8")
    split = load_split([str(tmp_path / "books")], train_ratio=0.9, val_data=[str(tmp_path / "short.txt")])
    with pytest.raises(UserError, match=r"^The held-out validation set \(--val-data\) has 3 tokens but needs at least "
                                        r"33 \(--context-length 32 \+ 1.*give a longer --val-data"):
        split_loaders(split, context_length=32, stride=32, batch_size=2, train_ratio=0.9)


def _no_half_written_cache() -> None:
    cache = tokens_cache_dir()
    left = sorted(p.name for p in cache.iterdir()) if cache.exists() else []
    assert not [name for name in left if not name.endswith((".json", ".u16"))], left  # no temporary file
    sidecars = {name.rsplit(".", 1)[0] for name in left if name.endswith(".json")}
    assert all(name.split(".")[0] in {s.split(".")[0] for s in sidecars} for name in left)


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], dict, str]]:
    (tmp / "empty").mkdir()
    (tmp / "notes").mkdir()
    (tmp / "notes" / "a.rst").write_text("not a default kind", encoding="utf-8")
    (tmp / "blank").mkdir()
    (tmp / "blank" / "a.txt").write_bytes(b"")
    (tmp / "blank" / "b.txt").write_bytes(b"")
    (tmp / "bad.jsonl").write_text('{"text": "fine"}\n{"text": "fine too"}\nnot json\n', encoding="utf-8")
    (tmp / "nofield.jsonl").write_text('{"text": "fine"}\n{"body": "x", "id": 2}\n', encoding="utf-8")
    (tmp / "number.jsonl").write_text('{"text": 5}\n', encoding="utf-8")
    (tmp / "object.json").write_text('{"text": "one object"}', encoding="utf-8")
    (tmp / "nofield.json").write_text('[{"text": "a"}, "just a string"]', encoding="utf-8")
    return {
        "empty folder": ([str(tmp / "empty")], {}, r"^Folder .*empty holds no files matching \*\.txt or \*\.md or "
                                                   r"\*\.text; add text files, or choose others with --glob"),
        "folder of other kinds": ([str(tmp / "notes")], {}, r"^Folder .*notes holds no files matching"),
        "folder of empty files": ([str(tmp / "blank")], {}, r"^The 2 files of .*blank are empty; give files with text\.$"),
        "glob matching nothing": ([str(tmp / "nowhere" / "*.txt")], {}, r"^The pattern .*\*\.txt matches no files"),
        "jsonl line not json": ([str(tmp / "bad.jsonl")], {}, r"^.*bad\.jsonl line 3 is not JSON \(Expecting value"),
        "jsonl line without the field": (
            [str(tmp / "nofield.jsonl")], {}, r'^.*nofield\.jsonl line 2 has no "text" field \(its fields: body, id\); '
            r"choose the field that holds the text with --text-field\."),
        "jsonl field not text": ([str(tmp / "number.jsonl")], {}, r'^.*number\.jsonl line 1: "text" holds a JSON int'),
        "json not an array": ([str(tmp / "object.json")], {}, r"^.*object\.json holds a JSON dict, not an array"),
        "json item not an object": ([str(tmp / "nofield.json")], {}, r"^.*nofield\.json item 2 is a JSON str"),
        "empty text field": ([str(tmp / "bad.jsonl")], {"text_field": ""}, r"^text-field must name"),
    }


BAD_INPUTS = (
    "empty folder", "folder of other kinds", "folder of empty files", "glob matching nothing", "jsonl line not json",
    "jsonl line without the field", "jsonl field not text", "json not an array", "json item not an object",
    "empty text field",
)


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_each_bad_input_is_one_line_and_caches_nothing_half_written(tmp_path, case) -> None:
    sources, options, message = _bad_inputs(tmp_path)[case]
    good = tmp_path / "good.txt"
    good.write_text(sample_text(50, seed=1), encoding="utf-8")
    with pytest.raises(UserError, match=message) as refused:
        tokenize_parts(resolve_sources([str(good), *sources], **options))
    assert "\n" not in str(refused.value)
    _no_half_written_cache()


def test_a_table_without_the_column_lists_the_columns_it_has(tmp_path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    table = pa.table({"title": ["a", "b"], "body": ["one", "two"]})
    pq.write_table(table, tmp_path / "t.parquet")
    pa_csv.write_csv(table, tmp_path / "t.csv")
    for name in ("t.parquet", "t.csv"):
        with pytest.raises(UserError, match=rf'^.*{name} has no column "text"; its columns are title, body\. '
                                            r"Choose one with --text-field\.$"):
            tokenize_parts(resolve_sources([str(tmp_path / name)]))
        _no_half_written_cache()
    nulls = pa.table({"text": ["one", None]})
    pq.write_table(nulls, tmp_path / "nulls.parquet")
    with pytest.raises(UserError, match=r'nulls\.parquet row 2 has no value in column "text"'):
        tokenize_parts(resolve_sources([str(tmp_path / "nulls.parquet")]))


def test_a_table_without_pyarrow_names_the_extra(tmp_path, monkeypatch) -> None:
    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if not installed
    with pytest.raises(UserError, match=r'^Reading .*t\.parquet needs pyarrow, which is not installed; '
                                        r'pip install "gpt-tui\[data\]" adds it\.$'):
        resolve_sources([str(tmp_path / "t.parquet")])


def test_an_hf_source_without_datasets_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)
    from gpt_tui.engine import hf_source

    hf_source.load_hf_split.cache_clear()
    with pytest.raises(UserError, match=r'^The dataset hf:roneneldan/TinyStories needs datasets, which is not '
                                        r'installed; pip install "gpt-tui\[data\]" adds it\.$'):
        resolve_sources(["hf:roneneldan/TinyStories"])


def test_a_run_trains_on_several_sources_and_reports_both_splits(tmp_path, corpus_and_init, capsys) -> None:
    from gpt_tui.cli import main
    from gpt_tui.engine.events import StartEvent
    from gpt_tui.engine.runs import CONFIG_FILE, read_metrics

    _, init = corpus_and_init
    texts = _books(tmp_path / "books", [150, 120, 130])
    (tmp_path / "extra.jsonl").write_text(json.dumps({"text": sample_text(140, seed=9)}) + "\n", encoding="utf-8")
    held = tmp_path / "held.txt"
    held.write_text(sample_text(100, seed=11), encoding="utf-8")
    run = tmp_path / "run"
    args = ["train", "--data", str(tmp_path / "books"), "--data", str(tmp_path / "extra.jsonl"), "--val-data", str(held),
            "--init-from", str(init), "--run-dir", str(run), "--context-length", "16", "--batch-size", "2",
            "--max-steps", "1", "--eval-iter", "1", "--sample-tokens", "0", "--device", "cpu", "--precision", "fp32"]
    assert main(args) == 0
    train_tokens = sum(len(encode(t)) for t in texts) + len(encode(sample_text(140, seed=9))) + 3
    val_tokens = len(encode(held.read_text(encoding="utf-8")))
    assert (f"training tokens: {train_tokens:,} in 4 documents, validation tokens: {val_tokens:,} in 1 document; "
            in capsys.readouterr().out)
    start = next(e for e in read_metrics(run)[0] if isinstance(e, StartEvent))
    assert (start.train_tokens, start.val_tokens, start.train_documents, start.val_documents) == (
        train_tokens, val_tokens, 4, 1)
    stored = json.loads((run / CONFIG_FILE).read_text(encoding="utf-8"))
    stored = stored.get("train_config", stored)
    assert stored["data"] == [str(tmp_path / "books"), str(tmp_path / "extra.jsonl")]
    assert stored["val_data"] == [str(held)]


def test_a_stored_single_corpus_string_still_loads_and_repeats_as_flags() -> None:
    from gpt_tui.engine.corpus_parts import source_list
    from gpt_tui.engine.train_options import TrainConfig, train_argv

    old = TrainConfig.from_dict({"data": "book.txt", "model": "tiny"})  # as runs stored it before --data repeated
    assert source_list(old.data) == ["book.txt"]
    old.validate()
    assert train_argv({"data": old.data}) == ["--data=book.txt"]
    new = TrainConfig.from_dict({"data": ["a/", "b.jsonl"], "val_data": ["held.txt"]})
    assert new.data == ("a/", "b.jsonl") and new.val_data == ("held.txt",)
    assert train_argv({"data": new.data, "val_data": new.val_data}) == ["--data=a/", "--data=b.jsonl", "--val-data=held.txt"]
