"""Folding training events into the app's state: the counters and the chart's curves.

Every place that shows a run (the app's own trainer, a run followed in another
process, a run read from disk) goes through this one function, so a new kind of
event is taught to the app in one place.
"""

from __future__ import annotations

from typing import Any, Iterable

from gpt_tui.tui.chart_data import LossHistory
from gpt_tui.tui.progress import TrainingProgress


def fold_events(progress: TrainingProgress, history: LossHistory, events: Iterable[Any]) -> None:
    """Apply each event to the progress counters and the loss history, in order."""
    for event in events:
        progress.apply(event)
        history.add(event)
