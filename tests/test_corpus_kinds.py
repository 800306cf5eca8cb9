"""Only a regular file is a corpus, and a checkpoint's stored corpus is read only where the run was trained.

A FIFO or a device would block or never end, so each is refused by kind
before it is read; these run in a subprocess with a timeout, so a hang fails
the test instead of stalling the suite. A /proc file says it is empty (size 0)
and is not. A checkpoint from another folder names its corpus, which is read
only once the user names it too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from gpt_tui.cli import main
from gpt_tui.engine.checkpoint import latest_checkpoint
from gpt_tui.engine.token_cache import tokenize_corpus
from gpt_tui.engine.tokenizer import decode
from quick_runs import train_two_steps

ROOT = Path(__file__).resolve().parents[1]
# Far more than a refusal takes (the train command imports torch first); a read of /dev/zero runs past it.
HANG_LIMIT_S = {"-c": 20, "-m": 45}
TOKENIZE = (
    "import sys\n"
    "from gpt_tui.engine.token_cache import tokenize_corpus\n"
    "from gpt_tui.errors import UserError\n"
    "try:\n"
    "    tokenize_corpus(sys.argv[1])\n"
    "except UserError as exc:\n"
    "    print(exc, file=sys.stderr)\n"
    "    sys.exit(2)\n"
)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=HANG_LIMIT_S[args[0]],
        stdin=subprocess.DEVNULL,
    )


def _fifo(tmp_path: Path) -> str:
    path = tmp_path / "corpus.fifo"
    os.mkfifo(path)
    return str(path)


@pytest.mark.parametrize(
    ("make", "kind"),
    [(_fifo, "a FIFO"), (lambda _: "/dev/zero", "a character device"), (lambda _: "/dev/urandom", "a character device")],
    ids=["fifo", "dev-zero", "dev-urandom"],
)
def test_a_pipe_or_device_is_refused_by_kind_not_read(make, kind, tmp_path) -> None:
    path = make(tmp_path)
    done = _run(["-c", TOKENIZE, path], tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"Corpus {path} is {kind}{' (named pipe)' if 'FIFO' in kind else ''}, not a regular file; give a text file."


def test_the_train_command_refuses_a_fifo_in_one_line(tmp_path) -> None:
    fifo = _fifo(tmp_path)
    done = _run(["-m", "gpt_tui", "train", "--data", fifo, "--device", "cpu", "--quiet"], tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0] == f"gpt-tui: error: Corpus {fifo} is a FIFO (named pipe), not a regular file; give a text file."


def test_a_proc_file_is_read_as_a_stream_not_called_empty() -> None:
    tokens = tokenize_corpus("/proc/self/status")  # st_size 0, yet it holds text
    assert len(tokens) > 10 and decode(tokens.tolist()).startswith("Name:")



def _store_corpus(run_dir: Path, data: str) -> None:
    """Rewrite the run's newest checkpoint so that its training config names ``data`` as the corpus."""
    path = latest_checkpoint(run_dir)
    with safe_open(str(path), "pt") as fh:
        metadata = fh.metadata()
    header = json.loads(metadata["gpt_tui"])
    header["train_state"]["train_config"]["data"] = data
    tensors = load_file(str(path))
    save_file(tensors, str(path), metadata={**metadata, "gpt_tui": json.dumps(header)})


def _run_naming_another_file(corpus_and_init, tmp_path: Path, run_dir: Path) -> Path:
    """A finished two-step run in ``run_dir`` whose checkpoint names another readable file as its corpus (returned)."""
    corpus, init = corpus_and_init
    secret = tmp_path / "secret.txt"
    secret.write_text(corpus.read_text(encoding="utf-8"), encoding="utf-8")  # any readable file: /etc/passwd
    train_two_steps(corpus, init, run_dir)
    _store_corpus(run_dir, str(secret))
    return secret


