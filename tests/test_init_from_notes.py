"""``--init-from`` says what it leaves out of a file, and trains with the dropout its recipe and --help say."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gpt_tui.cli import main
from gpt_tui.engine.checkpoint import latest_checkpoint, load_checkpoint
from gpt_tui.engine.model import GPTConfig, GPTModel
from textgen import sample_text

CONFIG = GPTConfig(vocab_size=50257, context_length=8, emb_dim=8, n_layers=1, n_heads=2, drop_rate=0.0)
_BLOCK_NAMES = {  # the book's name of each gpt-tui block parameter (q, k and v apart below)
    "norm1.scale": "ln1.weight", "norm1.shift": "ln1.bias", "norm2.scale": "ln2.weight", "norm2.shift": "ln2.bias",
    "att.out_proj.weight": "attn.proj.weight", "att.out_proj.bias": "attn.proj.bias",
    "ff.layers.0.weight": "mlp.fc.weight", "ff.layers.0.bias": "mlp.fc.bias",
    "ff.layers.2.weight": "mlp.proj.weight", "ff.layers.2.bias": "mlp.proj.bias",
}


def _book_state(model: GPTModel) -> dict[str, torch.Tensor]:
    """``model`` as the book's GPTModel.state_dict() names it, in the book's module order."""
    ours, d = model.state_dict(), model.config.emb_dim
    out = {"tok_emb.weight": ours["tok_emb.weight"], "pos_emb.weight": ours["pos_emb.weight"]}
    for i in range(model.config.n_layers):
        qkv = ours[f"blocks.{i}.attn.qkv.weight"]
        for j, name in enumerate(("W_query", "W_key", "W_value")):
            out[f"trf_blocks.{i}.att.{name}.weight"] = qkv[j * d:(j + 1) * d]
        for book, mine in _BLOCK_NAMES.items():
            out[f"trf_blocks.{i}.{book}"] = ours[f"blocks.{i}.{mine}"]
    out.update({"final_norm.scale": ours["ln_f.weight"], "final_norm.shift": ours["ln_f.bias"],
                "out_head.weight": ours["head.weight"]})
    return {k: v.detach().clone() for k, v in out.items()}


def _book_file(tmp_path: Path, *, with_optimizer: bool) -> Path:
    """Chapter 5's ``model_and_optimizer.pth`` (after one AdamW update), or its ``model.pth`` of weights alone."""
    torch.manual_seed(3)
    state = _book_state(GPTModel(CONFIG))
    if with_optimizer:
        params = [torch.nn.Parameter(t.clone()) for t in state.values()]
        optimizer = torch.optim.AdamW(params, lr=4e-4, weight_decay=0.1)
        sum(p.square().sum() for p in params).backward()
        optimizer.step()
        path = tmp_path / "model_and_optimizer.pth"
        torch.save({"model_state_dict": state, "optimizer_state_dict": optimizer.state_dict()}, path)
    else:
        path = tmp_path / "model.pth"
        torch.save(state, path)
    path.with_suffix(".json").write_text('{"n_heads": 2}')  # width 8 says nothing of its heads
    return path


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "c.txt"
    path.write_text(sample_text(150, seed=3), encoding="utf-8")
    return path


def _train(corpus: Path, run: Path, *extra: str) -> int:
    return main(["train", "--data", str(corpus), "--run-dir", str(run), "--context-length", "8", "--batch-size", "2",
                 "--max-steps", "1", "--sample-tokens", "0", "--device", "cpu", "--precision", "fp32", "--quiet", *extra])


def _notes(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("gpt-tui: note:")]


def _trained_drop_rate(run: Path) -> float:
    return load_checkpoint(latest_checkpoint(run)).config.drop_rate


def test_a_book_file_with_adamw_state_says_only_its_weights_are_used(tmp_path, corpus, capsys):
    book = _book_file(tmp_path, with_optimizer=True)
    assert _train(corpus, tmp_path / "run", "--init-from", str(book)) == 0
    notes = [n for n in _notes(capsys.readouterr().err) if "AdamW" in n]
    assert len(notes) == 1, notes
    assert "only its weights" in notes[0] and "--with-optimizer" in notes[0] and book.name in notes[0]


def test_weights_alone_get_no_such_note(tmp_path, corpus, capsys):
    assert _train(corpus, tmp_path / "run", "--init-from", str(_book_file(tmp_path, with_optimizer=False))) == 0
    assert not [n for n in _notes(capsys.readouterr().err) if "AdamW" in n]


def test_a_gpt_tui_training_checkpoint_says_resume_continues_it(tmp_path, corpus, corpus_and_init, capsys):
    _, init = corpus_and_init  # a weights-only checkpoint: nothing is left out of it
    first = tmp_path / "first"
    assert main(["train", "--data", str(corpus), "--run-dir", str(first), "--init-from", str(init), "--batch-size", "2",
                 "--max-steps", "1", "--sample-tokens", "0", "--device", "cpu", "--precision", "fp32", "--quiet"]) == 0
    assert not [n for n in _notes(capsys.readouterr().err) if "AdamW" in n]
    assert _train(corpus, tmp_path / "second", "--init-from", str(first)) == 0
    notes = [n for n in _notes(capsys.readouterr().err) if "AdamW" in n]
    assert len(notes) == 1, notes
    assert "training checkpoint" in notes[0] and f"--resume {first}" in notes[0] and "only its weights" in notes[0]


@pytest.mark.parametrize("recipe, flags, expected", [
    ("book", (), 0.1),  # chapter 5's GPT_CONFIG_124M, whatever the imported file implies
    ("book", ("--drop-rate", "0.25"), 0.25),
    ("gpt-tui", (), 0.0),  # imported weights fine-tune without dropout, as --help says
    ("gpt-tui", ("--drop-rate", "0.25"), 0.25),
])
def test_dropout_of_a_run_from_imported_book_weights(tmp_path, corpus, capsys, recipe, flags, expected):
    book = _book_file(tmp_path, with_optimizer=True)
    run = tmp_path / "run"
    assert _train(corpus, run, "--recipe", recipe, "--init-from", str(book), *flags) == 0
    assert _trained_drop_rate(run) == expected
    said = [n for n in _notes(capsys.readouterr().err) if n.startswith("gpt-tui: note: dropout")]
    if flags:
        assert not said  # what the user set needs no note
    else:
        assert len(said) == 1 and f"dropout {expected:g} (" in said[0] and "--drop-rate" in said[0]


def test_help_says_what_init_from_trains_with(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "0.0 for other weights" in text and "the book's 0.1 with --recipe book" in text
