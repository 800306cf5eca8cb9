"""`gpt-tui eval` computes in the precision the calibration chose for evaluation; `--precision` overrides it."""

from __future__ import annotations

import json

import pytest
import torch

from gpt_tui.cli import main
from gpt_tui.engine import calibration as cal
from gpt_tui.engine.model import GPTModel

BF16_FASTER = {"fp32_gflops": 100.0, "bf16_gflops": 400.0, "fp32_row_gbps": 20.0, "bf16_row_gbps": 8.0}
BF16_SLOWER = {"fp32_gflops": 100.0, "bf16_gflops": 90.0, "fp32_row_gbps": 10.0, "bf16_row_gbps": 9.0}


def _craft(figures: dict[str, float]) -> None:
    path = cal.cache_dir() / cal.CALIBRATION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"format": 1, "machines": {cal.machine_key(): figures}}), encoding="utf-8")


@pytest.fixture
def forward_dtypes(monkeypatch):
    """The autocast dtype each forward pass of the model ran under (None: plain fp32); measuring would fail the test."""
    seen: list[torch.dtype | None] = []
    forward = GPTModel.forward

    def recording(self, *args, **kwargs):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return forward(self, *args, **kwargs)

    def no_measure() -> cal.Calibration:
        raise AssertionError("the calibration measured instead of reading the crafted cache")

    monkeypatch.setattr(GPTModel, "forward", recording)
    monkeypatch.setattr(cal, "measure", no_measure)
    monkeypatch.setattr(cal, "_memo", {})  # a folder name can come round again in the next test
    return seen


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
