"""Every message a worker thread or a run follower sends the app.

Workers never assign the app's state or touch its widgets: they post one of
these, and a handler on the UI thread does the rest. Posting is thread-safe,
so this is the one way results cross from a worker to the screen; keeping the
kinds in one module shows at a glance everything that can arrive.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:
    from gpt_tui.tui.model_source import LoadedModel
    from gpt_tui.tui.saved_run import SavedRun
    from gpt_tui.tui.trainer_control import TrainerControl


class DevicesFound(Message):
    """The devices torch can train on, found once torch has loaded after the first frame."""

    def __init__(self, devices: list[str]) -> None:
        super().__init__()
        self.devices = devices


class CheckpointSaved(Message):
    """A checkpoint file was written (F8, a save from the REPL's model, an import)."""

    def __init__(self, path: str, quiet: bool = False, untrained_label: str = "") -> None:
        """``untrained_label``: the model saved had never been trained (e.g. "untrained tiny"), so the notice warns."""
        super().__init__()
        self.path = path
        self.quiet = quiet
        self.untrained_label = untrained_label


class WeightsLoaded(Message):
    """A load of weights ended: the REPL talks to ``loaded`` from now on; None: the load failed."""

    def __init__(self, loaded: "LoadedModel | None") -> None:
        super().__init__()
        self.loaded = loaded


class ReplaceAsked(Message):
    """An import would replace a model of the same name: the user decides."""

    def __init__(self, source: str, existing: Path) -> None:
        super().__init__()
        self.source = source
        self.existing = existing


class TrainerReady(Message):
    """The training worker built its trainer; it runs once ``handled`` is set on the UI thread."""

    def __init__(self, trainer: "TrainerControl", handled: threading.Event) -> None:
        super().__init__()
        self.trainer = trainer
        self.handled = handled


class RunHistoryRead(Message):
    """A continued run's logged events up to its checkpoint, for the chart and counters."""

    def __init__(self, events: list[Any], grad_accum: int) -> None:
        super().__init__()
        self.events = events
        self.grad_accum = grad_accum


class SavedRunRead(Message):
    """A run read from disk (``--run-dir``, or the newest run offered on launch).

    ``pending``: the model source's wait for the run's checkpoint, begun before the run was read.
    """

    def __init__(self, saved: "SavedRun", offer: bool, pending: threading.Event | None = None) -> None:
        super().__init__()
        self.saved = saved
        self.offer = offer
        self.pending = pending


class BackgroundStarted(Message):
    """A training process that outlives the app has started in ``run_dir``."""

    def __init__(self, run_dir: Path, pid: int) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.pid = pid


class RunWeightsLoaded(Message):
    """An attached run's weights were loaded for the REPL (``found`` is None when there were none)."""

    def __init__(self, weights: Any, found: "tuple[LoadedModel, int | None] | None") -> None:
        super().__init__()
        self.weights = weights  # the RunWeights that asked
        self.found = found


class RunsRead(Message):
    """The Runs screen's list, read on a worker; None when the read failed."""

    def __init__(self, rows: list[Any] | None) -> None:
        super().__init__()
        self.rows = rows


class AttachmentFailed(Message):
    """A run could not be attached to."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error


class AttachmentStarted(Message):
    """A run follower is mounted: the panes start over for its run."""

    def __init__(self, run_dir: Path, refresher: Any) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.refresher = refresher  # called before each reply, to fetch the run's live weights


class AttachmentEnded(Message):
    """A run follower went away: the app no longer controls that run."""

    def __init__(self, remote: "TrainerControl", refresher: Any) -> None:
        super().__init__()
        self.remote = remote
        self.refresher = refresher


@dataclass(frozen=True)
class RunSeen:
    """What one poll of a followed run found."""

    run_dir: Path
    events: list[Any]
    quiet: bool  # the run's past, or its log rewritten: folded in without notifications
    reset: bool  # its log was rewritten: the chart starts over
    live: bool
    status: dict[str, Any]
    stale_note: str | None  # said once when the run's process is gone without a word
    resume_from: str | None  # what F5 continues once the run has ended


class RunPolled(Message):
    """A followed run's new events and state; ``remote`` relays F5, F6 and F8 to it while it lives."""

    def __init__(self, seen: RunSeen, remote: "TrainerControl") -> None:
        super().__init__()
        self.seen = seen
        self.remote = remote


class NoticeRaised(Message):
    """The engine said something worth knowing that is no error (gpt_tui.errors.Notice), from any thread."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class ExportWritten(Message):
    """The chart's PNG or the metrics' CSV was written into the run directory (``path``), or why not (``error``)."""

    def __init__(self, what: str, path: Path | None, error: str | None) -> None:
        super().__init__()
        self.what = what  # "chart" or "metrics"
        self.path = path
        self.error = error
