"""Values no command can use are refused up front, in one line that names the flag or the setting.

``train`` refuses a seed past 2**63 - 1 and NaN or infinite rates before any
run starts (also ``--detach``, which used to start a background run that then
stopped); ``eval`` refuses a batch count and a context length below one;
``generate`` says in one line, without a traceback, when stdout cannot be
written; and settings.toml's ``[keys]`` entries that Textual cannot bind get a
notice, as every other bad setting does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpt_tui import paths
from gpt_tui.cli import main
from pilot import new_app, screen_text, wait_until

REPO = Path(__file__).resolve().parents[1]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpt-tui: error:"), err
    return lines[0]


BAD_TRAIN_FLAGS = {
    "seed-2**70": (["--seed", str(2**70)], r"seed must be from 0 to 9223372036854775807, got 1180591620717411303424"),
    "seed-negative": (["--seed", "-1"], r"seed must be from 0 to 9223372036854775807, got -1"),
    "grad-clip-nan": (["--grad-clip", "nan"], r"grad-clip must be a finite number of 0 or more, got nan"),
    "weight-decay-nan": (["--weight-decay", "nan"], r"weight-decay must be a finite number, got nan"),
    "weight-decay-inf": (["--weight-decay", "inf"], r"weight-decay must be a finite number, got inf"),
    "lr-inf": (["--lr", "inf"], r"lr must be a finite number, got inf"),
    "min-lr-nan": (["--min-lr", "nan"], r"min-lr must be a finite number, got nan"),
}


@pytest.mark.parametrize("detach", [False, True], ids=["here", "detach"])
@pytest.mark.parametrize("flags, says", BAD_TRAIN_FLAGS.values(), ids=BAD_TRAIN_FLAGS.keys())
def test_train_refuses_a_bad_number_before_any_run_starts(flags, says, detach, tmp_path, capsys):
    import re

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("hello world " * 200, encoding="utf-8")
    argv = ["train", "--data", str(corpus), "--device", "cpu", "--quiet", *flags] + (["--detach"] if detach else [])
    assert main(argv) == 2
    line = _one_error_line(capsys)
    assert re.search(says, line), line
    runs = paths.runs_dir()
    assert not runs.exists() or not any(runs.iterdir())  # no run folder, no background process


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> tuple[Path, Path]:
    import torch

    from gpt_tui.engine.checkpoint import save_checkpoint
    from gpt_tui.engine.model import GPTConfig, GPTModel
    from textgen import sample_text

    root = tmp_path_factory.mktemp("weights")
    corpus = root / "corpus.txt"
    corpus.write_text(sample_text(400, seed=4), encoding="utf-8")
    torch.manual_seed(0)
    init = root / "init.safetensors"
    save_checkpoint(init, GPTModel(GPTConfig(context_length=16, emb_dim=16, n_layers=1, n_heads=2, drop_rate=0.0,
                                             tie_weights=True)))
    return corpus, init


BAD_EVAL_FLAGS = {
    "num-batches-0": (["--num-batches", "0"], "--num-batches"),
    "num-batches-negative": (["--num-batches", "-2"], "--num-batches"),
    "context-length-0": (["--context-length", "0"], "--context-length"),
}


@pytest.mark.parametrize("flags, names", BAD_EVAL_FLAGS.values(), ids=BAD_EVAL_FLAGS.keys())
def test_eval_refuses_counts_below_one(flags, names, tiny_weights, capsys):
    corpus, init = tiny_weights
    assert main(["eval", "--checkpoint", str(init), "--data", str(corpus), "--device", "cpu", *flags]) == 2
    line = _one_error_line(capsys)
    assert names in line, line


@pytest.mark.parametrize("where, says", [("/dev/full", "No space left on device"), ("closed", "stdout is closed")])
def test_generate_says_in_one_line_when_stdout_cannot_be_written(where, says, tiny_weights):
    _corpus, init = tiny_weights
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(os.devnull if where == "closed" else where, "w") as sink:
        redirect = {"preexec_fn": lambda: os.close(1)} if where == "closed" else {"stdout": sink}
        done = subprocess.run(
            [sys.executable, "-m", "gpt_tui", "generate", "--checkpoint", str(init), "--prompt", "The painter",
             "--max-new-tokens", "3", "--device", "cpu"],
            stderr=subprocess.PIPE, env=env, timeout=120, **redirect,
        )
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpt-tui: error:") and says in lines[0], err


BAD_KEYS = {
    "unknown-modifier": ("chart.mode", "ctrl+nonsense+x"),
    "empty-keys": ("chart.mode", "f1,,,"),
    "nul": ("chart.mode", "ctrl+\x00"),
    "unknown-key": ("chart.mode", "ctrl+notakey"),
    "unknown-binding": ("chart.nonsense", "f9"),
}


@pytest.mark.anyio
@pytest.mark.parametrize("binding, keys", BAD_KEYS.values(), ids=BAD_KEYS.keys())
async def test_a_bad_key_in_settings_gets_a_notice_naming_it(binding, keys, fast_tui_settings):
    from dataclasses import replace

    from gpt_tui.tui.config import save_settings

    save_settings(replace(fast_tui_settings, keys={binding: keys, "repl.clear": "ctrl+k"}))
    app = new_app()
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await wait_until(pilot, lambda: any(binding in str(n.message) for n in app._notifications), timeout=10,
                         what="a notice naming the bad [keys] entry")
        notes = [str(n.message) for n in app._notifications if binding in str(n.message)]
        assert len(notes) == 1 and "[keys]" in notes[0]
        await wait_until(pilot, lambda: f"[keys] {binding}" in screen_text(app), timeout=10, what="it on screen")
        assert "\x00" not in notes[0]
        assert not any("repl.clear" in str(n.message) for n in app._notifications)  # the good entry still applies
        assert app._keymap.get("repl.clear") == "ctrl+k"


def test_a_corpus_refused_at_start_prints_its_error_alone(tmp_path, capsys) -> None:
    """The run's settings line belongs to a run that starts; a refused corpus is one error line and nothing else."""
    missing = tmp_path / "no-such-corpus.txt"
    code = main(["train", "--data", str(missing), "--max-steps", "1", "--device", "cpu", "--precision", "fp32",
                 "--run-dir", str(tmp_path / "run"), "--quiet"])
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == "", captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpt-tui: error: Corpus file not found"), captured.err
