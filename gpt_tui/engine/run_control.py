"""Stop, pause and checkpoint requests: set from any thread, read by the training loop between steps.

The app, a signal handler or the run directory's control watch may ask at
any moment; the loop looks only between optimizer steps, so a request never
cuts a step in half. Under torchrun one rank's request is every rank's: the
flags travel in the all-reduce that reads each step's loss
(gpt_tui.engine.train_step.step_report), so all ranks stop or save at the
same step.
"""

from __future__ import annotations

import threading

import torch

from gpt_tui.engine import distributed
from gpt_tui.engine.train_step import step_report


class RunControl:
    """The requests made of one run, and what the ranks agreed on at the last step."""

    def __init__(self, dist: distributed.DistInfo) -> None:
        self._dist = dist
        self._stop = threading.Event()
        self._unpaused = threading.Event()
        self._unpaused.set()
        self._checkpoint = threading.Event()
        self._synced_stop = False
        self._synced_checkpoint = False
        self.stop_reason: str | None = None  # the first reason given, for status.json

    def request_stop(self, reason: str | None = None) -> None:
        self.stop_reason = self.stop_reason or reason
        self._stop.set()
        self._unpaused.set()  # a paused run wakes up to stop

    def pause(self) -> None:
        self._unpaused.clear()

    def unpause(self) -> None:
        self._unpaused.set()

    def request_checkpoint(self) -> None:
        self._checkpoint.set()

    @property
    def paused(self) -> bool:
        return not self._unpaused.is_set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait_while_paused(self) -> None:
        self._unpaused.wait()

    def read_step(self, loss_sum: torch.Tensor, grad_norm: torch.Tensor) -> tuple[float, float]:
        """The step's loss and gradient norm; under torchrun, also what the ranks agree on stopping and saving."""
        report = step_report(loss_sum, grad_norm, self._dist, stop=self._stop.is_set(), checkpoint=self._checkpoint.is_set())
        if self._dist.enabled:
            self._synced_stop = self._synced_stop or report.stop
            self._synced_checkpoint = report.checkpoint
        return report.loss, report.grad_norm

    def stop_requested(self) -> bool:
        return self._synced_stop if self._dist.enabled else self._stop.is_set()

    def checkpoint_due(self) -> bool:
        return self._synced_checkpoint if self._dist.enabled else self._checkpoint.is_set()

    def checkpoint_taken(self) -> None:
        self._checkpoint.clear()
