"""`--precision auto` follows the cached calibration per phase; an explicit precision overrides it; a bad cache is re-measured."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from gpt_tui.cli import main
from gpt_tui.engine import calibration as cal
from gpt_tui.engine.model import GPTConfig, GPTModel
from gpt_tui.engine.precision import autocast_for, prepare_for_inference, resolve_precision
from gpt_tui.errors import Notice

CPU = torch.device("cpu")
# bf16 4x fp32 at batch shapes but slower per decoded row; and the other way round
FAST_BATCH_SLOW_ROW = {"fp32_gflops": 100.0, "bf16_gflops": 400.0, "fp32_row_gbps": 20.0, "bf16_row_gbps": 8.0}
SLOW_BATCH_FAST_ROW = {"fp32_gflops": 100.0, "bf16_gflops": 90.0, "fp32_row_gbps": 10.0, "bf16_row_gbps": 9.0}


def _craft(figures: dict[str, float] | str) -> None:
    path = cal.cache_dir() / cal.CALIBRATION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(figures, str):
        path.write_text(figures, encoding="utf-8")
    else:
        path.write_text(json.dumps({"format": 1, "machines": {cal.machine_key(): figures}}), encoding="utf-8")


@pytest.fixture
def no_measuring(monkeypatch):
    """Fail the test if the calibration measures instead of reading the cache; record the calls otherwise."""
    calls: list[int] = []

    def fake_measure() -> cal.Calibration:
        calls.append(1)
        return cal.Calibration(**SLOW_BATCH_FAST_ROW)

    monkeypatch.setattr(cal, "measure", fake_measure)
    return calls


@pytest.mark.parametrize("figures, batch, row", [(FAST_BATCH_SLOW_ROW, "bf16", "fp32"), (SLOW_BATCH_FAST_ROW, "fp32", "bf16")])
def test_auto_follows_the_cached_choice_per_phase(no_measuring, figures, batch, row):
    _craft(figures)
    for phase in ("training", "evaluation", "prefill"):
        assert resolve_precision(CPU, "auto", phase) == batch
    assert resolve_precision(CPU, "auto", "decoding") == row
    model = GPTModel(GPTConfig(vocab_size=64, context_length=8, emb_dim=16, n_layers=1, n_heads=2))
    want = torch.bfloat16 if row == "bf16" else torch.float32
    assert prepare_for_inference(model, "auto").tok_emb.weight.dtype == want
    assert isinstance(autocast_for(CPU, "auto"), torch.autocast) == (batch == "bf16")
    assert no_measuring == []  # read from the file, not measured


def test_an_explicit_precision_overrides_the_calibration(no_measuring):
    _craft(FAST_BATCH_SLOW_ROW)
    assert resolve_precision(CPU, "fp32", "training") == "fp32"
    assert resolve_precision(CPU, "bf16", "decoding") == "bf16"
    model = GPTModel(GPTConfig(vocab_size=64, context_length=8, emb_dim=16, n_layers=1, n_heads=2))
    assert prepare_for_inference(model, "bf16").tok_emb.weight.dtype == torch.bfloat16


@pytest.mark.parametrize("content", [
    "{not json", "[]", json.dumps({"format": 1, "machines": []}), "\xff\xfe",
    "MACHINE:" + json.dumps({"fp32_gflops": -1, "bf16_gflops": "fast", "fp32_row_gbps": 1, "bf16_row_gbps": 1}),
])
def test_a_corrupt_cache_is_measured_again_with_a_note(no_measuring, content):
    if content.startswith("MACHINE:"):
        content = json.dumps({"format": 1, "machines": {cal.machine_key(): json.loads(content[8:])}})
    _craft(content)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resolve_precision(CPU, "auto", "decoding") == "bf16"  # SLOW_BATCH_FAST_ROW, measured
    assert no_measuring == [1]
    notes = [str(w.message) for w in caught if issubclass(w.category, Notice)]
    assert len(notes) == 1 and "measuring again" in notes[0]
    stored = json.loads((cal.cache_dir() / cal.CALIBRATION_FILE).read_text(encoding="utf-8"))
    assert stored["machines"][cal.machine_key()] == SLOW_BATCH_FAST_ROW  # replaced by the new figures


def test_a_missing_cache_is_measured_once_and_kept(no_measuring):
    assert resolve_precision(CPU, "auto", "training") == "fp32"
    assert resolve_precision(CPU, "auto", "decoding") == "bf16"
    assert no_measuring == [1]
    assert (cal.cache_dir() / cal.CALIBRATION_FILE).exists()


def test_doctor_shows_flags_figures_and_the_choice_per_phase(no_measuring, capsys):
    _craft(FAST_BATCH_SLOW_ROW)
    assert main(["doctor", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "CPU flags that matter" in out and "400.0 GFLOP/s" in out and "cached" in out
    assert "training    bf16" in out and "decoding    fp32" in out
    assert no_measuring == []
    assert main(["doctor", "--device", "cpu", "--recalibrate"]) == 0
    out = capsys.readouterr().out
    assert no_measuring == [1] and "measured" in out and "decoding    bf16" in out


def test_the_training_start_line_says_each_phase_precision_and_why(no_measuring, corpus_and_init, tmp_path, capsys):
    corpus, init = corpus_and_init
    _craft(FAST_BATCH_SLOW_ROW)
    def args(run: str, precision: str) -> list[str]:
        return ["train", "--data", str(corpus), "--init-from", str(init), "--run-dir", str(tmp_path / run),
                "--context-length", "16", "--batch-size", "2", "--max-steps", "1", "--eval-iter", "1",
                "--sample-tokens", "0", "--device", "cpu", "--precision", precision]

    assert main(args("auto", "auto")) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("Precision: "))
    assert "training bf16 (batch matmuls bf16 4.00x fp32 (cached))" in line and "evaluation bf16" in line
    assert main(args("fp32", "fp32")) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("Precision: "))
    assert line == "Precision: training fp32 (asked for); evaluation fp32 (asked for)"


def test_the_measurement_gives_positive_figures_for_each_format():
    figures = cal.measure(rounds=1)
    values = (figures.fp32_gflops, figures.bf16_gflops, figures.fp32_row_gbps, figures.bf16_row_gbps)
    assert all(0 < v < 1e9 for v in values) and figures.source == "measured"
    assert {figures.choice(phase) for phase in cal.PHASES} <= {"bf16", "fp32"}
