"""Training options the run could only fail on later are refused before it starts, in one line."""

from __future__ import annotations

import math

import pytest

from gpt_tui.cli import main
from gpt_tui.engine.sampling_config import MAX_NEW_TOKENS
from gpt_tui.engine.train_options import TrainConfig
from gpt_tui.errors import UserError


def test_sample_tokens_above_the_generation_limit_is_refused_before_training(corpus_and_init, tmp_path, capsys):
    corpus, init = corpus_and_init
    run_dir = tmp_path / "run"
    code = main([
        "train", "--init-from", str(init), "--data", str(corpus), "--context-length", "16", "--batch-size", "2",
        "--max-steps", "3", "--device", "cpu", "--precision", "fp32", "--run-dir", str(run_dir),
        "--sample-tokens", str(MAX_NEW_TOKENS + 1),
    ])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("gpt-tui: error: sample-tokens") and f"{MAX_NEW_TOKENS:,}" in err and err.count("\n") == 1
    assert not run_dir.exists()  # nothing trained, nothing written
    TrainConfig(sample_tokens=MAX_NEW_TOKENS).validate()  # the limit itself is fine


@pytest.mark.parametrize("minutes", [-1.0, math.nan, math.inf])
def test_checkpoint_minutes_must_be_a_finite_time_or_zero(minutes):
    with pytest.raises(UserError, match="checkpoint-minutes"):
        TrainConfig(checkpoint_minutes=minutes).validate()
    TrainConfig(checkpoint_minutes=0).validate()