def test_a_checkpoint_naming_a_device_as_its_corpus_is_refused_not_hung(corpus_and_init, tmp_path, capsys) -> None:
    corpus, init = corpus_and_init
    run_dir = tmp_path / "run"
    train_two_steps(corpus, init, run_dir)
    _store_corpus(run_dir, "/dev/zero")
    done = _run(["-m", "gpt_tui", "train", "--resume", str(run_dir), "--max-steps", "3", "--quiet"], tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "/dev/zero is a character device, not a regular file" in lines[0]


def test_a_stored_corpus_from_another_folder_is_named_and_needs_data_to_be_read(corpus_and_init, tmp_path, capsys) -> None:
    run_dir = tmp_path / "run"
    secret = _run_naming_another_file(corpus_and_init, tmp_path, run_dir)
    shared = tmp_path / "shared"
    shutil.copytree(run_dir, shared)  # a run folder someone handed over
    capsys.readouterr()
    assert main(["train", "--resume", str(shared), "--max-steps", "3", "--quiet"]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpt-tui: error: ") and "Traceback" not in err, err
    assert str(secret) in lines[0] and f"--data {secret}" in lines[0]
    before = latest_checkpoint(shared)
    assert before.name.endswith("00000002.safetensors")  # refused before it trained a step
    assert main(["train", "--resume", str(shared), "--max-steps", "3", "--quiet", "--data", str(secret)]) == 0
    assert latest_checkpoint(shared).name.endswith("00000003.safetensors")
    # where it was trained, the stored corpus is its own and is used as before
    assert main(["train", "--resume", str(run_dir), "--max-steps", "3", "--quiet"]) == 0
    assert latest_checkpoint(run_dir).name.endswith("00000003.safetensors")


def test_eval_reads_a_stored_corpus_only_in_the_run_folder_it_was_trained_in(corpus_and_init, tmp_path, capsys) -> None:
    run_dir = tmp_path / "run"
    secret = _run_naming_another_file(corpus_and_init, tmp_path, run_dir)
    lone = tmp_path / "lone.safetensors"
    shutil.copy(latest_checkpoint(run_dir), lone)  # a checkpoint file someone handed over
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(lone), "--device", "cpu", "--num-batches", "1"]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"--data {secret}" in lines[0] and "score it" in lines[0], err
    assert main(["eval", "--checkpoint", str(lone), "--device", "cpu", "--num-batches", "1", "--data", str(secret)]) == 0
    assert main(["eval", "--checkpoint", str(latest_checkpoint(run_dir)), "--device", "cpu", "--num-batches", "1"]) == 0
    assert "val:" in capsys.readouterr().out


@pytest.mark.anyio
async def test_the_app_asks_before_continuing_a_shared_run_on_the_corpus_it_names(
    corpus_and_init, fast_tui_settings, tmp_path
) -> None:
    from gpt_tui import paths
    from gpt_tui.tui.dialogs import ConfirmDialog
    from pilot import new_app, press_while_busy, screen_text, wait_until

    trained = tmp_path / "trained"
    secret = _run_naming_another_file(corpus_and_init, tmp_path, trained)
    shared = paths.runs_dir() / "shared-run"
    shutil.copytree(trained, shared)  # a run folder someone handed over, put with the user's runs
    app = new_app(run_dir=str(shared))
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_until(pilot, lambda: app.model_source.kind == "loaded", what="the shared run's checkpoint")
        await press_while_busy(pilot, "f5")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog) and "Read this corpus?" in screen_text(app),
                         what="the question")
        assert str(secret) in app.screen.question
        assert latest_checkpoint(shared).name.endswith("00000002.safetensors")  # nothing read or trained yet
        await press_while_busy(pilot, "y")
        await wait_until(pilot, lambda: app.progress.state == "running" and app.progress.step >= 3, what="training on it")
        await press_while_busy(pilot, "f6")
        await wait_until(pilot, lambda: app.progress.state == "stopped" and app._training_worker.is_finished, what="the stop")
    assert app.progress.run_dir == str(shared)


def test_a_detached_resume_of_a_shared_run_is_refused_in_the_terminal(corpus_and_init, tmp_path, capsys) -> None:
    run_dir = tmp_path / "run"
    secret = _run_naming_another_file(corpus_and_init, tmp_path, run_dir)
    shared = tmp_path / "shared"
    shutil.copytree(run_dir, shared)
    capsys.readouterr()
    assert main(["train", "--detach", "--resume", str(shared), "--max-steps", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--data {secret}" in err[0], err
    assert not list((shared / "checkpoints").glob("step-00000003*")) and not (shared / "train.log").exists()
