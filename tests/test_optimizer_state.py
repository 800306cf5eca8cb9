"""A resume whose AdamW moments are missing, misshapen or not finite is refused at load, saying which tensor."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from gpt_tui.cli import main
from gpt_tui.engine.checkpoint import latest_checkpoint, load_checkpoint
from gpt_tui.engine.runs import read_metrics
from gpt_tui.engine.events import StepEvent
from gpt_tui.engine.trainer import Trainer, TrainConfig


def _config(corpus: Path, run_dir: Path, max_steps: int) -> TrainConfig:
    return TrainConfig(
        data=str(corpus), context_length=16, batch_size=2, max_steps=max_steps, eval_freq=100, eval_iter=1,
        sample_tokens=0, device="cpu", precision="fp32", run_dir=str(run_dir),
    )


def _rewrite(path: Path, change) -> None:
    """Rewrite a checkpoint with ``change(tensors)`` applied, keeping its header as it was."""
    with safe_open(str(path), framework="pt") as fh:
        metadata = fh.metadata()
        tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    change(tensors)
    save_file(tensors, str(path), metadata=metadata)


def _first(tensors: dict, slot: str) -> str:
    return next(key for key in sorted(tensors) if key.startswith("optim.") and key.endswith("." + slot))


def _drop(tensors: dict) -> str:
    key = _first(tensors, "exp_avg")
    del tensors[key]
    return key


def _reshape(tensors: dict) -> str:
    key = next(k for k in sorted(tensors) if k.startswith("optim.") and k.endswith(".exp_avg_sq") and tensors[k].dim() == 2)
    tensors[key] = tensors[key].reshape(-1)
    return key


def _poison(tensors: dict) -> str:
    key = _first(tensors, "exp_avg")
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] = math.nan
    return key


@pytest.mark.parametrize(("damage", "problem"), [(_drop, "is missing"), (_reshape, "has shape"), (_poison, "NaN")])
def test_damaged_moments_are_refused_on_resume_with_one_clear_error(corpus_and_init, tmp_path, capsys, damage, problem):
    corpus, init = corpus_and_init
    run_dir = tmp_path / "run"
    Trainer(_config(corpus, run_dir, 3), init_from=str(init)).run()
    path = latest_checkpoint(run_dir)
    damaged: list[str] = []
    _rewrite(path, lambda tensors: damaged.append(damage(tensors)))

    code = main(["train", "--resume", str(run_dir), "--max-steps", "6", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("gpt-tui: error: ") and "Traceback" not in err
    assert damaged[0] in err and problem in err and "--init-from" in err
    assert load_checkpoint(latest_checkpoint(run_dir)).train_state["step"] == 3  # nothing trained past it
    assert max(e.step for e in read_metrics(run_dir)[0] if isinstance(e, StepEvent)) == 3


def test_a_checkpoint_saved_before_the_first_step_has_no_moments_and_still_resumes(corpus_and_init, tmp_path):
    corpus, init = corpus_and_init
    run_dir = tmp_path / "run"
    trainer = Trainer(_config(corpus, run_dir, 3), init_from=str(init))
    trainer.request_stop()  # stops before the first step: the final checkpoint is of step 0
    trainer.run()
    checkpoint = load_checkpoint(latest_checkpoint(run_dir))
    assert checkpoint.train_state["step"] == 0 and not checkpoint.optimizer_state["tensors"]
    done = Trainer(_config(corpus, run_dir, 3), resume=str(run_dir)).run()
    assert done.step == 3 and done.reason == "finished"
    assert torch.isfinite(load_checkpoint(latest_checkpoint(run_dir)).model_state["tok_emb.weight"]).all()
