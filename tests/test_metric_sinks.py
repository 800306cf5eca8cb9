"""The CSV and TensorBoard files a run writes hold exactly what its metrics.jsonl holds."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

from gpt_tui.engine import events as ev
from gpt_tui.engine.checkpoint_names import CHECKPOINTS_SUBDIR, checkpoint_name
from gpt_tui.engine.metric_sinks import eval_column
from gpt_tui.engine.runs import METRICS_CSV_FILE, TENSORBOARD_SUBDIR, read_metrics
from gpt_tui.engine.trainer import Trainer, TrainConfig, resume_config

REPO = Path(__file__).resolve().parents[1]


def _config(corpus, run_dir: Path, **changes) -> TrainConfig:
    base = dict(
        data=str(corpus), context_length=16, batch_size=2, max_steps=7, eval_freq=3, eval_iter=1,
        sample_tokens=0, device="cpu", precision="fp32", run_dir=str(run_dir), warmup_steps=2, min_lr=1e-5,
    )
    base.update(changes)
    return TrainConfig(**base)


def _train(corpus_and_init, run_dir: Path, stop_at: int | None = None, **changes) -> None:
    corpus, init = corpus_and_init
    holder: dict = {}

    def on_event(event):
        if stop_at is not None and isinstance(event, ev.StepEvent) and event.step == stop_at:
            holder["trainer"].request_stop()

    holder["trainer"] = trainer = Trainer(_config(corpus, run_dir, **changes), on_event, init_from=str(init))
    trainer.run()


def _csv(run_dir: Path) -> tuple[list[str], list[dict[str, str]]]:
    text = (run_dir / METRICS_CSV_FILE).read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    return text.splitlines()[0].split(","), rows


def _same(cell: str, value: float) -> bool:
    number = float(cell)
    return number == value or (math.isnan(number) and math.isnan(value))


def _check_csv_matches_metrics(run_dir: Path) -> None:
    events, _ = read_metrics(run_dir)
    steps = {e.step: e for e in events if isinstance(e, ev.StepEvent)}
    evals = {e.step: e for e in events if isinstance(e, ev.EvalEvent)}
    _, rows = _csv(run_dir)
    assert [int(r["step"]) for r in rows] == sorted(set(steps) | set(evals))  # one row a step, in order
    for row in rows:
        step = int(row["step"])
        if step in steps:
            event = steps[step]
            for item in fields(event):  # every field, those added later (MFU, memory) included
                value = getattr(event, item.name)
                assert row[item.name] == "" if value is None else _same(row[item.name], value), (step, item.name)
            assert _same(row["perplexity"], math.exp(event.loss))
        else:
            assert row["loss"] == row["lr"] == ""  # the evaluation before training: no step of its own
        if step in evals:
            event = evals[step]
            assert int(row["tokens_seen"]) == event.tokens_seen
            assert _same(row["val_loss"], event.val_loss) and _same(row["eval_train_loss"], event.train_loss)
            for item in fields(event):
                value = getattr(event, item.name)
                column = item.name if item.name in ("step", "epoch", "tokens_seen", "val_loss") else eval_column(item.name)
                assert row[column] == "" if value is None else _same(row[column], value), (step, item.name)
            assert _same(row["val_perplexity"], math.exp(event.val_loss))
        else:
            assert row["val_loss"] == row["eval_train_loss"] == ""


def _scalars(run_dir: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir / TENSORBOARD_SUBDIR))
    accumulator.Reload()
    found: dict[str, dict[int, float]] = {}
    for tag in accumulator.Tags()["scalars"]:
        points = accumulator.Scalars(tag)
        found[tag] = {point.step: point.value for point in points}
        assert len(found[tag]) == len(points), f"{tag} holds a step twice"
    return found


def _float32(value: float) -> float:
    import numpy as np

    return float(np.float32(value))


def _check_tensorboard_matches_metrics(run_dir: Path) -> None:
    scalars = _scalars(run_dir)
    events, _ = read_metrics(run_dir)
    steps = [e for e in events if isinstance(e, ev.StepEvent)]
    evals = [e for e in events if isinstance(e, ev.EvalEvent)]
    expected = {
        "train/loss": {e.step: e.loss for e in steps},
        "train/perplexity": {e.step: math.exp(e.loss) for e in steps},
        "train/lr": {e.step: e.lr for e in steps},
        "train/grad_norm": {e.step: e.grad_norm for e in steps},
        "train/tokens_per_sec": {e.step: e.tokens_per_sec for e in steps},
        "val/loss": {e.step: e.val_loss for e in evals},
        "val/perplexity": {e.step: math.exp(e.val_loss) for e in evals},
        "eval/train_loss": {e.step: e.train_loss for e in evals},
        "eval/train_perplexity": {e.step: math.exp(e.train_loss) for e in evals},
    }
    for item in fields(ev.StepEvent):  # fields added later (MFU, memory) too, where the run logged them
        if item.name not in ("step", "epoch", "tokens_seen", "elapsed", "total_steps"):
            values = {e.step: getattr(e, item.name) for e in steps if getattr(e, item.name) is not None}
            expected.setdefault(f"train/{item.name}", values)
    for item in fields(ev.EvalEvent):  # the tokens an evaluation covered, where logged
        if item.name not in ("step", "epoch", "tokens_seen", "train_loss", "val_loss"):
            expected[f"eval/{item.name}"] = {e.step: getattr(e, item.name) for e in evals if getattr(e, item.name) is not None}
    expected = {tag: values for tag, values in expected.items() if values}
    assert sorted(scalars) == sorted(expected)
    for tag, values in expected.items():
        assert scalars[tag] == {step: _float32(v) for step, v in values.items()}, tag  # TensorBoard keeps float32


def test_csv_and_tensorboard_hold_metrics_jsonl_across_a_resume(corpus_and_init, tmp_path):
    """A run stopped at step 6 and resumed from its step-4 checkpoint (as after a crash): each file reads as one run."""
    run_dir = tmp_path / "run"
    _train(corpus_and_init, run_dir, stop_at=6, tensorboard=True, checkpoint_every=2)
    _check_csv_matches_metrics(run_dir)
    _check_tensorboard_matches_metrics(run_dir)
    _, first = _csv(run_dir)
    assert [int(r["step"]) for r in first] == list(range(0, 7))
    assert [r["step"] for r in first if r["val_loss"]] == ["0", "1", "4"]  # the evaluations' columns, on their steps

    checkpoint = run_dir / CHECKPOINTS_SUBDIR / checkpoint_name(4)
    config = resume_config(str(checkpoint))
    config.max_steps = 8
    Trainer(config, resume=str(checkpoint)).run()
    header, rows = _csv(run_dir)
    lines = (run_dir / METRICS_CSV_FILE).read_text(encoding="utf-8").splitlines()
    assert lines.count(",".join(header)) == 1 and header[0] == "step"
    assert [int(r["step"]) for r in rows] == list(range(0, 9))  # steps 5 and 6 once each: the resumed run's
    _check_csv_matches_metrics(run_dir)
    assert len(list((run_dir / TENSORBOARD_SUBDIR).glob("events.out.tfevents.*"))) == 2
    _check_tensorboard_matches_metrics(run_dir)  # the first process's steps 5 and 6 are dropped by TensorBoard


def test_tensorboard_is_off_unless_asked(corpus_and_init, tmp_path):
    run_dir = tmp_path / "run"
    _train(corpus_and_init, run_dir, max_steps=2)
    assert not (run_dir / TENSORBOARD_SUBDIR).exists()
    assert (run_dir / METRICS_CSV_FILE).is_file()


def test_tensorboard_missing_is_one_line(corpus_and_init, tmp_path):
    """Without the extra, --tensorboard is refused before training, with the pip line; nothing is written."""
    corpus, _ = corpus_and_init
    code = (
        "import sys; sys.modules['tensorboard'] = None\n"
        "from gpt_tui.cli import main\n"
        f"sys.exit(main(['train', '--data', {str(corpus)!r}, '--device', 'cpu', '--max-steps', '1', "
        f"'--run-dir', {str(tmp_path / 'run')!r}, '--tensorboard']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and 'pip install "gpt-tui[tensorboard]"' in lines[0], result.stderr
    assert not (tmp_path / "run").exists()
