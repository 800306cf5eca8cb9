"""A checkpoint that cannot be written for real (a full disk, a file-size limit) ends in one line, keeping the last one.

The kernel's own errors are produced, not faked: a file-size limit
(RLIMIT_FSIZE gives EFBIG) works for any user on Linux, and where user
namespaces are allowed a tiny tmpfs gives ENOSPC. safetensors' writer reports
them as its own exception type, which must still read as the disk message.
Also here: a checkpoint gets the mode the umask gives, like every other file of a run.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gpt_tui.engine.checkpoint import latest_checkpoint, load_checkpoint
from gpt_tui.engine.runs import CONFIG_FILE
from quick_runs import train_two_steps

ROOT = Path(__file__).resolve().parents[1]
RESUME = ["--max-steps", "4", "--checkpoint-every", "1", "--quiet"]
LIMITED = (  # the CLI under a file-size limit: a bigger write fails with EFBIG (Python ignores SIGXFSZ)
    "import resource, runpy, sys\n"
    "limit = int(sys.argv.pop(1))\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))\n"
    "sys.argv[0] = 'gpt-tui'\n"
    "runpy.run_module('gpt_tui', run_name='__main__')\n"
)
VERIFY = (  # the newest checkpoint of a run: its name, its digest, and that it loads
    "import hashlib, sys\n"
    "from gpt_tui.engine.checkpoint import latest_checkpoint, load_checkpoint\n"
    "path = latest_checkpoint(sys.argv[1])\n"
    "load_checkpoint(path)\n"
    "print(path.name, hashlib.sha256(path.read_bytes()).hexdigest())\n"
)


def _user_namespaces() -> bool:
    """Whether this user may mount a tmpfs in a mount namespace of its own (a private one: the host sees nothing)."""
    probe = ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k none /tmp"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}



def _newest(run_dir: Path) -> tuple[str, str]:
    path = latest_checkpoint(run_dir)
    load_checkpoint(path)
    return path.name, hashlib.sha256(path.read_bytes()).hexdigest()


def _file_size_limit(run_dir: Path, tmp_path: Path, resume: list[str]) -> tuple[subprocess.CompletedProcess, tuple[str, str]]:
    limit = latest_checkpoint(run_dir).stat().st_size // 2  # every other file of the run is far smaller
    done = subprocess.run(
        [sys.executable, "-c", LIMITED, str(limit), "train", "--resume", str(run_dir), *resume],
        env=_env(), capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    return done, _newest(run_dir)


def _tiny_tmpfs(run_dir: Path, tmp_path: Path, resume: list[str]) -> tuple[subprocess.CompletedProcess, tuple[str, str]]:
    """The run copied onto a tmpfs with room for half a checkpoint more, resumed there, then checked there."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    used = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())
    size_kib = (used + latest_checkpoint(run_dir).stat().st_size // 2) // 1024 + 64
    script = (
        'mount -t tmpfs -o size="$1"k none "$2" && cp -r "$3" "$2/run" && '
        '"$4" -m gpt_tui train --resume "$2/run" "${@:6}"; rc=$?; '
        '"$4" -c "$VERIFY" "$2/run" > "$5" && exit $rc'
    )
    verified = tmp_path / "verified.txt"  # outside the tmpfs, so it outlives the namespace
    done = subprocess.run(
        ["unshare", "-rm", "bash", "-c", script, "bash", str(size_kib), str(mount), str(run_dir), sys.executable,
         str(verified), *resume],
        env={**_env(), "VERIFY": VERIFY}, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert verified.exists(), done.stderr
    name, digest = verified.read_text().split()
    return done, (name, digest)


WAYS = [_file_size_limit] + ([_tiny_tmpfs] if _user_namespaces() else [])  # EFBIG everywhere; ENOSPC where allowed


@pytest.mark.parametrize("full", WAYS, ids=lambda f: f.__name__.strip("_"))
def test_a_real_write_failure_while_saving_is_one_line_and_the_last_checkpoint_stays(full, corpus_and_init, tmp_path):
    corpus, init = corpus_and_init
    run_dir = tmp_path / "run"
    train_two_steps(corpus, init, run_dir)
    before = _newest(run_dir)
    done, after = full(run_dir, tmp_path, [*RESUME, "--data", str(corpus)])  # the copy on a tmpfs is elsewhere
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr and "SafetensorError" not in done.stderr
    assert lines[0].startswith("gpt-tui: error: Could not save checkpoint ")
    assert lines[0].endswith(("File too large. The previous checkpoint is unchanged.",
                              "No space left on device. The previous checkpoint is unchanged.")), lines[0]
    assert after == before  # the newest checkpoint is still the one it had, byte for byte, and loads


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002], ids=oct)
def test_a_checkpoint_gets_the_mode_the_umask_gives(umask, corpus_and_init, tmp_path):
    corpus, init = corpus_and_init
    old = os.umask(umask)
    try:
        train_two_steps(corpus, init, tmp_path / "run")
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    checkpoint = latest_checkpoint(tmp_path / "run")
    assert stat.S_IMODE(checkpoint.stat().st_mode) == expected
    assert stat.S_IMODE((tmp_path / "run" / CONFIG_FILE).stat().st_mode) == expected
