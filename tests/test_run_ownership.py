"""A run directory belongs to one run, and a run writes nothing through a symbolic link.

A new run refuses a folder another run used (and leaves it as it was); two
runs started in the same second get folders of their own; pruning removes
only the run's own checkpoints; a lone checkpoint file continues in a new
folder, never in the one its header remembers; links planted where a run,
a background launch or an export writes are never followed; temporary files
that killed tokenizations left in the token cache are swept.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from gpt_tui import paths
from gpt_tui.cli import main
from gpt_tui.engine import runs
from gpt_tui.engine.checkpoint import list_checkpoints, load_checkpoint
from gpt_tui.engine.data import tokenize_corpus, tokens_cache_dir
from gpt_tui.engine.events import StepEvent
from gpt_tui.engine.runs import read_metrics


def _flags(corpus: Path, steps: int, *extra: str) -> list[str]:
    return [
        "--data", str(corpus), "--context-length", "16", "--batch-size", "2", "--max-steps", str(steps),
        "--eval-freq", "5", "--eval-iter", "1", "--sample-tokens", "0", "--device", "cpu", "--precision", "fp32",
        "--quiet", *extra,
    ]


def _train(corpus: Path, init: Path, run_dir: Path, steps: int, *extra: str) -> None:
    assert main(["train", "--init-from", str(init), "--run-dir", str(run_dir), *_flags(corpus, steps, *extra)]) == 0


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (links not followed) and its bytes."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            found[str(path.relative_to(folder))] = b"link:" + os.readlink(path).encode()
        elif path.is_file():
            found[str(path.relative_to(folder))] = path.read_bytes()
    return found


def _steps(run_dir: Path) -> list[int]:
    events, _ = read_metrics(run_dir)
    return [e.step for e in events if isinstance(e, StepEvent)]


# ----- a used run directory -----
def test_a_new_run_refuses_a_used_run_directory_and_leaves_it_as_it_was(corpus_and_init, tmp_path, capsys):
    corpus, init = corpus_and_init
    run_dir = tmp_path / "used"
    _train(corpus, init, run_dir, 4, "--checkpoint-every", "1")
    before = _snapshot(run_dir)
    assert [p.name for p in list_checkpoints(run_dir)] == ["step-00000002.safetensors", "step-00000003.safetensors",
                                                           "step-00000004.safetensors"]
    capsys.readouterr()

    rc = main(["train", "--init-from", str(init), "--run-dir", str(run_dir), *_flags(corpus, 2, "--checkpoint-every", "1")])

    err = capsys.readouterr().err
    assert rc == 2
    assert "already holds a run" in err and f"--resume {run_dir}" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    after = _snapshot(run_dir)
    for name in ("config.json", "metrics.jsonl", *(f"checkpoints/{p.name}" for p in list_checkpoints(run_dir))):
        assert after[name] == before[name], name
    assert sorted(k for k in after if k.startswith("checkpoints/")) == sorted(k for k in before if k.startswith("checkpoints/"))


def test_pruning_keeps_other_runs_checkpoints_and_user_files(corpus_and_init, tmp_path):
    corpus, init = corpus_and_init
    other, run_dir = tmp_path / "other", tmp_path / "mine"
    _train(corpus, init, other, 1)
    _train(corpus, init, run_dir, 2)
    foreign = run_dir / "checkpoints" / "step-00000001.safetensors"
    shutil.copy(other / "checkpoints" / "step-00000001.safetensors", foreign)  # another run's, lowest step
    notes = run_dir / "checkpoints" / "notes.txt"
    notes.write_text("mine, not gpt-tui's\n", encoding="utf-8")
    foreign_bytes = foreign.read_bytes()

    assert main(["train", "--resume", str(run_dir), *_flags(corpus, 7, "--checkpoint-every", "1")]) == 0

    names = [p.name for p in list_checkpoints(run_dir)]
    assert names == ["step-00000001.safetensors", "step-00000005.safetensors", "step-00000006.safetensors",
                     "step-00000007.safetensors"]
    assert foreign.read_bytes() == foreign_bytes and notes.read_text(encoding="utf-8") == "mine, not gpt-tui's\n"


def test_runs_started_in_the_same_second_get_folders_of_their_own(monkeypatch):
    monkeypatch.setattr(runs.time, "strftime", lambda _fmt, *_a: "20260101-120000")
    made: list[Path] = []
    barrier = threading.Barrier(6)

    def start() -> None:
        barrier.wait()
        made.append(runs.new_run_dir("tiny"))

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    made.append(runs.new_run_dir("tiny"))
    assert len(set(made)) == 7
    assert all(p.is_dir() and p.parent == paths.runs_dir() for p in made)


# ----- a lone checkpoint file -----
def test_resuming_a_lone_checkpoint_never_writes_into_the_run_its_header_names(corpus_and_init, tmp_path):
    corpus, init = corpus_and_init
    original = tmp_path / "original"
    _train(corpus, init, original, 2)
    lone = tmp_path / "backup.safetensors"
    shutil.copy(list_checkpoints(original)[-1], lone)
    before = _snapshot(original)

    assert main(["train", "--resume", str(lone), *_flags(corpus, 4)]) == 0  # a new run directory
    assert main(["train", "--resume", str(lone), "--run-dir", str(tmp_path / "chosen"), *_flags(corpus, 3)]) == 0

    assert _snapshot(original) == before
    (new,) = list(paths.runs_dir().iterdir())
    for continued, last in ((new, 4), (tmp_path / "chosen", 3)):
        assert _steps(continued) == list(range(3, last + 1))
        assert load_checkpoint(list_checkpoints(continued)[-1]).train_state["step"] == last
        assert runs.read_status(continued)["state"] == "finished"


def _wait(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_background_run_refuses_a_used_folder_and_resumes_a_lone_file_in_a_new_one(corpus_and_init, tmp_path, capsys,
                                                                                    monkeypatch):
    corpus, init = corpus_and_init
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    original = tmp_path / "original"
    _train(corpus, init, original, 2)
    before = _snapshot(original)
    capsys.readouterr()

    assert main(["train", "--detach", "--init-from", str(init), "--run-dir", str(original), *_flags(corpus, 3)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert _snapshot(original) == before and not (original / "train.log").exists()

    lone = tmp_path / "backup.safetensors"
    shutil.copy(list_checkpoints(original)[-1], lone)
    assert main(["train", "--detach", "--resume", str(lone), *_flags(corpus, 4)]) == 0
    (new,) = list(paths.runs_dir().iterdir())
    _wait(lambda: runs.read_run(new).status not in ("starting", "running"))
    assert runs.read_run(new).status == "finished" and _steps(new) == [3, 4]
    assert _snapshot(original) == before


# ----- symbolic links planted in a run directory -----
PLANTED_IN_A_RUN = [
    ("run.lock", "file"),
    (".config.json.tmp", "file"),
    ("metrics.jsonl.tmp", "file"),
    ("control", "dir"),
    ("checkpoints", "dir"),
]


def _victim(tmp_path: Path, kind: str) -> Path:
    """Something of the user's outside the run, which a link in the run points at."""
    if kind == "file":
        victim = tmp_path / "victim.txt"
        victim.write_text("precious\n", encoding="utf-8")
        return victim
    victim = tmp_path / "victim"
    victim.mkdir()
    for name in ("stop", "pause", "step-00000001.safetensors", "step-00000099.safetensors"):
        (victim / name).write_text(f"{name} is the user's\n", encoding="utf-8")
    return victim


