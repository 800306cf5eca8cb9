"""`gpt-tui eval --hellaswag` scores in the precision eval's loss path uses: the calibration's choice, or --precision."""

from __future__ import annotations

import json

import pytest
import torch

from calibration_fakes import BF16_FASTER, BF16_SLOWER
from calibration_fakes import craft_calibration as _craft
from gpt_tui.cli import main

ITEMS = [
    {"ctx": "A man is sitting on a roof. he", "label": 3,
     "endings": ["is using wrap to wrap skis.", "is ripping tiles off.", "holds a cube.", "starts pulling up roofing."]},
    {"ctx": "The dog runs across the field", "label": 0,
     "endings": ["chasing a ball.", "and sleeps.", "to fetch the newspaper.", "."]},
]


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
