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
from pathlib import Path
from typing import Any

from gpt_tui.engine import file_checks as fc
from gpt_tui.errors import UserError

RATE_WINDOW = 10  # steps the tokens/s figure averages over


@dataclass
class TrainProgress:
    step: int = 0
    epoch: int = 0  # 0-based epoch index in progress
    batch_in_epoch: int = 0  # micro-batches of the current epoch already consumed
    tokens_seen: int = 0
    best_val_loss: float = float("inf")
    best_step: int | None = None  # the step of the evaluation that gave best_val_loss
    evals_since_best: int = 0  # evaluations since then that did not improve on it (--early-stop counts these)
    elapsed_before: float = 0.0  # seconds trained by earlier processes of this run
    started: float | None = None  # perf_counter() when this process began training
    _rates: list[tuple[float, int]] = field(default_factory=list)  # (seconds, tokens) of the latest steps

    @classmethod
    def from_state(cls, state: dict[str, Any], where: str | Path = "the checkpoint") -> "TrainProgress":
        """The progress a full checkpoint's training state records, each value checked (``where`` names the file)."""
        state = fc.mapping(state, "train_state", where)
        counters = {}
        for key in ("step", "epoch", "batch_in_epoch", "tokens_seen"):
            if key not in state:
                raise UserError(f"{where}: the training state has no {key}, so the run cannot continue exactly; "
                                "resume from an earlier checkpoint, or start from its weights with --init-from.")
            counters[key] = fc.whole(state[key], f"train_state.{key}", where)
        best, best_step = state.get("best_val_loss"), state.get("best_step")
        return cls(
            **counters,
            best_val_loss=float("inf") if best is None else fc.real(best, "train_state.best_val_loss", where),
            best_step=None if best_step is None else fc.whole(best_step, "train_state.best_step", where),
            evals_since_best=fc.whole(state.get("evals_since_best", 0), "train_state.evals_since_best", where),
            elapsed_before=fc.real(state.get("elapsed", 0.0), "train_state.elapsed", where),
        )

    def to_state(self, train_config: dict[str, Any]) -> dict[str, Any]:
        """The training state a full checkpoint stores, with the config the run continues with."""
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "tokens_seen": self.tokens_seen,
            "best_val_loss": self.best_val_loss if math.isfinite(self.best_val_loss) else None,
            "best_step": self.best_step,
            "evals_since_best": self.evals_since_best,
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

    def record_val_loss(self, loss: float) -> bool:
        """Count an evaluation at the current step; True when it improves on the best: strictly lower, no margin.

        Any real decrease counts, however small, so a run creeping down is not
        stopped early; a NaN or infinite loss never improves.
        """
        if math.isfinite(loss) and loss < self.best_val_loss:
            self.best_val_loss, self.best_step, self.evals_since_best = loss, self.step, 0
            return True
        self.evals_since_best += 1
        return False
