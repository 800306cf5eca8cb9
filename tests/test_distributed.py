"""Data-parallel training: two gloo processes under torchrun train like one process with twice the batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpt_tui.engine import distributed
from gpt_tui.engine.checkpoint import latest_checkpoint, load_checkpoint
from gpt_tui.engine.checkpoint_names import list_checkpoints
from gpt_tui.engine.trainer import Trainer, TrainConfig
from gpt_tui.errors import UserError
from textgen import sample_text

REPO = Path(__file__).resolve().parents[1]


def test_shards_split_rows_evenly_and_cover_them():
    for rows in (1, 4, 5, 7):
        for world in (1, 2, 3):
            slices = [distributed.DistInfo(rank=r, world_size=world).shard(rows) for r in range(world)]
            covered = [i for s in slices for i in range(rows)[s]]
            assert covered == list(range(rows))
            sizes = [s.stop - s.start for s in slices]
            assert max(sizes) - min(sizes) <= 1


def test_environment_is_read_and_checked(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.from_env() == distributed.DistInfo(0, 0, 1)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    info = distributed.from_env()
    assert info.enabled and not info.is_main and info.local_rank == 1
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(UserError, match="torchrun"):
        distributed.from_env()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(UserError, match="RANK"):
        distributed.from_env()


def _records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_twice_the_batch(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(sample_text(1500, seed=3), encoding="utf-8")
    common = dict(
        data=str(corpus), model="tiny", context_length=32, max_steps=4, grad_accum=2, eval_freq=2, eval_iter=2,
        sample_tokens=0, device="cpu", precision="fp32", lr=1e-3, seed=5,
    )
    single_dir = tmp_path / "single"
    Trainer(TrainConfig(batch_size=4, run_dir=str(single_dir), **common)).run()

    ddp_dir = tmp_path / "ddp"
    flags = [
        "--data", str(corpus), "--model", "tiny", "--context-length", "32", "--max-steps", "4", "--grad-accum", "2",
        "--eval-freq", "2", "--eval-iter", "2", "--sample-tokens", "0", "--device", "cpu", "--precision", "fp32",
        "--lr", "1e-3", "--seed", "5", "--batch-size", "2", "--run-dir", str(ddp_dir), "--quiet",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
         "-m", "gpt_tui", "train", *flags],
        capture_output=True, text=True, timeout=240, env=env, cwd=str(tmp_path),
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert result.stdout.count("Run: ") == 1  # only rank 0 prints the log

    single_steps, ddp_steps = _records(single_dir, "step"), _records(ddp_dir, "step")
    assert [r["step"] for r in ddp_steps] == [1, 2, 3, 4]  # one metrics file, one line per step
    for a, b in zip(single_steps, ddp_steps):
        assert a["tokens_seen"] == b["tokens_seen"]
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-3)
    for a, b in zip(_records(single_dir, "eval"), _records(ddp_dir, "eval")):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)
    assert ddp_steps[-1]["loss"] < ddp_steps[0]["loss"]

    single = load_checkpoint(latest_checkpoint(single_dir)).model_state
    ddp = load_checkpoint(latest_checkpoint(ddp_dir)).model_state
    assert single.keys() == ddp.keys()
    moved = max((single[n] - ddp[n]).abs().max().item() for n in single)
    for name in single:
        gap = (ddp[name] - single[name]).abs().max().item()
        assert gap < 1e-4, f"{name} differs by {gap} (largest gap of any tensor {moved})"
    assert len(list_checkpoints(ddp_dir)) == 1  # rank 0 alone wrote the step checkpoint
