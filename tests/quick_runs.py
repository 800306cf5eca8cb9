"""Small pieces several test files share: a two-step CLI run, and a count of what the tokenizer encodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gpt_tui.cli import main
from gpt_tui.engine import corpus_encoding


def train_two_steps(corpus: Path, init: Path, run_dir: Path) -> None:
    """A finished two-step run of the test model in ``run_dir``, through the CLI."""
    args = [
        "train", "--data", str(corpus), "--init-from", str(init), "--run-dir", str(run_dir),
        "--context-length", "16", "--batch-size", "2", "--max-steps", "2", "--eval-iter", "1",
        "--sample-tokens", "0", "--device", "cpu", "--precision", "fp32", "--quiet",
    ]
    assert main(args) == 0


def count_encodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every chunk the tokenizer is asked to encode."""
    calls: list[str] = []
    real = corpus_encoding._encode_chunk

    def counting(text: str) -> np.ndarray:
        calls.append(text)
        return real(text)

    monkeypatch.setattr(corpus_encoding, "_encode_chunk", counting)
    return calls
