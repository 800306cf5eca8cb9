import json
import math
import threading

import pytest
import torch

from gpt_tui.engine import events as ev
from gpt_tui.engine.checkpoint import latest_checkpoint, load_checkpoint
from gpt_tui.engine.trainer import Trainer, TrainConfig, resume_config
from gpt_tui.errors import UserError
from textgen import sample_text


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(sample_text(1500, seed=1), encoding="utf-8")
    return str(path)


def small_config(corpus: str, tmp_path, **changes) -> TrainConfig:
    base = dict(
        data=corpus,
        model="tiny",
        context_length=32,
        batch_size=4,
        max_steps=12,
        eval_freq=4,
        eval_iter=2,
        sample_tokens=5,
        device="cpu",
        precision="fp32",
        run_dir=str(tmp_path / "run"),
    )
    base.update(changes)
    return TrainConfig(**base)


def collect(config: TrainConfig, **kwargs):
    seen: list = []
    trainer = Trainer(config, seen.append, **kwargs)
    done = trainer.run()
    return trainer, seen, done


def test_events_and_metrics_file(corpus, tmp_path):
    trainer, seen, done = collect(small_config(corpus, tmp_path, max_steps=None, epochs=2))
    preparing = [e for e in seen if isinstance(e, ev.TokenizeProgress)]
    assert preparing and seen[: len(preparing)] == preparing  # the corpus is prepared before the run starts
    seen = seen[len(preparing) :]
    kinds = [type(e) for e in seen]
    assert kinds[0] is ev.StartEvent and kinds[-1] is ev.DoneEvent
    start = seen[0]
    assert start.train_tokens > start.val_tokens > 32
    steps = [e for e in seen if isinstance(e, ev.StepEvent)]
    assert [e.step for e in steps] == list(range(1, done.step + 1))
    assert done.step == start.total_steps == 2 * (start.train_batches)
    evals = [e for e in seen if isinstance(e, ev.EvalEvent)]
    assert evals[0].step == 0 and 10.0 < evals[0].val_loss < 11.5  # loss before training: ~ln(50257)
    assert [e.step for e in evals[1:]][: 2] == [1, 5]  # the book's schedule: after updates 1, 1 + eval_freq, ...
    samples = [e for e in seen if isinstance(e, ev.SampleEvent)]
    assert len(samples) == 2 and all(s.text.startswith("Every effort moves you") for s in samples)
    assert steps[-1].tokens_seen == done.step * 4 * 32
    assert all(e.tokens_per_sec > 0 and e.lr == pytest.approx(4e-4) for e in steps)

    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    step_records = [r for r in records if r["type"] == "step"]
    assert len(step_records) == done.step
    assert {"step", "epoch", "tokens_seen", "loss", "lr", "tokens_per_sec"} <= set(step_records[0])
    eval_records = [r for r in records if r["type"] == "eval"]
    assert {"step", "tokens_seen", "train_loss", "val_loss"} <= set(eval_records[0])
    assert json.loads((tmp_path / "run" / "config.json").read_text())["context_length"] == 32
    assert load_checkpoint(done.checkpoint).train_state["step"] == done.step


SHORT_TEXT = (
    "I had always thought Jack Gisburn rather a cheap genius--though a good fellow enough--so it was no "
    "great surprise to me to hear that, in the height of his glory, he had dropped his painting, married a "
    "rich widow, and established himself in a villa on the Riviera. The honour, being mine, was worth it."
)


def test_tiny_model_overfits_short_text(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text(SHORT_TEXT, encoding="utf-8")
    config = small_config(
        str(path), tmp_path, context_length=16, stride=4, train_ratio=0.7, max_steps=50, lr=3e-3, min_lr=3e-3,
        batch_size=4, eval_freq=50, sample_tokens=0,
    )
    _, seen, _ = collect(config)
    losses = [e.loss for e in seen if isinstance(e, ev.StepEvent)]
    final_train = [e for e in seen if isinstance(e, ev.EvalEvent)][-1].train_loss
    assert losses[0] > 9.0
    assert final_train < 0.5, final_train


class RecordingTrainer(Trainer):
    """Records the global gradient norm each time the optimizer steps."""

    norms: list[float]

    def _make_optimizer(self, model, device):
        optimizer = super()._make_optimizer(model, device)
        self.norms = []

        def hook(opt, args, kwargs):
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            self.norms.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item())

        optimizer.register_step_pre_hook(hook)
        return optimizer


def test_clipping_bounds_the_global_norm(corpus, tmp_path):
    clipped = RecordingTrainer(small_config(corpus, tmp_path, max_steps=4, grad_clip=0.05, run_dir=str(tmp_path / "a")))
    clipped.run()
    assert clipped.norms and max(clipped.norms) <= 0.05 + 1e-5
    free = RecordingTrainer(small_config(corpus, tmp_path, max_steps=4, grad_clip=0, run_dir=str(tmp_path / "b")))
    free.config.grad_clip = None
    free.run()
    assert max(free.norms) > 0.05  # without clipping the same run has larger gradients


