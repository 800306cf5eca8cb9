"""The weights an attached app's REPL talks to: a model-only copy of a training run, written on request.

Kept out of the trainer's loop: it runs on the control thread, takes its copy
between optimizer steps (as the app's own REPL does), so training waits only
for the copy, and a failure is not the run's: the asker waits in vain and
keeps what it had.
"""

from __future__ import annotations

import copy
from typing import Any

from gpt_tui.engine import checkpoint as ckpt
from gpt_tui.engine.runs import WEIGHTS_FILE
from gpt_tui.errors import UserError
Trainer = Any  # gpt_tui.engine.trainer.Trainer, which calls in here (named only, so no import cycle)


def write_weights_snapshot(trainer: Trainer) -> None:
    """Write ``trainer``'s current weights, model only, to runs.WEIGHTS_FILE in its run directory."""
    if trainer.model is None or not trainer.dist.is_main:
        return
    try:
        with trainer._lock:  # a step that just ended may not be counted yet: the step named can be one behind
            step = trainer.step
            snapshot = copy.deepcopy(trainer.model)
        ckpt.save_checkpoint(trainer.run_dir / WEIGHTS_FILE, snapshot, train_state={"step": step},
                             meta={"snapshot_of": str(trainer.run_dir)})
    except (UserError, OSError, RuntimeError):
        return
