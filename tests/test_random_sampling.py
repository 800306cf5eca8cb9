"""--sampling random: windows drawn anywhere in the training stream, from (seed, epoch, batch) alone.

An epoch is train tokens // (batch * context) batches; batch k of an epoch is
the same whether the loader starts at 0 or at k, so a resumed run sees the
batches an unbroken one would have: checked with the real trainer.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gpt_tui.engine import events as ev
from gpt_tui.engine.batches import RandomBatchLoader, make_loaders
from gpt_tui.engine.token_stream import TokenStream
from gpt_tui.engine.trainer import Trainer, TrainConfig, resume_config
from gpt_tui.errors import UserError
from textgen import sample_text


def _loader(n: int = 1000, seed: int = 3, batch: int = 4, context: int = 8) -> RandomBatchLoader:
    tokens = np.arange(n, dtype=np.uint16)
    splits = make_loaders(tokens, context_length=context, stride=context, batch_size=batch, seed=seed, sampling="random")
    assert isinstance(splits.train, RandomBatchLoader)
    return splits.train


def test_an_epoch_of_random_windows_is_train_tokens_over_batch_times_context() -> None:
    loader = _loader(n=1000, batch=4, context=8)
    assert len(loader) == 900 // (4 * 8)
    batches = list(loader.batches(0))
    assert len(batches) == len(loader)
    for x, y in batches:
        assert x.shape == y.shape == (4, 8)
        assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(x[:, 1:] - x[:, :-1], torch.ones(4, 7, dtype=torch.long))
        assert int(y.max()) < 900  # drawn from the training split only
    starts = np.concatenate([loader.starts(0, b) for b in range(len(loader))])
    assert len(set((starts % 8).tolist())) > 1  # not the sliding windows' offsets: they start anywhere


def test_random_batches_depend_only_on_seed_epoch_and_batch() -> None:
    loader = _loader()
    whole = list(loader.batches(2))
    resumed = list(loader.batches(2, start=5))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(whole[5:], resumed))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(whole, _loader().batches(2)))  # a new loader, the same draws
    assert not torch.equal(whole[0][0], next(iter(loader.batches(3)))[0])  # another epoch, other windows
    assert not torch.equal(whole[0][0], next(iter(_loader(seed=4).batches(2)))[0])
    ranks = [next(iter(loader.batches(2, shard=(r, 2))))[0] for r in range(2)]
    assert torch.equal(torch.cat(ranks), whole[0][0])  # each rank its rows of the same global batch


def test_random_windows_read_a_stream_of_many_pieces_the_same_as_an_array() -> None:
    tokens = np.arange(1000, dtype=np.uint16)
    stream = TokenStream([tokens[i : i + 37] for i in range(0, 1000, 37)])
    flat = make_loaders(tokens, context_length=8, stride=8, batch_size=4, seed=1, sampling="random").train
    split = make_loaders(stream, context_length=8, stride=8, batch_size=4, seed=1, sampling="random").train
    assert all(torch.equal(a[1], b[1]) for a, b in zip(flat.batches(0), split.batches(0)))


def test_an_unknown_sampling_is_refused_in_one_line() -> None:
    with pytest.raises(UserError, match="sampling must be one of windows, random"):
        make_loaders(np.arange(1000, dtype=np.uint16), context_length=8, stride=8, batch_size=4, sampling="nope")
    with pytest.raises(UserError, match="sampling"):
        TrainConfig(sampling="sometimes").validate()


def _losses(run_dir) -> dict[int, float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if r["type"] == "step"}


def test_a_resumed_random_sampling_run_sees_the_batches_of_an_unbroken_one(tmp_path) -> None:
    corpus = tmp_path / "books"
    for i in range(3):  # a folder: the stream has several pieces and separators
        (corpus / f"b{i}").mkdir(parents=True)
        (corpus / f"b{i}" / "book.txt").write_text(sample_text(70, seed=i), encoding="utf-8")
    base = dict(
        data=(str(corpus),), model="tiny", context_length=16, batch_size=4, max_steps=None, epochs=2,
        eval_freq=50, eval_iter=1, sample_tokens=0, device="cpu", precision="fp32", sampling="random", lr=1e-3,
    )
    seen: list = []
    Trainer(TrainConfig(**base, run_dir=str(tmp_path / "unbroken")), seen.append).run()
    reference = _losses(tmp_path / "unbroken")
    start = next(e for e in seen if isinstance(e, ev.StartEvent))
    preparing = [e for e in seen[: seen.index(start)] if isinstance(e, ev.TokenizeProgress)]
    assert preparing and preparing[-1].done and preparing[-1].files_done == 3  # the corpus's progress, before the start
    assert not any(isinstance(e, ev.TokenizeProgress) for e in seen[seen.index(start):])
    assert start.train_batches == start.train_tokens // (4 * 16) and len(reference) == 2 * start.train_batches
    assert start.train_batches >= 2
    stop_at = start.train_batches - 1  # resume inside the first epoch, run across the epoch boundary
    holder: dict = {}

    def stop(event) -> None:
        if isinstance(event, ev.StepEvent) and event.step == stop_at:
            holder["trainer"].request_stop()

    holder["trainer"] = Trainer(TrainConfig(**base, run_dir=str(tmp_path / "broken")), stop)
    assert holder["trainer"].run().step == stop_at
    torch.manual_seed(12345)  # another process state must not matter
    resumed = Trainer(resume_config(str(tmp_path / "broken")), resume=str(tmp_path / "broken"))
    assert resumed.run().step == len(reference)
    assert _losses(tmp_path / "broken") == reference  # exactly equal floats, step by step
    windows = dict(base, sampling="windows", max_steps=1)
    Trainer(TrainConfig(**windows, run_dir=str(tmp_path / "windows"))).run()
    assert _losses(tmp_path / "windows")[1] != reference[1]  # random sampling really draws other batches
