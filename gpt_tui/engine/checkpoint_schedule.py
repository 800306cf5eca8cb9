"""When a run saves a periodic checkpoint: every N steps, and whenever M minutes have passed since its last save.

The time bound is what limits the loss to a ``kill -9``, an out-of-memory kill
or a reboot: whatever the model size or device, at most M minutes of training
are lost. The step bound is for those who want checkpoints at fixed steps.
"""

from __future__ import annotations

import time
from typing import Callable


class CheckpointSchedule:
    """Asked after each step whether to save; restarted when training starts and after every save."""

    def __init__(self, every_steps: int, every_minutes: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_steps = every_steps  # 0: no step bound
        self.every_minutes = every_minutes  # 0: no time bound
        self._clock = clock
        self._last_save = clock()

    def due(self, step: int) -> bool:
        if self.every_steps and step % self.every_steps == 0:
            return True
        return self.every_minutes > 0 and self._clock() - self._last_save >= self.every_minutes * 60

    def restart(self) -> None:
        self._last_save = self._clock()
