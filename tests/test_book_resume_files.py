"""Continuing the book's ``model_and_optimizer.pth``: draw for draw as the book's code continues it; odd files refused in a line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from gpt_tui.cli import main
from gpt_tui.engine.book_checkpoint import gpt_tui_name
from gpt_tui.engine.book_data import book_data
from gpt_tui.engine.book_model import book_loss
from gpt_tui.engine.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from gpt_tui.engine.model import GPTConfig, GPTModel
from gpt_tui.engine.train_options import TrainConfig
from book_names import book_names
from textgen import sample_text

CONFIG = GPTConfig(vocab_size=50257, context_length=8, emb_dim=8, n_layers=1, n_heads=2, drop_rate=0.1)
FLAGS = (["--resume"], ["--with-optimizer", "--init-from"])


def _book_layout(model: GPTModel) -> dict[str, torch.Tensor]:
    """The book's state_dict of ``model``, the causal-mask buffers too, as tensors of their own."""
    return {k: v.detach().clone() for k, v in book_names(model, masks=True).items()}


def _book_file(model: GPTModel, optimizer: torch.optim.Optimizer, path: Path) -> Path:
    """Save as chapter 5 does: its model's state_dict and its AdamW's, whose params follow the book's order."""
    state = _book_layout(model)
    params = [name for name in state if not name.endswith(".att.mask")]
    d = model.config.emb_dim
    slots = dict(zip([n for n, _ in model.named_parameters()], optimizer.state_dict()["state"].values()))
    moments = {}
    for index, name in enumerate(params):
        ours, third = gpt_tui_name(name)
        cut = (lambda t: t.clone()) if third is None else (lambda t, j=third: t[j * d:(j + 1) * d].clone())
        moments[index] = {"step": slots[ours]["step"].clone(), "exp_avg": cut(slots[ours]["exp_avg"]),
                          "exp_avg_sq": cut(slots[ours]["exp_avg_sq"])}
    group = {k: v for k, v in optimizer.state_dict()["param_groups"][0].items() if k != "params"}
    torch.save({"model_state_dict": state,
                "optimizer_state_dict": {"state": moments, "param_groups": [{**group, "params": list(range(len(params)))}]}},
               path)
    path.with_suffix(".json").write_text('{"n_heads": 2}')  # width 8 says nothing of its heads
    return path


def _trained(corpus: Path, updates: int, config: GPTConfig = CONFIG) -> tuple[GPTModel, torch.optim.Optimizer]:
    torch.manual_seed(7)
    model = GPTModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
    data = book_data(TrainConfig(data=(str(corpus),), context_length=8, batch_size=2))
    model.train()
    for _, (inputs, targets) in zip(range(updates), data.train):
        optimizer.zero_grad()
        book_loss(model, inputs, targets).backward()
        optimizer.step()
    return model, optimizer


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "c.txt"
    path.write_text(sample_text(120, seed=3), encoding="utf-8")
    return path


def _train(corpus: Path, run: Path, *extra: str) -> int:
    return main(["train", "--recipe", "book", "--data", str(corpus), "--run-dir", str(run), "--context-length", "8",
                 "--batch-size", "2", "--sample-tokens", "0", "--device", "cpu", "--precision", "fp32", "--quiet", *extra])


def test_continuing_draws_as_the_books_code_continues(tmp_path, corpus, capsys):
    """The book's exercise 5.4: load both states, ``manual_seed(123)``, ``train_model_simple`` counting from step 0.

    (``--init-from FILE --with-optimizer`` is the same path: test_book_recipe runs both spellings.)
    """
    model, optimizer = _trained(corpus, 3)
    book_file = _book_file(model, optimizer, tmp_path / "model_and_optimizer.pth")
    data = book_data(TrainConfig(data=(str(corpus),), context_length=8, batch_size=2))
    assert len(data.train) >= 3
    # the book's code going on: a fresh seed, update 1, its evaluation (a new pass over each loader), update 2
    torch.manual_seed(123)
    batches = iter(data.train)
    for update in range(2):
        inputs, targets = next(batches)
        optimizer.zero_grad()
        book_loss(model, inputs, targets).backward()
        optimizer.step()
        if update == 0:  # global_step 0: evaluate_model over eval_iter batches of each loader
            model.eval()
            with torch.no_grad():
                for loader in (data.train, data.val):
                    for i, (x, y) in enumerate(loader):
                        if i >= 5:
                            break
                        book_loss(model, x, y)
            model.train()
    expected = {k: v.detach().clone() for k, v in model.state_dict().items()}

    run = tmp_path / "run"
    assert _train(corpus, run, "--max-steps", "2", "--resume", str(book_file)) == 0
    captured = capsys.readouterr()
    assert "continuing the book's" in captured.err and "after 3 updates" in captured.err
    assert "Ep 1 (Step 000000)" in captured.out  # the book's numbering of a new train_model_simple call
    resumed = load_checkpoint(latest_checkpoint(run))
    assert resumed.train_state["step"] == 2
    for name, tensor in expected.items():
        assert torch.allclose(resumed.model_state[name], tensor, atol=1e-6, rtol=0), name


