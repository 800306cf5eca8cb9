"""A finished or live run's curves, read back from metrics.jsonl, for figures drawn after the fact.

The book plots the evaluation's train and validation losses against epochs,
with tokens seen on a second axis, and perplexity against tokens seen.
metrics.jsonl stores whole epochs and tokens; the fractional epoch of a step
comes from the run's steps per epoch (its start record and config), so an
evaluation at the end of epoch 2 sits at exactly 2.0, as in the book.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from gpt_tui.engine.events import EvalEvent, StartEvent, StepEvent, TrainEvent
from gpt_tui.engine.runs import CONFIG_FILE, read_metrics


@dataclass
class RunCurves:
    """One run's points, each list in the order logged."""

    name: str
    steps_per_epoch: int | None = None  # None: not known, epochs are whole numbers
    eval_steps: list[int] = field(default_factory=list)
    eval_tokens: list[int] = field(default_factory=list)
    eval_epochs: list[float] = field(default_factory=list)
    eval_train_losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    step_tokens: list[int] = field(default_factory=list)
    step_epochs: list[float] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.steps and not self.eval_steps

    @property
    def tokens_per_epoch(self) -> float | None:
        """Tokens one epoch takes (from the last step), which maps the epoch axis onto tokens seen."""
        if self.steps_per_epoch is None or not self.steps or self.steps[-1] <= 0:
            return None
        return self.step_tokens[-1] / self.steps[-1] * self.steps_per_epoch


def _grad_accum(run_dir: Path) -> int:
    try:
        config = json.loads((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 1
    value = config.get("grad_accum") if isinstance(config, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else 1


def steps_per_epoch(events: list[TrainEvent], grad_accum: int) -> int | None:
    """Optimizer steps in one epoch: from the run's last start record, else from where epoch 2 began."""
    starts = [e for e in events if isinstance(e, StartEvent)]
    if starts and starts[-1].train_batches // grad_accum > 0:
        return starts[-1].train_batches // grad_accum
    later = [e.step for e in events if isinstance(e, StepEvent) and e.epoch >= 2]
    return min(later) - 1 if later and min(later) > 1 else None


def curves_from_events(name: str, events: list[TrainEvent], grad_accum: int = 1) -> RunCurves:
    per_epoch = steps_per_epoch(events, grad_accum)
    curves = RunCurves(name, per_epoch)

    def epochs(step: int, epoch: int) -> float:
        return step / per_epoch if per_epoch else float(epoch)

    for event in events:
        if isinstance(event, StepEvent):
            curves.steps.append(event.step)
            curves.step_tokens.append(event.tokens_seen)
            curves.step_epochs.append(epochs(event.step, event.epoch))
            curves.step_losses.append(event.loss)
            curves.lrs.append(event.lr)
        elif isinstance(event, EvalEvent):
            curves.eval_steps.append(event.step)
            curves.eval_tokens.append(event.tokens_seen)
            curves.eval_epochs.append(epochs(event.step, event.epoch))
            curves.eval_train_losses.append(event.train_loss)
            curves.val_losses.append(event.val_loss)
    return curves


def read_curves(run_dir: str | Path) -> RunCurves:
    """The curves of the run in ``run_dir``, named after its folder."""
    run_dir = Path(run_dir)
    events, _ = read_metrics(run_dir)
    return curves_from_events(run_dir.name, events, _grad_accum(run_dir))
