"""`gpt-tui eval` computes in the precision the calibration chose for evaluation; `--precision` overrides it."""

from __future__ import annotations

import pytest
import torch

from calibration_fakes import BF16_FASTER, BF16_SLOWER
from calibration_fakes import craft_calibration as _craft
from gpt_tui.cli import main


def _eval(corpus, init, *extra: str) -> int:
    return main(["eval", "--checkpoint", str(init), "--data", str(corpus), "--context-length", "16", "--batch-size", "4",
                 "--num-batches", "2", "--device", "cpu", *extra])


@pytest.mark.parametrize("figures, extra, want, line", [
    (BF16_FASTER, (), torch.bfloat16, "evaluation bf16 (batch matmuls bf16 4.00x fp32 (cached))"),
    (BF16_FASTER, ("--precision", "fp32"), None, "evaluation fp32 (asked for)"),
    (BF16_SLOWER, (), None, "evaluation fp32 (batch matmuls bf16 0.90x fp32 (cached))"),
    (BF16_SLOWER, ("--precision", "bf16"), torch.bfloat16, "evaluation bf16 (asked for)"),
])
def test_eval_follows_the_calibration_and_the_flag_overrides_it(corpus_and_init, forward_dtypes, capsys, figures, extra, want, line):
    corpus, init = corpus_and_init
    _craft(figures)
    assert _eval(corpus, init, *extra) == 0
    captured = capsys.readouterr()
    assert forward_dtypes and set(forward_dtypes) == {want}, (forward_dtypes, captured.err)
    assert f"Precision: {line}" in captured.err
    assert [row.split()[0] for row in captured.out.splitlines()] == ["train:", "val:"]  # stdout stays the results


def test_eval_refuses_an_unknown_precision(corpus_and_init, capsys):
    corpus, init = corpus_and_init
    with pytest.raises(SystemExit) as exit_info:
        _eval(corpus, init, "--precision", "fp8")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'fp8'" in err and "auto" in err and "bf16" in err