def test_schedule_reaches_the_optimizer(corpus, tmp_path):
    config = small_config(corpus, tmp_path, max_steps=10, lr=1e-3, min_lr=1e-4, warmup_steps=4)
    _, seen, _ = collect(config)
    lrs = [e.lr for e in seen if isinstance(e, ev.StepEvent)]
    assert lrs[:4] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    assert lrs[4] == pytest.approx(1e-3) and lrs[-1] < 2e-4
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))


def _step_losses(run_dir) -> dict[int, float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if r["type"] == "step"}


def test_resume_is_exact(corpus, tmp_path):
    """N steps in one run == k steps, stop, resume, N-k steps: identical losses (dropout, accumulation, epochs)."""
    changes = dict(max_steps=14, drop_rate=0.1, grad_accum=2, lr=1e-3, min_lr=1e-4, warmup_steps=3, eval_freq=5)
    unbroken_dir = tmp_path / "unbroken"
    collect(small_config(corpus, tmp_path, run_dir=str(unbroken_dir), **changes))
    reference = _step_losses(unbroken_dir)
    assert len(reference) == 14

    broken_dir = tmp_path / "broken"
    holder: dict = {}

    def stop_at_six(event):
        if isinstance(event, ev.StepEvent) and event.step == 6:
            holder["trainer"].request_stop()

    trainer = Trainer(small_config(corpus, tmp_path, run_dir=str(broken_dir), **changes), stop_at_six)
    holder["trainer"] = trainer
    done = trainer.run()
    assert done.reason == "stopped" and done.step == 6
    torch.manual_seed(999)  # a different process state must not matter
    resumed = Trainer(resume_config(str(broken_dir)), resume=str(broken_dir))
    assert resumed.run().step == 14
    assert _step_losses(broken_dir) == reference  # exactly equal floats


def test_resume_refuses_weights_only(corpus, tmp_path):
    from gpt_tui.engine.checkpoint import save_checkpoint
    from gpt_tui.engine.model import GPTModel, get_preset

    path = save_checkpoint(tmp_path / "w.safetensors", GPTModel(get_preset("tiny", context_length=32)))
    with pytest.raises(UserError, match="weights only"):
        resume_config(str(path))


def test_stop_and_pause_from_another_thread(corpus, tmp_path, monkeypatch):
    from gpt_tui.engine.run_control import RunControl

    config = small_config(corpus, tmp_path, max_steps=10_000, eval_freq=1000)
    steps: list[int] = []
    stepped_while_held: list[int] = []
    first_step, held, resumed = threading.Event(), threading.Event(), threading.Event()
    hold = RunControl.wait_while_paused

    def wait_while_paused(control: RunControl) -> None:
        if control.paused:
            held.set()  # the loop has reached its hold between steps
        hold(control)

    monkeypatch.setattr(RunControl, "wait_while_paused", wait_while_paused)

    def on_event(event):
        if isinstance(event, ev.StepEvent):
            steps.append(event.step)
            first_step.set()
            if held.is_set():
                if trainer.paused:
                    stepped_while_held.append(event.step)
                else:
                    resumed.set()

    trainer = Trainer(config, on_event)
    thread = threading.Thread(target=trainer.run)
    thread.start()
    assert first_step.wait(60)
    asked_at = len(steps)
    trainer.pause()
    assert held.wait(60), "the run never held"
    assert len(steps) <= asked_at + 1  # at most the step in flight finished
    assert trainer.paused and not stepped_while_held
    trainer.unpause()
    assert resumed.wait(60), "the run did not go on after unpause"
    trainer.request_stop()
    thread.join(60)
    assert not thread.is_alive()
    assert not stepped_while_held
    assert len(steps) < 10_000
    assert latest_checkpoint(tmp_path / "run").name.endswith(f"{steps[-1]:08d}.safetensors")


def test_nan_loss_stops_and_keeps_the_good_checkpoint(corpus, tmp_path):
    config = small_config(corpus, tmp_path, max_steps=8, checkpoint_every=2, lr=1e9, min_lr=1e9, grad_clip=0)
    config.grad_clip = None
    trainer = Trainer(config)
    with pytest.raises(UserError, match="Lower --lr"):
        trainer.run()
    # every checkpoint left behind holds finite weights
    for path in (tmp_path / "run" / "checkpoints").glob("*.safetensors"):
        state = load_checkpoint(path).model_state
        assert all(torch.isfinite(t).all() for t in state.values())


def test_bad_config_values_are_refused():
    for changes, pattern in [
        ({"batch_size": 0}, "batch-size"),
        ({"lr": -1.0}, "lr"),
        ({"train_ratio": 1.0}, "train-ratio"),
        ({"min_lr": 1.0}, "min-lr"),
        ({"precision": "fp8"}, "precision"),
        ({"grad_accum": 0}, "grad-accum"),
    ]:
        with pytest.raises(UserError, match=pattern):
            TrainConfig(**changes).validate()
    TrainConfig().validate()  # the defaults themselves are a valid configuration
    for lr in (1e-9, 3e-4, 5.0):  # any lr > 0
        TrainConfig(lr=lr).validate()
    with pytest.raises(UserError, match="lr must be greater than 0"):
        TrainConfig(lr=0.0).validate()
    for lr in (math.nan, math.inf):
        with pytest.raises(UserError, match="lr must be a finite number"):
            TrainConfig(lr=lr).validate()