def _victim_state(victim: Path) -> dict[str, bytes]:
    return _snapshot(victim) if victim.is_dir() else {victim.name: victim.read_bytes()}


@pytest.mark.parametrize(("name", "kind"), PLANTED_IN_A_RUN)
def test_a_resumed_run_never_writes_through_a_planted_link(corpus_and_init, tmp_path, capsys, name, kind):
    corpus, init = corpus_and_init
    run_dir = tmp_path / "run"
    _train(corpus, init, run_dir, 2)
    victim = _victim(tmp_path, kind)
    if name == "checkpoints":  # the run's own checkpoint stays readable through the link
        shutil.copy(list_checkpoints(run_dir)[-1], victim / "step-00000002.safetensors")
        shutil.rmtree(run_dir / name)
    elif name == "run.lock":
        (run_dir / name).unlink()
    before = _victim_state(victim)
    (run_dir / name).symlink_to(victim)
    capsys.readouterr()

    rc = main(["train", "--resume", str(run_dir), *_flags(corpus, 4)])

    err = capsys.readouterr().err
    assert _victim_state(victim) == before
    assert rc in (0, 2) and "Traceback" not in err
    if rc == 2:
        assert f"{run_dir / name} is a symbolic link" in err
    else:
        assert _steps(run_dir)[-1] == 4


