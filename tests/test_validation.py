"""Validation that means what it says: how much of each split an evaluation reads, and saying so.

The reference losses here are computed plainly, window by window, from the
saved weights, not through the code under test.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from gpt_tui.cli import main
from gpt_tui.engine.checkpoint import load_checkpoint
from gpt_tui.engine.events import EvalEvent, StepEvent, record_to_event
from gpt_tui.engine.model import GPTModel
from gpt_tui.engine.token_cache import tokenize_corpus
from gpt_tui.engine.trainer import Trainer, TrainConfig
from gpt_tui.tui.chart_data import LossHistory
from gpt_tui.tui.fold import fold_events
from gpt_tui.tui.progress import TrainingProgress


def _model(checkpoint: str) -> GPTModel:
    saved = load_checkpoint(checkpoint, "cpu")
    model = GPTModel(saved.config)
    model.load_state_dict(saved.model_state)
    return model.eval()


@torch.no_grad()
def _whole_split_loss(model: GPTModel, tokens: np.ndarray, context: int) -> tuple[float, int]:
    """Mean loss over every non-overlapping window of ``tokens``, and how many predictions that scores."""
    starts = list(range(0, len(tokens) - context, context))
    total = 0.0
    for i in range(0, len(starts), 64):
        block = np.stack([np.asarray(tokens[s : s + context + 1], dtype=np.int64) for s in starts[i : i + 64]])
        x, y = torch.from_numpy(block[:, :-1]), torch.from_numpy(block[:, 1:])
        logits = model(x)
        losses = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        total += float(losses.sum())
    return total / (len(starts) * context), len(starts) * context


def test_default_validation_on_the_builtin_corpus_is_within_005_of_the_whole_split(tmp_path, corpus_and_init):
    _, init = corpus_and_init  # a one-layer model keeps each evaluation cheap
    seen: list = []
    config = TrainConfig(  # a 1% validation split (1.4k tokens): each evaluation costs a tenth of the default's
        context_length=16, batch_size=4, max_steps=6, eval_freq=6, lr=1e-2, train_ratio=0.99, sample_tokens=0,
        device="cpu", precision="fp32", run_dir=str(tmp_path / "run"), seed=3,
    )
    assert config.eval_iter is None  # the automatic choice is the default
    done = Trainer(config, seen.append, init_from=str(init)).run()
    last = [e for e in seen if isinstance(e, EvalEvent)][-1]
    assert last.step == done.step == 6

    model = _model(done.checkpoint)
    tokens = tokenize_corpus(None)
    split = int(0.99 * len(tokens))
    val, val_all = _whole_split_loss(model, tokens[split:], 16)
    first = [e for e in seen if isinstance(e, EvalEvent)][0]
    assert first.val_loss - val > 0.5  # trained: the loss differs from window to window, not ~10.8 everywhere
    assert abs(last.val_loss - val) <= 0.05
    assert last.val_tokens == last.val_split_tokens == val_all  # a small split: read whole
    # the training split's estimate: a fixed sample as large as the validation split's evaluation
    assert last.train_split_tokens == len(range(0, split - 16, 16)) * 16
    assert last.train_tokens == min(last.val_tokens, last.train_split_tokens)


def test_the_automatic_sample_is_fixed_by_the_seed_and_the_whole_of_a_small_split():
    from gpt_tui.engine.batches import BatchLoader, TokenWindows
    from gpt_tui.engine.eval_coverage import default_sizes, sample_windows
    from gpt_tui.engine.evaluation import eval_windows

    big = BatchLoader(TokenWindows(np.arange(300_000), 1024, 1), 8, shuffle=True, drop_last=True, seed=1)
    train_size, val_size = default_sizes(big.num_windows, 20_000, 1024, windows_between=40)
    assert val_size == sample_windows(1024) < 20_000 and train_size == val_size  # the same precision
    first = eval_windows(big, None, seed=1, split=0, sample=val_size)
    assert np.array_equal(first, eval_windows(big, None, seed=1, split=0, sample=val_size))  # at every evaluation
    assert not np.array_equal(first, eval_windows(big, None, seed=2, split=0, sample=val_size))
    assert len(first) == val_size and len(np.unique(first)) == len(first)
    assert first.min() >= 0 and first.max() < big.num_windows
    assert np.histogram(first, bins=10, range=(0, big.num_windows))[0].min() > 0.09 * val_size  # spread over the split
    # a split the sample would nearly cover, or no larger than the training between two evaluations: read whole
    assert default_sizes(10 * val_size, val_size, 4, windows_between=40) == (val_size, None)
    assert default_sizes(5000, 300, 4, windows_between=8000) == (None, None)
    small = BatchLoader(TokenWindows(np.arange(801), 4, 4), 8, shuffle=False, drop_last=False)
    assert np.array_equal(eval_windows(small, None, seed=1, split=1, sample=None), np.arange(200))
    # --eval-iter N: the book's first N batches of the loader's fixed order
    assert np.array_equal(eval_windows(big, 3, seed=1, split=0, sample=val_size), big.order(0)[:24])
    assert np.array_equal(eval_windows(small, 1000, seed=1, split=1, sample=None), np.arange(200))


@pytest.fixture
def eval_iter_run(corpus_and_init, tmp_path, capsys):
    corpus, init = corpus_and_init
    run_dir = tmp_path / "runs" / "run"
    code = main([
        "train", "--data", str(corpus), "--init-from", str(init), "--context-length", "16", "--batch-size", "2",
        "--max-steps", "4", "--eval-freq", "2", "--eval-iter", "3", "--lr", "5e-3", "--sample-tokens", "0",
        "--device", "cpu", "--precision", "fp32", "--run-dir", str(run_dir), "--quiet",
    ])
    assert code == 0
    return corpus, run_dir, capsys.readouterr().out


def test_eval_iter_reads_exactly_n_batches_and_says_how_many_tokens(eval_iter_run, capsys):
    corpus, run_dir, out = eval_iter_run
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["type"] == "eval"]
    assert [r["step"] for r in evals] == [0, 1, 3, 4]  # before training, the book's steps 0 and 2, and the last update
    assert all(r["train_tokens"] == r["val_tokens"] == 3 * 2 * 16 for r in evals)

    # the book's meaning: the mean loss of the first 3 validation batches, in order
    model = _model(str(sorted((run_dir / "checkpoints").glob("step-*.safetensors"))[-1]))
    tokens = tokenize_corpus(str(corpus))
    val_tokens = tokens[int(0.9 * len(tokens)) :]
    first_three, _ = _whole_split_loss(model, val_tokens[: 3 * 2 * 16 + 1], 16)
    assert evals[-1]["val_loss"] == pytest.approx(first_three, abs=1e-4)
    _, val_all = _whole_split_loss(model, val_tokens, 16)
    assert evals[-1]["val_split_tokens"] == val_all > 96

    line = next(text for text in out.splitlines() if text.startswith("Ep 1 (Step 000003)"))  # after update 4
    assert "Train loss" in line and f"Val loss {evals[-1]['val_loss']:.3f} (96 of {val_all:,} tokens)" in line

    assert main(["runs", "--dir", str(run_dir.parent)]) == 0
    listed = capsys.readouterr().out
    assert "96 of" in listed  # how much the run's last evaluation read

    assert main(["eval", "--checkpoint", str(run_dir), "--num-batches", "2", "--batch-size", "2", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2
    assert all("(64 of " in text for text in printed)  # 2 batches x 2 windows x 16 tokens, not the split's count
    assert main(["eval", "--checkpoint", str(run_dir), "--device", "cpu", "--precision", "fp32"]) == 0  # as the reference
    val_line = [text for text in capsys.readouterr().out.splitlines() if text.startswith("val:")][0]
    whole, _ = _whole_split_loss(model, val_tokens, 16)
    assert f"({val_all:,} tokens, whole split)" in val_line and f"loss {whole:.4f}" in val_line


def test_an_eval_record_from_before_token_counts_still_reads():
    old = {"type": "eval", "step": 5, "epoch": 1, "tokens_seen": 40, "train_loss": 5.0, "val_loss": 5.5}
    event = record_to_event(old)
    assert isinstance(event, EvalEvent) and event.val_tokens == 0 and event.val_split_tokens == 0


def _steps(losses: list[float]) -> list[StepEvent]:
    return [StepEvent(step, 1, step * 8, loss, 1e-3, 1.0, 100.0, 0.1 * step, len(losses)) for step, loss in enumerate(losses, 1)]


@pytest.mark.parametrize("count", [7, 95, 1000])
def test_each_train_point_on_the_chart_is_the_mean_of_the_steps_since_the_last(count):
    rng = np.random.default_rng(count)
    losses = [float(4 + 2 * (step % 2) + rng.normal()) for step in range(count)]  # noisy: steps differ a lot
    history = LossHistory()
    start = EvalEvent(step=0, epoch=1, tokens_seen=0, train_loss=10.9, val_loss=10.95)
    fold_events(TrainingProgress(), history, [start, *_steps(losses)])
    for max_points in (8, 20, 64):
        train, _ = history.series("loss", max_points)
        assert train.xs[0] == 0 and train.ys[0] == 10.9  # the evaluation before training starts the curve
        assert len(train.xs) <= max_points + 1 and train.xs[-1] == count  # the latest step is always covered
        edges = [0, *train.xs[1:]]
        for (low, high), drawn in zip(zip(edges, edges[1:]), train.ys[1:]):
            covered = losses[int(low) : int(high)]  # steps low+1 .. high
            assert covered and drawn == pytest.approx(sum(covered) / len(covered), rel=1e-9)
        perplexities, _ = history.series("perplexity", max_points)
        assert perplexities.ys[1:] == pytest.approx([math.exp(y) for y in train.ys[1:]], rel=1e-9)


@pytest.mark.anyio
async def test_the_training_pane_says_what_the_validation_loss_read():
    from textual.app import App

    from pilot import screen_text

    from gpt_tui.tui.training_pane import TrainingPane

    progress = TrainingProgress(state="running")

    class PaneApp(App):
        def compose(self):
            yield TrainingPane(progress)

    app = PaneApp()
    async with app.run_test(size=(40, 12)) as pilot:
        pane = app.query_one(TrainingPane)
        progress.apply(EvalEvent(step=5, epoch=1, tokens_seen=40, train_loss=3.5, val_loss=3.324, train_tokens=13_824,
                                 val_tokens=13_824, train_split_tokens=124_928, val_split_tokens=13_824))
        pane.refresh_progress()
        await pilot.pause()
        assert "val over 13.8k tokens, whole split" in screen_text(app)
        progress.apply(EvalEvent(step=10, epoch=1, tokens_seen=80, train_loss=3.4, val_loss=3.3, train_tokens=65_536,
                                 val_tokens=65_536, train_split_tokens=22_000_000, val_split_tokens=2_500_000))
        pane.refresh_progress()
        await pilot.pause()
        assert "val over 65.5k of 2.5M tokens" in screen_text(app)


def test_the_default_interval_keeps_evaluating_to_a_share_of_the_time_and_given_values_are_kept(tmp_path, corpus_and_init):
    from gpt_tui.engine.eval_coverage import BOOK_EVAL_FREQ, EVAL_TIME_SHARE, SCORED_PER_TRAINED, default_interval

    assert default_interval(10, 8) == BOOK_EVAL_FREQ  # cheap evaluations: the book's every 5 steps
    for read, per_step in ((16_384, 8), (216, 8), (20, 2)):
        every = default_interval(read, per_step)
        assert read / SCORED_PER_TRAINED <= EVAL_TIME_SHARE * every * per_step  # at most that share of the time
        assert read / SCORED_PER_TRAINED > EVAL_TIME_SHARE * (every - 1) * per_step or every == BOOK_EVAL_FREQ

    corpus, init = corpus_and_init

    def eval_steps(**changes) -> tuple[int, list[int]]:
        seen: list = []
        config = TrainConfig(
            data=str(corpus), context_length=16, batch_size=2, max_steps=20, sample_tokens=0, device="cpu",
            precision="fp32", run_dir=str(tmp_path / f"run{len(list(tmp_path.iterdir()))}"), **changes,
        )
        Trainer(config, seen.append, init_from=str(init)).run()
        start = next(e for e in seen if type(e).__name__ == "StartEvent")
        return start.eval_every, [e.step for e in seen if isinstance(e, EvalEvent)]

    every, steps = eval_steps()  # the default reads 20 windows: more than 5 steps of 2 windows train on
    assert every > BOOK_EVAL_FREQ and steps == [0, *range(1, 20, every), 20]  # the book's: after updates 1, 1 + k, ...
    assert eval_steps(eval_iter=1) == (BOOK_EVAL_FREQ, [0, 1, 6, 11, 16, 20])  # the book's reading, the book's interval
    assert eval_steps(eval_freq=3) == (3, [0, 1, 4, 7, 10, 13, 16, 19, 20])
