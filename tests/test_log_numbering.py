"""The log numbers evaluations as the book's ``train_model_simple`` does, in both recipes; events count updates done."""

from __future__ import annotations

import json
import re

import pytest

from gpt_tui.cli import main
from gpt_tui.engine import events as ev
from gpt_tui.engine.trainer import Trainer, TrainConfig, resume_config

LOSS = r"\d+\.\d{3}(?: \([^)]*\))?"  # a loss, and what the evaluation read of the split when it says
EP_LINE = re.compile(rf"^Ep (\d+) \(Step (\d{{6}})\): Train loss {LOSS}, Val loss {LOSS}$")
BATCHES = re.compile(r"(\d+) training / \d+ validation batches")


def book_evaluations(epochs: int, per_epoch: int, eval_freq: int, max_updates: int | None = None) -> list[tuple[int, int]]:
    """(epoch, global_step) of each evaluation line ``train_model_simple`` prints, stopping after ``max_updates``."""
    printed, global_step = [], -1
    for epoch in range(epochs):
        for _ in range(per_epoch):
            if max_updates is not None and global_step + 1 >= max_updates:
                return printed
            global_step += 1  # after the update, as the book counts
            if global_step % eval_freq == 0:
                printed.append((epoch + 1, global_step))
    return printed


def last_update(epochs: int, per_epoch: int, max_updates: int | None) -> tuple[int, int]:
    """(epoch, global_step) of the run's last update, in the book's numbering."""
    updates = epochs * per_epoch if max_updates is None else min(max_updates, epochs * per_epoch)
    return (updates - 1) // per_epoch + 1, updates - 1


@pytest.fixture
def small(tmp_path, corpus_and_init):
    corpus, init = corpus_and_init
    path = tmp_path / "small.txt"
    path.write_text(corpus.read_text()[:1400], encoding="utf-8")
    return path, init


@pytest.mark.parametrize("flags", [
    dict(epochs=2, eval_freq=2),
    dict(epochs=1, eval_freq=1),
    dict(epochs=4, eval_freq=2, max_steps=5),  # the last update is an evaluation point: no final line
    dict(epochs=4, eval_freq=2, max_steps=6, grad_accum=2),  # it is not: one final line, with the book's label
])
def test_default_log_has_the_books_numbering(tmp_path, capsys, small, flags):
    path, init = small
    run = tmp_path / "run"
    args = ["train", "--data", str(path), "--init-from", str(init), "--run-dir", str(run), "--context-length", "16",
            "--batch-size", "2", "--eval-iter", "1", "--sample-tokens", "0", "--device", "cpu", "--precision", "fp32",
            "--quiet"] + [a for name, value in flags.items() for a in (f"--{name.replace('_', '-')}", str(value))]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    per_epoch = int(BATCHES.search("\n".join(lines))[1]) // flags.get("grad_accum", 1)
    max_updates = flags.get("max_steps")
    assert 4 <= per_epoch <= 12 and (max_updates is None or max_updates < flags["epochs"] * per_epoch)

    expected = book_evaluations(flags["epochs"], per_epoch, flags["eval_freq"], max_updates)
    last = last_update(flags["epochs"], per_epoch, max_updates)
    final_needed = last not in expected
    if final_needed:
        expected.append(last)  # gpt-tui's one addition to the book's lines: the state the run ends in
    got = [(int(m[1]), int(m[2])) for m in map(EP_LINE.match, lines) if m]
    assert got == expected
    if max_updates is not None:  # the two --max-steps cases are chosen to take each way
        assert final_needed == (max_updates == 6)

    # Before any update: the notebook's two lines, not a Step line; they are the untrained model's evaluation.
    first_ep = next(i for i, line in enumerate(lines) if EP_LINE.match(line))
    initial = [line for line in lines[:first_ep] if line.startswith(("Training loss: ", "Validation loss: "))]
    assert [line.split(":")[0] for line in initial] == ["Training loss", "Validation loss"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["type"] == "eval"]
    assert initial[0].split(": ")[1].split(" ")[0] == f"{evals[0]['train_loss']:.3f}"
    assert initial[1].split(": ")[1].split(" ")[0] == f"{evals[0]['val_loss']:.3f}"
    # The events count updates done: the book's label plus one, after the step of that number.
    assert [r["step"] for r in evals] == [0] + [step + 1 for _, step in expected]
    timeline = [(r["type"], r["step"]) for r in records if r["type"] in ("step", "eval")]
    for before, (kind, step) in zip(timeline, timeline[1:]):
        if kind == "eval":
            assert before == ("step", step)  # measured right after that update


def test_book_recipe_events_count_updates(tmp_path, small):
    path, init = small
    config = TrainConfig(recipe="book", data=(str(path),), context_length=16, batch_size=2, epochs=2, eval_freq=3,
                         sample_tokens=0, device="cpu", precision="fp32", run_dir=str(tmp_path / "run"))
    seen: list = []
    Trainer(config, seen.append, init_from=str(init)).run()
    updates, evaluated = 0, []
    for event in seen:
        if isinstance(event, ev.StepEvent):
            updates = event.step
        elif isinstance(event, ev.EvalEvent):
            assert event.step == updates  # drawn at the update it measured, as every other event
            evaluated.append(updates)
    per_epoch = next(e for e in seen if isinstance(e, ev.StartEvent)).train_batches
    assert evaluated == [step + 1 for _, step in book_evaluations(2, per_epoch, 3)] and len(evaluated) >= 2


def test_resume_continues_the_schedule_without_a_second_evaluation(tmp_path, small):
    """Stopped right after an evaluation point and resumed: the same evaluations, once each, as an unbroken run (and its final one)."""
    path, init = small

    def config(name: str) -> TrainConfig:
        return TrainConfig(data=(str(path),), context_length=16, batch_size=2, max_steps=6, eval_freq=3, eval_iter=1,
                           sample_tokens=0, device="cpu", precision="fp32", run_dir=str(tmp_path / name))

    def eval_steps(name: str) -> list[int]:
        records = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        return [r["step"] for r in records if r["type"] == "eval"]

    Trainer(config("unbroken"), init_from=str(init)).run()
    holder: dict = {}

    def stop_at_four(event):  # update 4 is the book's step 3, an evaluation point
        if isinstance(event, ev.EvalEvent) and event.step == 4:
            holder["trainer"].request_stop()

    holder["trainer"] = Trainer(config("broken"), stop_at_four, init_from=str(init))
    assert holder["trainer"].run().step == 4
    Trainer(resume_config(str(tmp_path / "broken")), resume=str(tmp_path / "broken")).run()
    assert eval_steps("broken") == eval_steps("unbroken") == [0, 1, 4, 6]
