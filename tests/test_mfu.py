"""MFU and peak memory: the log's figures are nanoGPT's formula applied to the measured tokens/s."""

from __future__ import annotations

import json
import re
import resource

import pytest
import torch

from gpt_tui.cli import main
from gpt_tui.engine import events as ev
from gpt_tui.engine import mfu
from gpt_tui.engine.model import GPTConfig, GPTModel
from gpt_tui.engine.runs import METRICS_FILE
from gpt_tui.paths import cache_dir


def formula_flops_per_token(config: GPTConfig, seq_len: int) -> float:
    """6N + 12·L·H·Q·T, N counted from the config: every matmul weight and bias, the head once, no position table."""
    d, L = config.emb_dim, config.n_layers
    per_layer = 12 * d * d + 10 * d + (3 * d if config.qkv_bias else 0)  # qkv, proj, fc, proj, two LayerNorms
    n = L * per_layer + 2 * d + config.vocab_size * d  # final LayerNorm, and the head (the token table when tied)
    return 6 * n + 12 * L * d * seq_len


@pytest.mark.parametrize("tied", [True, False])
def test_parameter_count_follows_nanogpt(tied):
    config = GPTConfig(vocab_size=97, context_length=8, emb_dim=16, n_layers=2, n_heads=2, qkv_bias=not tied, tie_weights=tied)
    model = GPTModel(config)
    fpt = mfu.flops_per_token(mfu.matmul_parameters(model), config.n_layers, config.emb_dim, 8)
    assert fpt == formula_flops_per_token(config, 8)


def _speed_lines(stdout: str) -> dict[int, re.Match]:
    """The speed line printed after each evaluation, by the updates done (the log's Step is the book's, one less)."""
    found = {}
    pattern = re.compile(r"Step (\d+)\): Train loss.*\nSpeed: ([\d,]+) tok/s, MFU ([\d.]+)% of ([\d.]+ [GTMP]?FLOP/s) "
                         r"\(([^)]*)\), peak memory ([\d.]+ [KMG]iB)")
    for match in pattern.finditer(stdout):
        found[int(match[1]) + 1] = match
    return found


def test_mfu_on_the_log_line_is_the_formula_on_the_measured_rate(corpus_and_init, tmp_path, capsys):
    corpus, init = corpus_and_init
    args = ["train", "--data", str(corpus), "--init-from", str(init), "--context-length", "16", "--batch-size", "2",
            "--max-steps", "2", "--eval-freq", "1", "--eval-iter", "1", "--sample-tokens", "0", "--device", "cpu",
            "--precision", "fp32", "--quiet", "--run-dir", str(tmp_path / "run")]
    assert main(args) == 0
    stdout = capsys.readouterr().out
    records = [json.loads(line) for line in (tmp_path / "run" / METRICS_FILE).read_text().splitlines()]
    events = [ev.record_to_event(r) for r in records]
    start = next(e for e in events if isinstance(e, ev.StartEvent))
    steps = {e.step: e for e in events if isinstance(e, ev.StepEvent)}
    fpt = formula_flops_per_token(GPTConfig(context_length=16, emb_dim=16, n_layers=1, n_heads=2, tie_weights=True), 16)

    assert start.peak_source == "fp32, measured" and start.peak_flops > 0
    for step in steps.values():  # what metrics.jsonl holds is the formula, to rounding
        assert step.mfu == pytest.approx(step.tokens_per_sec * fpt / start.peak_flops, rel=1e-9)
    lines = _speed_lines(stdout)
    assert sorted(lines) == [1, 2], stdout
    for at, line in lines.items():
        rate, shown = float(line[2].replace(",", "")), float(line[3])
        assert rate == round(steps[at].tokens_per_sec)
        assert line[4] == mfu.format_flops(start.peak_flops) and line[5] == start.peak_source
        decimals = len(line[3].partition(".")[2])
        expected = 100 * rate * fpt / start.peak_flops
        assert abs(shown - expected) <= 0.5 * 10**-decimals + 100 * 0.5 * fpt / start.peak_flops
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert all(50 << 20 < s.peak_memory <= peak_rss for s in steps.values())


