"""`gpt-tui eval --hellaswag` scores in the precision eval's loss path uses: the calibration's choice, or --precision."""

from __future__ import annotations

import json

import pytest
import torch

from gpt_tui.cli import main
from gpt_tui.engine import calibration as cal
from gpt_tui.engine.model import GPTModel

BF16_FASTER = {"fp32_gflops": 100.0, "bf16_gflops": 400.0, "fp32_row_gbps": 20.0, "bf16_row_gbps": 8.0}
BF16_SLOWER = {"fp32_gflops": 100.0, "bf16_gflops": 90.0, "fp32_row_gbps": 10.0, "bf16_row_gbps": 9.0}
ITEMS = [
    {"ctx": "A man is sitting on a roof. he", "label": 3,
     "endings": ["is using wrap to wrap skis.", "is ripping tiles off.", "holds a cube.", "starts pulling up roofing."]},
    {"ctx": "The dog runs across the field", "label": 0,
     "endings": ["chasing a ball.", "and sleeps.", "to fetch the newspaper.", "."]},
]


def _craft(figures: dict[str, float]) -> None:
    """A calibration cache for this machine, so ``auto`` reads a choice instead of measuring one."""
    path = cal.cache_dir() / cal.CALIBRATION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"format": 1, "machines": {cal.machine_key(): figures}}), encoding="utf-8")


@pytest.fixture
def forward_dtypes(monkeypatch):
    """The autocast dtype each forward pass ran under (None: plain fp32); a calibration that measures fails the test."""
    seen: list[torch.dtype | None] = []
    forward = GPTModel.forward

    def recording(self, *args, **kwargs):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return forward(self, *args, **kwargs)

    def no_measure() -> cal.Calibration:
        raise AssertionError("the calibration measured instead of reading the crafted cache")

    monkeypatch.setattr(GPTModel, "forward", recording)
    monkeypatch.setattr(cal, "measure", no_measure)
    monkeypatch.setattr(cal, "_memo", {})
    return seen


@pytest.mark.parametrize("figures, extra, want, line", [
    (BF16_FASTER, (), torch.bfloat16, "evaluation bf16 (batch matmuls bf16 4.00x fp32 (cached))"),
    (BF16_FASTER, ("--precision", "fp32"), None, "evaluation fp32 (asked for)"),
    (BF16_SLOWER, (), None, "evaluation fp32 (batch matmuls bf16 0.90x fp32 (cached))"),
    (BF16_SLOWER, ("--precision", "bf16"), torch.bfloat16, "evaluation bf16 (asked for)"),
])
def test_hellaswag_follows_evals_precision(corpus_and_init, tmp_path, forward_dtypes, capsys, figures, extra, want, line):
    _, init = corpus_and_init
    items = tmp_path / "hellaswag_val.jsonl"
    items.write_text("".join(json.dumps(item) + "\n" for item in ITEMS), encoding="utf-8")
    _craft(figures)
    assert main(["eval", "--checkpoint", str(init), "--hellaswag", str(items), "--device", "cpu", *extra]) == 0
    captured = capsys.readouterr()
    assert len(forward_dtypes) == len(ITEMS) and set(forward_dtypes) == {want}, (forward_dtypes, captured.err)
    assert f"Precision: {line}" in captured.err
    assert "HellaSwag (hellaswag_val.jsonl): 2 items" in captured.out