def _state_only(tmp_path: Path, corpus: Path) -> Path:
    model, _ = _trained(corpus, 0)
    torch.save(_book_layout(model), tmp_path / "model.pth")
    return tmp_path / "model.pth"


def _no_optimizer(tmp_path: Path, corpus: Path) -> Path:
    model, _ = _trained(corpus, 0)
    torch.save({"model_state_dict": _book_layout(model)}, tmp_path / "model.pth")
    return tmp_path / "model.pth"


def _other_shape(tmp_path: Path, corpus: Path) -> Path:
    """The weights of one model with the AdamW state of a wider one (same parameter count, other shapes)."""
    model, _ = _trained(corpus, 1)
    _, wide_optimizer = _trained(corpus, 1, CONFIG.with_(emb_dim=16))
    wide = _book_file(GPTModel(CONFIG.with_(emb_dim=16)), wide_optimizer, tmp_path / "wide.pth")
    loaded = torch.load(wide, weights_only=True)
    path = tmp_path / "mixed.pth"
    torch.save({"model_state_dict": _book_layout(model), "optimizer_state_dict": loaded["optimizer_state_dict"]}, path)
    path.with_suffix(".json").write_text('{"n_heads": 2}')
    return path


def _huggingface_bin(tmp_path: Path, corpus: Path) -> Path:
    model, _ = _trained(corpus, 0)
    torch.save({"transformer.wte.weight": model.tok_emb.weight.detach(), "transformer.wpe.weight": model.pos_emb.weight.detach(),
                "transformer.ln_f.weight": model.ln_f.weight.detach()}, tmp_path / "pytorch_model.bin")
    return tmp_path / "pytorch_model.bin"


def _weights_safetensors(tmp_path: Path, corpus: Path) -> Path:
    model, _ = _trained(corpus, 0)
    save_file({"wte.weight": model.tok_emb.weight.detach().clone(), "wpe.weight": model.pos_emb.weight.detach().clone()},
              str(tmp_path / "model.safetensors"))
    return tmp_path / "model.safetensors"


def _gpt_tui_weights(tmp_path: Path, corpus: Path) -> Path:
    model, _ = _trained(corpus, 0)
    save_checkpoint(tmp_path / "weights.safetensors", model)
    return tmp_path / "weights.safetensors"


def _truncated(tmp_path: Path, corpus: Path) -> Path:
    model, optimizer = _trained(corpus, 1)
    whole = _book_file(model, optimizer, tmp_path / "whole.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(whole[: len(whole) // 2])
    return tmp_path / "cut.pth"


def _step_not_a_count(tmp_path: Path, corpus: Path) -> Path:
    model, optimizer = _trained(corpus, 1)
    path = _book_file(model, optimizer, tmp_path / "model_and_optimizer.pth")
    loaded = torch.load(path, weights_only=True)
    loaded["optimizer_state_dict"]["state"][0]["step"] = torch.tensor([1.0, 2.0])
    torch.save(loaded, path)
    return path


class _RunsCode:
    """Unpickling this runs a shell command: the loader must refuse before that."""

    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _code_pickle(tmp_path: Path, corpus: Path) -> Path:
    model, _ = _trained(corpus, 0)
    _RunsCode.marker = str(tmp_path / "ran")
    torch.save({"model_state_dict": _book_layout(model), "optimizer_state_dict": _RunsCode()}, tmp_path / "evil.pth")
    return tmp_path / "evil.pth"


@pytest.mark.parametrize("flags", FLAGS)
@pytest.mark.parametrize("make, says", [
    (_state_only, ("the book's GPTModel weights alone", "--init-from alone")),
    (_no_optimizer, ("model_state_dict but no optimizer_state_dict", "--init-from alone")),
    (_other_shape, ("AdamW state of another model", "[50257, 16]", "--init-from alone")),
    (_huggingface_bin, ("Hugging Face GPT-2 weights", "--init-from alone")),
    (_weights_safetensors, ("safetensors file of weights, not a gpt-tui checkpoint", "--init-from alone")),
    (_gpt_tui_weights, ("holds weights only", "--init-from")),
    (_truncated, ("PyTorch zip cut short", "save it again")),
    (_step_not_a_count, ("step count for tok_emb.weight that is not one whole number", "--init-from alone")),
    (_code_pickle, ("would run code", "weights-only")),
], ids=["state-dict", "no-optimizer", "other-shape", "hf-bin", "weights-safetensors", "gpt-tui-weights", "truncated",
        "step-not-a-count", "code-pickle"])
def test_a_file_that_cannot_continue_a_run_gets_one_line(tmp_path, corpus, capsys, flags, make, says):
    path = make(tmp_path, corpus)
    run = tmp_path / "run"
    assert _train(corpus, run, "--max-steps", "1", *flags, str(path)) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gpt-tui: error: "), err
    assert all(part in lines[0] for part in says), lines[0]
    assert "Traceback" not in err and not run.exists() and not (tmp_path / "ran").exists()
