"""When a run evaluates, and the step number its log prints: chapter 5's ``train_model_simple``.

The book's ``global_step`` starts at -1 and counts after each update; it
evaluates when ``global_step % eval_freq == 0``, so after updates 1, 1 + k,
1 + 2k, ... and prints ``global_step``, one less than the updates done. Both
recipes evaluate on that schedule, so a log reads line for line against the
book's. Everything else (events, checkpoints, metrics.jsonl, charts) counts
updates done; only the printed label is the book's.
"""

from __future__ import annotations


def book_step(updates: int) -> int:
    """The book's ``global_step`` after ``updates`` updates: the "Step" a log line prints."""
    return updates - 1


def evaluates_after(updates: int, every: int) -> bool:
    """Whether the book's loop evaluates right after update number ``updates`` (counted from 1)."""
    return updates >= 1 and book_step(updates) % every == 0


def final_evaluation_due(updates: int, every: int, start: int) -> bool:
    """One more evaluation at the end of a run, after its last update, unless that update was already one.

    ``start`` is the step the run began (or resumed) at: a run that did no
    update of its own has nothing new to measure.
    """
    return updates > start and not evaluates_after(updates, every)


def epoch_of_last_update(epoch: int, batch_in_epoch: int, updates: int) -> int:
    """The book's "Ep N" (from 1): the epoch of the update just done, the previous one when a new epoch has just begun.

    ``epoch`` and ``batch_in_epoch`` are the run's position (epoch from 0); the
    final evaluation comes after the last epoch has been closed.
    """
    return epoch if updates > 0 and epoch > 0 and batch_in_epoch == 0 else epoch + 1
