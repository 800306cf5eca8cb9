"""Time left in a run, from a smoothed pace of training steps alone.

Dividing the elapsed time by the steps done counts every evaluation, sample
and checkpoint save as training, and after a resume divides the run's whole
past by this process's few steps. Here the pace is a moving average of the
seconds between consecutive steps, and an interval that held anything else
(an evaluation, a sample, a save, a pause by the user) is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpt_tui.engine.events import CheckpointEvent, EvalEvent, SampleEvent, StartEvent, StepEvent

PACE_DECAY = 0.9  # each interval moves the pace by a tenth
# An interval this many times the usual pace was a pause (the user's, or a slow save) rather than training.
PAUSE_FACTOR = 20.0
PAUSING_EVENTS = (EvalEvent, SampleEvent, CheckpointEvent)


@dataclass
class StepPace:
    """Seconds per step, folded from the trainer's events in order."""

    seconds_per_step: float | None = None
    _last_step: int | None = None
    _last_elapsed: float = 0.0

    def apply(self, event: Any) -> None:
        if isinstance(event, StartEvent):
            self._last_step = None  # a new process: its first step also paid for start-up
        elif isinstance(event, PAUSING_EVENTS):
            self._last_step = None  # the next interval holds this pause
        elif isinstance(event, StepEvent):
            self._step(event.step, event.elapsed)

    def _step(self, step: int, elapsed: float) -> None:
        last, last_elapsed = self._last_step, self._last_elapsed
        self._last_step, self._last_elapsed = step, elapsed
        if last is None or step <= last or elapsed < last_elapsed:
            return
        pace = (elapsed - last_elapsed) / (step - last)
        if self.seconds_per_step is None:
            self.seconds_per_step = pace
        elif pace <= PAUSE_FACTOR * self.seconds_per_step:
            self.seconds_per_step = PACE_DECAY * self.seconds_per_step + (1 - PACE_DECAY) * pace

    def eta(self, step: int, total_steps: int) -> float | None:
        """Seconds until ``total_steps`` at the current pace; None before two steps in a row were seen."""
        if self.seconds_per_step is None or total_steps <= 0:
            return None
        return max(0, total_steps - step) * self.seconds_per_step
