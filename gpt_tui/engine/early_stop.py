"""``--early-stop N``: end a run once N evaluations in a row have not lowered the validation loss.

The count lives in the run's progress (TrainProgress.evals_since_best), which
every full checkpoint stores, so a resumed run goes on counting where the
interrupted one was and stops at the very evaluation an unbroken run would.
The run then stops as any stop does: it saves, and its status says why.
"""

from __future__ import annotations

from gpt_tui.engine.train_progress import TrainProgress


def early_stop_reason(progress: TrainProgress, patience: int | None) -> str | None:
    """Why the run stops now, or None to go on (``patience`` None or 0: never stop early)."""
    if not patience or progress.evals_since_best < patience:
        return None
    best = f" (best {progress.best_val_loss:.3f} at step {progress.best_step})" if progress.best_step is not None else ""
    return f"early stop: no val improvement in {patience} evaluations{best}"
