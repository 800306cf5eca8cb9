"""How a headless training process ends in order: on a signal, or when its output's reader went away.

Ctrl+C, SIGTERM and SIGHUP (the terminal closed) ask the trainer to finish the
step and save; a second one leaves at once (checkpoints are replaced
atomically, so that cannot damage one). SIGUSR1 asks for a checkpoint. A pipe
whose reader exited (``| head``) stops the run the same way, where SIGPIPE
would have killed it unsaved. Each stop names its reason, which status.json keeps.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from typing import Any, Iterator

from gpt_tui.cli import console

STOP_REASONS = {
    "SIGINT": "interrupted (SIGINT)",
    "SIGTERM": "terminated (SIGTERM)",
    "SIGHUP": "terminal closed (SIGHUP)",
}
OUTPUT_CLOSED = "output closed (broken pipe)"


@contextlib.contextmanager
def stop_in_order(trainer: Any) -> Iterator[None]:
    """While the block runs, signals and a broken pipe stop ``trainer`` (a Trainer) with a saved checkpoint."""
    interrupts = 0

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            console.write_now("\nStopped at once; the last saved checkpoint is intact.\n")
            os._exit(130)
        name = signal.Signals(signum).name
        console.write_now(f"\n{name}: finishing this step and saving a checkpoint (again to quit at once)...\n")
        trainer.request_stop(STOP_REASONS.get(name, name))

    def on_checkpoint_signal(_signum: int, _frame: Any) -> None:
        trainer.request_checkpoint()  # `gpt-tui attach` and `kill -USR1` ask for a checkpoint this way

    def on_output_failure(exc: OSError) -> None:
        if exc.errno == errno.EPIPE:
            trainer.request_stop(OUTPUT_CLOSED)

    previous = {}
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            previous[getattr(signal, name)] = signal.signal(getattr(signal, name), on_signal)
    if hasattr(signal, "SIGUSR1"):
        previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, on_checkpoint_signal)
    forget = console.on_failure(on_output_failure)
    try:
        yield
    finally:
        forget()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