def test_an_old_step_record_without_the_new_fields_still_reads():
    old = {"type": "step", "step": 3, "epoch": 1, "tokens_seen": 96, "loss": 9.5, "lr": 1e-4, "grad_norm": 1.0,
           "tokens_per_sec": 500.0, "elapsed": 0.2, "total_steps": 10}
    event = ev.record_to_event(old)
    assert isinstance(event, ev.StepEvent) and event.mfu is None and event.peak_memory is None
    with pytest.raises(ValueError, match="mfu"):
        ev.record_to_event({**old, "mfu": "high"})


def test_the_machine_keeps_its_best_measured_peak(monkeypatch):
    rates = iter([123e9, 100e9, 150e9])  # what three processes measure: the second one on a busy machine
    calls = []

    def fake_measure(device, precision, budget_s=0.1):
        calls.append(precision)
        return next(rates)

    monkeypatch.setattr(mfu, "measure_peak", fake_measure)
    cpu = torch.device("cpu")
    seen = []
    for _ in range(3):
        monkeypatch.setattr(mfu, "_memo", {})  # a new process: only the cache file is left
        seen.append(mfu.device_peak(cpu, "fp32"))
        assert mfu.device_peak(cpu, "fp32") is seen[-1]  # once per process
    assert [p.flops for p in seen] == [123e9, 123e9, 150e9] and calls == ["fp32"] * 3
    assert {p.label for p in seen} == {"fp32, measured"}
    assert 150e9 in json.loads((cache_dir() / mfu.PEAKS_FILE).read_text()).values()


def test_a_real_calibration_gives_a_plausible_rate():
    flops = mfu.measure_peak(torch.device("cpu"), "fp32", budget_s=0.05)
    assert 1e8 < flops < 1e14


@pytest.mark.parametrize("name, precision, tflops", [
    ("NVIDIA H200", "bf16", 989.0), ("NVIDIA H100 80GB HBM3", "tf32", 494.7), ("NVIDIA H100 PCIe", "bf16", 756.0),
    ("NVIDIA A100-SXM4-80GB", "bf16", 312.0), ("NVIDIA L40S", "bf16", 362.0), ("NVIDIA L4", "fp32", 30.3),
])
def test_known_gpus_use_their_datasheet_peak(name, precision, tflops):
    peak = mfu.datasheet_peak(name, precision)
    assert peak is not None and peak.flops == tflops * 1e12 and peak.source == "datasheet"
    assert mfu.datasheet_peak("Some Future GPU", "bf16") is None


@pytest.mark.anyio
async def test_the_training_pane_shows_mfu_and_peak_memory():
    from textual.app import App

    from pilot import screen_text

    from gpt_tui.tui.progress import TrainingProgress
    from gpt_tui.tui.training_pane import TrainingPane

    progress = TrainingProgress(state="running")
    progress.apply(ev.StartEvent(run_dir="/tmp/r", device="cpu", num_parameters=10, train_tokens=100, val_tokens=10,
                                 train_batches=5, val_batches=1, total_steps=10, start_step=0,
                                 peak_flops=4.2e10, peak_source="fp32, measured"))
    progress.apply(ev.StepEvent(step=1, epoch=1, tokens_seen=32, loss=9.0, lr=1e-4, grad_norm=1.0, tokens_per_sec=900.0,
                                elapsed=0.1, total_steps=10, mfu=0.0345, peak_memory=3 << 29))

    class PaneApp(App):
        def compose(self):
            pane = TrainingPane(progress)
            pane.wide = True
            yield pane

    app = PaneApp()
    async with app.run_test(size=(120, 20)) as pilot:
        await pilot.pause()
        text = screen_text(app)
    assert re.search(r"MFU\s+3\.5%", text) and re.search(r"memory\s+1\.5 GiB", text), text
    assert re.search(r"peak\s+42 GFLOP/s", text), text


def test_measuring_the_peak_leaves_the_run_s_random_draws_alone():
    """The first run on a machine measures the peak; drawing its matrices from torch's global generator shifted
    that run's dropout masks, so it differed from every later run with the same seed."""
    torch.manual_seed(5)
    before = torch.get_rng_state()
    mfu.measure_peak(torch.device("cpu"), "fp32", budget_s=0.01)
    assert torch.equal(torch.get_rng_state(), before)