def test_a_new_run_never_appends_to_a_planted_metrics_link(corpus_and_init, tmp_path, capsys):
    corpus, init = corpus_and_init
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    victim = _victim(tmp_path, "file")
    (run_dir / "metrics.jsonl").symlink_to(victim)

    rc = main(["train", "--init-from", str(init), "--run-dir", str(run_dir), *_flags(corpus, 2)])

    assert rc == 2 and "already holds a run" in capsys.readouterr().err
    assert victim.read_text(encoding="utf-8") == "precious\n"


def test_status_file_is_never_written_through_a_planted_link(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    victim = _victim(tmp_path, "file")
    for name in (runs.STATUS_FILE, f".{runs.STATUS_FILE}.{os.getpid()}.tmp"):
        (run_dir / name).symlink_to(victim)
    runs.write_status(run_dir, "running", step=1)
    assert victim.read_text(encoding="utf-8") == "precious\n"
    assert runs.read_status(run_dir)["step"] == 1 and not (run_dir / runs.STATUS_FILE).is_symlink()


@pytest.mark.parametrize("name", ["train.log", "train.pid"])
def test_a_background_launch_never_writes_through_a_planted_link(tmp_path, name):
    from gpt_tui.engine.detach import start_detached, wait_until_running
    from gpt_tui.errors import UserError

    run_dir = tmp_path / "bg"
    run_dir.mkdir()
    victim = _victim(tmp_path, "file")
    (run_dir / name).symlink_to(victim)
    try:  # a run that fails at once: nothing is left training whichever way this goes
        run = start_detached(["--data", str(tmp_path / "missing.txt")], run_dir)
    except UserError as exc:
        assert f"{run_dir / name} is a symbolic link" in str(exc)
    else:
        with pytest.raises(UserError, match="Corpus file not found"):
            wait_until_running(run, timeout=120)
    assert victim.read_text(encoding="utf-8") == "precious\n"


def test_an_export_never_writes_through_a_planted_link(corpus_and_init, tmp_path):
    from gpt_tui.engine.weights import export_hf

    _corpus, init = corpus_and_init
    out = tmp_path / "export"
    out.mkdir()
    victim = _victim(tmp_path, "file")
    (out / "config.json").symlink_to(victim)
    export_hf(init, out)
    assert victim.read_text(encoding="utf-8") == "precious\n"
    assert (out / "config.json").is_file() and not (out / "config.json").is_symlink()
    assert (out / "model.safetensors").stat().st_size > 0


# ----- the token cache -----
def test_temporary_files_of_killed_tokenizations_are_swept(corpus_and_init):
    corpus, _init = corpus_and_init
    cache = tokens_cache_dir()
    cache.mkdir(parents=True)
    stale = cache / ".0123abcd.gpt2.u16.4242-deadbeef.tmp"
    stale.write_bytes(b"\0" * 64)
    hours_ago = time.time() - 2 * 3600
    os.utime(stale, (hours_ago, hours_ago))
    fresh = cache / ".4567ef.gpt2.u16.4343-cafe.tmp"  # another tokenization, writing right now
    fresh.write_bytes(b"\0" * 64)
    keep = cache / "notes.txt"
    keep.write_text("not a temporary file\n", encoding="utf-8")
    os.utime(keep, (hours_ago, hours_ago))

    tokens = tokenize_corpus(str(corpus))

    assert len(tokens) > 0
    assert not stale.exists() and fresh.exists() and keep.exists()
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp") and p != fresh]

