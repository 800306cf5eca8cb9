"""Where a run stands: step, epoch, position inside the epoch, tokens seen, best loss, time trained.

These counters are what a full checkpoint stores beside the weights, the
AdamW state and the RNG to continue exactly: resuming at ``batch_in_epoch`` of
``epoch`` replays the very batches an unbroken run would have seen, and the
time trained goes on from where it was.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

RATE_WINDOW = 10  # steps the tokens/s figure averages over


@dataclass
class TrainProgress:
    step: int = 0
    epoch: int = 0  # 0-based epoch index in progress
    batch_in_epoch: int = 0  # micro-batches of the current epoch already consumed
    tokens_seen: int = 0
    best_val_loss: float = float("inf")
    elapsed_before: float = 0.0  # seconds trained by earlier processes of this run
    started: float | None = None  # perf_counter() when this process began training
    _rates: list[tuple[float, int]] = field(default_factory=list)  # (seconds, tokens) of the latest steps

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "TrainProgress":
        """The progress a full checkpoint's training state records."""
        return cls(
            step=state["step"],
            epoch=state["epoch"],
            batch_in_epoch=state["batch_in_epoch"],
            tokens_seen=state["tokens_seen"],
            best_val_loss=state.get("best_val_loss", float("inf")),
            elapsed_before=state.get("elapsed", 0.0),
        )

    def to_state(self, train_config: dict[str, Any]) -> dict[str, Any]:
        """The training state a full checkpoint stores, with the config the run continues with."""
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "tokens_seen": self.tokens_seen,
            "best_val_loss": self.best_val_loss if math.isfinite(self.best_val_loss) else None,
            "elapsed": self.elapsed(),
            "train_config": train_config,
        }

    def start_clock(self) -> None:
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds trained, over every process of this run."""
        return self.elapsed_before + (0.0 if self.started is None else time.perf_counter() - self.started)

    def next_epoch(self) -> None:
        self.epoch += 1
        self.batch_in_epoch = 0

    def advance(self, micro_batches: int, tokens: int) -> None:
        """Count a finished optimizer step."""
        self.step += 1
        self.batch_in_epoch += micro_batches
        self.tokens_seen += tokens

    def tokens_per_sec(self, seconds: float, tokens: int) -> float:
        """Note a step's time; the tokens per second over the latest RATE_WINDOW steps."""
        self._rates.append((seconds, tokens))
        del self._rates[:-RATE_WINDOW]
        return sum(n for _, n in self._rates) / max(sum(t for t, _ in self._rates), 1e-9)

    def record_val_loss(self, loss: float) -> None:
        if math.isfinite(loss):
            self.best_val_loss = min(self.best_val_loss, loss)
