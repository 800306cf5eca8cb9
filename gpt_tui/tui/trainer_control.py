"""What the app may ask of a run it controls: a Trainer in this process, or a run in another (RemoteRun).

F5, F6 and F8 and the REPL's snapshots go through these calls alone, so the
app works the same whether the run trains on its worker thread or in a
background process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


class TrainerControl(Protocol):
    @property
    def run_dir(self) -> Path | None: ...

    @property
    def model(self) -> Any:
        """The live model, or None where the weights live in another process."""
        ...

    def request_stop(self, reason: str | None = None) -> None:
        """Finish the current step, save and end; ``reason`` is recorded where the run keeps its status."""
        ...

    def request_checkpoint(self) -> None: ...

    def pause(self) -> None: ...

    def unpause(self) -> None: ...

    def save(self) -> Any:
        """Save a checkpoint now (the run is paused between steps)."""
        ...
