import json
import subprocess
import sys

import pytest

from gpt_tui.cli import main
from textgen import sample_text


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(sample_text(1200, seed=2), encoding="utf-8")
    return path


@pytest.fixture
def trained_run(corpus, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(
        [
            "train", "--data", str(corpus), "--context-length", "32", "--batch-size", "4", "--epochs", "1",
            "--eval-freq", "3", "--eval-iter", "2", "--sample-tokens", "4", "--device", "cpu", "--precision", "fp32",
            "--run-dir", str(run_dir), "--quiet",
        ]
    )
    assert code == 0
    return run_dir, capsys.readouterr().out


def test_train_prints_the_chapter5_log_and_writes_the_run(trained_run):
    run_dir, out = trained_run
    assert "Ep 1 (Step 000000): Train loss" in out and "Ep 1 (Step 000003)" in out
    assert out.index("Training loss: ") < out.index("Validation loss: ") < out.index("Ep 1 (Step 000000)")  # the untrained model's
    assert "training tokens:" in out and "validation tokens:" in out
    assert "Every effort moves you" in out  # the epoch's sample
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {r["type"] for r in records} >= {"start", "step", "eval", "sample", "checkpoint", "done"}
    assert (run_dir / "config.json").exists()
    assert list((run_dir / "checkpoints").glob("step-*.safetensors"))


def test_generate_eval_and_runs_use_the_run(trained_run, capsys):
    run_dir, _ = trained_run
    assert main(["generate", "--checkpoint", str(run_dir), "--prompt", "The painter", "--max-new-tokens", "5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("The painter") and len(out.strip()) > len("The painter")
    assert main(["eval", "--checkpoint", str(run_dir), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.count("perplexity") == 2 and "train:" in out and "val:" in out
    assert main(["runs", "--dir", str(run_dir.parent)]) == 0
    out = capsys.readouterr().out
    assert "run" in out and "finished" in out


def test_resume_continues_a_finished_run_with_more_epochs(trained_run, capsys):
    run_dir, _ = trained_run
    assert main(["train", "--resume", str(run_dir), "--epochs", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "resuming at step" in out and "Ep 2" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "--model", "tiny", "--prompt", "hi", "--temperature", "-1"], "temperature"),
        (["generate", "--model", "tiny", "--prompt", "hi", "--top-k", "0"], "top_k"),
        (["generate", "--model", "tiny", "--prompt", "hi", "--top-p", "1.5"], "top_p"),
        (["generate", "--checkpoint", "/nonexistent/ckpt.safetensors", "--prompt", "hi"], "/nonexistent"),
        (["train", "--data", "/nonexistent/corpus.txt"], "corpus.txt"),
        (["train", "--model", "tiny", "--batch-size", "0"], "batch-size"),
        (["train", "--device", "cuda"], "cuda"),
        (["train", "--model", "nope"], "nope"),
    ],
)
def test_wrong_values_exit_non_zero_with_one_line(args, message, capsys):
    assert main(args) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("gpt-tui: error:") and message.lower() in err.lower()


def test_too_short_corpus_names_the_split(tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("Only a handful of words here, far too few to fill a window.", encoding="utf-8")
    assert main(["train", "--data", str(short), "--context-length", "32"]) != 0
    err = capsys.readouterr().err
    assert "split" in err and "tokens" in err and "Traceback" not in err


def test_console_entry_points():
    for cmd in ([sys.executable, "-m", "gpt_tui", "--help"], [sys.executable, "-m", "gpt_tui", "train", "--help"]):
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0
        assert "--" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "gpt_tui", "generate", "--model", "tiny", "--prompt", "x", "--top-p", "0"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "top_p" in result.stderr
