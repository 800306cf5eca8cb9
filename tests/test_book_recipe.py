"""``--recipe book``: the chapter-5 notebook's draws, data order, log and checkpoint, checked against plain re-implementations."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from gpt_tui.cli import main
from gpt_tui.engine.book_checkpoint import gpt_tui_name
from gpt_tui.engine.book_data import book_data
from gpt_tui.engine.book_init import book_init_
from gpt_tui.engine.book_model import book_loss
from gpt_tui.engine.checkpoint import latest_checkpoint, load_checkpoint
from gpt_tui.engine.model import GPTConfig, GPTModel
from gpt_tui.engine.tokenizer import encode
from gpt_tui.engine.train_options import TrainConfig
from book_names import book_names
from textgen import sample_text

SMALL = GPTConfig(vocab_size=50257, context_length=8, emb_dim=8, n_layers=2, n_heads=2, drop_rate=0.1)


def book_draws(config: GPTConfig, seed: int) -> dict[str, torch.Tensor]:
    """The book's GPTModel built module by module after ``manual_seed``, in gpt-tui's names (q, k, v stacked)."""
    torch.manual_seed(seed)
    d = config.emb_dim
    state = {"tok_emb.weight": nn.Embedding(config.vocab_size, d).weight, "pos_emb.weight": nn.Embedding(config.context_length, d).weight}
    for i in range(config.n_layers):
        query, key, value = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)
        out_proj = nn.Linear(d, d)
        fc, proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        state[f"blocks.{i}.attn.qkv.weight"] = torch.cat([query.weight, key.weight, value.weight])
        for name, layer in (("attn.proj", out_proj), ("mlp.fc", fc), ("mlp.proj", proj)):
            state[f"blocks.{i}.{name}.weight"], state[f"blocks.{i}.{name}.bias"] = layer.weight, layer.bias
        for norm in ("ln1", "ln2"):
            state[f"blocks.{i}.{norm}.weight"], state[f"blocks.{i}.{norm}.bias"] = torch.ones(d), torch.zeros(d)
    state["ln_f.weight"], state["ln_f.bias"] = torch.ones(d), torch.zeros(d)
    state["head.weight"] = nn.Linear(d, config.vocab_size, bias=False).weight
    return {k: v.detach() for k, v in state.items()}


def test_initial_weights_are_the_books_module_order_draws():
    expected = book_draws(SMALL, seed=123)
    after_book = torch.rand(4)
    torch.manual_seed(0)
    model = GPTModel(SMALL)  # gpt-tui's own init first: the recipe must not depend on it
    book_init_(model, 123)
    after_ours = torch.rand(4)
    state = model.state_dict()
    assert set(state) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(state[name], tensor), name
    assert torch.equal(after_ours, after_book)  # the generator is left where the book's build leaves it


def test_shuffle_order_is_dataloader_shuffle_over_the_character_split(tmp_path):
    text = sample_text(300, seed=3)
    corpus = tmp_path / "c.txt"
    corpus.write_text(text, encoding="utf-8")
    config = TrainConfig(data=(str(corpus),), context_length=6, batch_size=3, recipe="book")
    data = book_data(config)
    cut = int(0.9 * len(text))

    def windows(ids: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(torch.tensor(ids[i:i + 6]), torch.tensor(ids[i + 1:i + 7])) for i in range(0, len(ids) - 6, 6)]

    reference = DataLoader(windows(encode(text[:cut])), batch_size=3, shuffle=True, drop_last=True)
    reference_val = DataLoader(windows(encode(text[cut:])), batch_size=3, shuffle=False, drop_last=False)
    torch.manual_seed(11)
    ours = [[x.tolist() for x, _ in loader] for loader in (data.train, data.val, data.train)]
    torch.manual_seed(11)
    theirs = [[x.tolist() for x, _ in loader] for loader in (reference, reference_val, reference)]
    assert ours == theirs
    assert ours[0] != ours[2]  # each pass draws a new order, as the book's evaluations do
    assert data.train_tokens == len(reference) * 3 * 6


def test_book_forward_is_the_same_model_as_gpt_tuis():
    torch.manual_seed(1)
    model = GPTModel(SMALL).eval()
    ids = torch.randint(0, SMALL.vocab_size, (2, 8))
    targets = torch.randint(0, SMALL.vocab_size, (2, 8))
    with torch.no_grad():
        assert math.isclose(book_loss(model, ids, targets).item(), model(ids, targets=targets).item(), rel_tol=1e-5)


BOOK_LINE = re.compile(r"^Ep (\d+) \(Step (\d{6})\): Train loss \d+\.\d{3}, Val loss \d+\.\d{3}$")


def test_step_numbering_and_lines_are_the_books(tmp_path, capsys, corpus_and_init):
    corpus, init = corpus_and_init
    small = tmp_path / "small.txt"
    small.write_text(corpus.read_text()[:1400], encoding="utf-8")
    config = TrainConfig(data=(str(small),), context_length=16, batch_size=2)
    data = book_data(config)
    per_epoch = len(data.train)
    assert 3 <= per_epoch <= 12 and len(data.val) >= 1
    args = ["train", "--recipe", "book", "--data", str(small), "--init-from", str(init), "--run-dir", str(tmp_path / "run"),
            "--context-length", "16", "--batch-size", "2", "--epochs", "3", "--sample-tokens", "3",
            "--device", "cpu", "--precision", "fp32", "--quiet"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Training loss: "))
    assert float(lines[start].split(": ")[1]) > 0 and lines[start + 1].startswith("Validation loss: ")
    log = [line for line in lines[start + 2:] if BOOK_LINE.match(line) or line.startswith("Every effort")]
    # train_model_simple: global_step starts at -1, counts after each update, prints when a multiple of 5
    expected, global_step = [], -1
    for epoch in range(3):
        for _ in range(per_epoch):
            global_step += 1
            if global_step % 5 == 0:
                expected.append(("eval", epoch + 1, global_step))
        expected.append(("sample", epoch + 1, None))
    got = []
    for line in log:
        match = BOOK_LINE.match(line)
        got.append(("eval", int(match[1]), int(match[2])) if match else ("sample", got[-1][1] if got else 1, None))
    assert [g[0] for g in got] == [e[0] for e in expected]
    assert [g for g in got if g[0] == "eval"] == [e for e in expected if e[0] == "eval"]


@pytest.mark.parametrize("flags", [["--resume"], ["--with-optimizer", "--init-from"]])
def test_resuming_the_books_checkpoint_continues_its_adamw_state(tmp_path, flags):
    torch.manual_seed(5)
    config = GPTConfig(vocab_size=50257, context_length=8, emb_dim=8, n_layers=1, n_heads=2, drop_rate=0.0)
    text = sample_text(40, seed=9)
    corpus = tmp_path / "c.txt"
    corpus.write_text(text, encoding="utf-8")
    windows = len(book_data(TrainConfig(data=(str(corpus),), context_length=8, batch_size=1)).train.dataset)
    data = book_data(TrainConfig(data=(str(corpus),), context_length=8, batch_size=windows))
    assert len(data.train) == 1 and windows >= 2  # one batch of every window: each order has the same rows

    def step(model: GPTModel, optimizer: torch.optim.Optimizer) -> None:
        (inputs, targets), = list(data.train)
        optimizer.zero_grad()
        book_loss(model, inputs, targets).backward()
        optimizer.step()

    # the book's side: three updates, saved as the notebook saves them
    model = GPTModel(config)
    optimizer = torch.optim.AdamW(list(model.parameters()), lr=4e-4, weight_decay=0.1)
    for _ in range(3):
        step(model, optimizer)
    # the book's state_dict keeps q, k, v apart: rebuild its optimizer state by its own parameter order
    names = list(book_names(model))
    d = config.emb_dim
    by_param = dict(zip([n for n, _ in model.named_parameters()], optimizer.state_dict()["state"].values()))
    book_state, book_moments = {}, {}
    for index, name in enumerate(names):
        ours, third = gpt_tui_name(name)
        slots = by_param[ours]
        cut = (lambda t: t) if third is None else (lambda t, j=third: t[j * d:(j + 1) * d].clone())
        book_moments[index] = {"step": slots["step"].clone(), "exp_avg": cut(slots["exp_avg"]), "exp_avg_sq": cut(slots["exp_avg_sq"])}
        book_state[name] = cut(dict(model.named_parameters())[ours].detach().clone())
    saved_group = {k: v for k, v in optimizer.state_dict()["param_groups"][0].items() if k != "params"}
    book_file = tmp_path / "model_and_optimizer.pth"
    torch.save({"model_state_dict": book_state,
                "optimizer_state_dict": {"state": book_moments, "param_groups": [{**saved_group, "params": list(range(len(names)))}]}},
               book_file)
    (tmp_path / "model_and_optimizer.json").write_text('{"n_heads": 2}')  # width 8 says nothing of its heads
    # the unbroken run: one more update
    step(model, optimizer)
    unbroken = {k: v.detach().clone() for k, v in model.state_dict().items()}

    run = tmp_path / "run"
    args = ["train", "--recipe", "book", "--data", str(corpus), "--run-dir", str(run), "--context-length", "8",
            "--batch-size", str(windows), "--max-steps", "1", "--drop-rate", "0", "--sample-tokens", "0", "--device", "cpu",
            "--precision", "fp32", "--quiet", *flags, str(book_file)]
    assert main(args) == 0
    resumed = load_checkpoint(latest_checkpoint(run))
    assert resumed.train_state["step"] == 1  # a book file's run counts afresh, as train_model_simple called again
    for name, tensor in unbroken.items():
        assert torch.allclose(resumed.model_state[name], tensor, atol=1e-6, rtol=0), name


def test_a_plain_state_dict_cannot_be_resumed_and_says_what_it_is(tmp_path, capsys):
    torch.manual_seed(0)
    model = GPTModel(GPTConfig(vocab_size=50257, context_length=8, emb_dim=8, n_layers=1, n_heads=2))
    path = tmp_path / "weights.pth"
    torch.save({k: v for k, v in book_names(model).items()}, path)
    corpus = tmp_path / "c.txt"
    corpus.write_text(sample_text(40, seed=9), encoding="utf-8")
    code = main(["train", "--data", str(corpus), "--resume", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "weights" in err and "--init-from" in err and "header too large" not in err
    assert not (tmp_path / "run").exists()


def test_help_names_every_training_default():
    import argparse
    from dataclasses import fields

    from gpt_tui.cli import build_parser

    parser = build_parser()
    train = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    names = {f.name for f in fields(TrainConfig)}
    shown = {a.dest: a.help for a in train._actions if a.dest in names and a.help != argparse.SUPPRESS}
    assert {"grad_clip", "weight_decay", "recipe", "lr", "compile"} <= set(shown)
    missing = [name for name, text in shown.items() if "default" not in (text or "")]
    assert not missing
    assert "(default: 1.0)" in shown["grad_clip"] and "(default: gpt-tui)" in shown["recipe"]
