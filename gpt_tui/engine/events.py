"""Typed events the trainer reports through a plain callback.

The CLI prints them, the app batches them onto its chart, and metrics.jsonl
stores them; all three read the same small dataclasses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Union


@dataclass(frozen=True)
class StartEvent:
    """Sent once before the first step: the sizes a user wants to see before waiting."""

    run_dir: str
    device: str
    num_parameters: int
    train_tokens: int
    val_tokens: int
    train_batches: int
    val_batches: int
    total_steps: int
    start_step: int  # > 0 when resuming


@dataclass(frozen=True)
class StepEvent:
    step: int  # optimizer steps done so far (1 after the first)
    epoch: int  # 1-based
    tokens_seen: int
    loss: float
    lr: float
    grad_norm: float
    tokens_per_sec: float
    elapsed: float  # seconds of training in this process
    total_steps: int


@dataclass(frozen=True)
class EvalEvent:
    step: int
    epoch: int
    tokens_seen: int
    train_loss: float
    val_loss: float


@dataclass(frozen=True)
class SampleEvent:
    step: int
    epoch: int
    prompt: str
    text: str


@dataclass(frozen=True)
class CheckpointEvent:
    step: int
    path: str


@dataclass(frozen=True)
class DoneEvent:
    step: int
    tokens_seen: int
    reason: str  # "finished" or "stopped"
    checkpoint: str | None
    elapsed: float


@dataclass(frozen=True)
class ErrorEvent:
    step: int
    message: str


TrainEvent = Union[StartEvent, StepEvent, EvalEvent, SampleEvent, CheckpointEvent, DoneEvent, ErrorEvent]
EventCallback = Callable[[TrainEvent], None]

_TYPE_NAMES: dict[type, str] = {
    StartEvent: "start",
    StepEvent: "step",
    EvalEvent: "eval",
    SampleEvent: "sample",
    CheckpointEvent: "checkpoint",
    DoneEvent: "done",
    ErrorEvent: "error",
}
_BY_NAME = {name: cls for cls, name in _TYPE_NAMES.items()}


def event_to_record(event: TrainEvent) -> dict[str, Any]:
    """A JSON-ready dict with a ``type`` key: one line of metrics.jsonl."""
    return {"type": _TYPE_NAMES[type(event)], **asdict(event)}


def record_to_event(record: dict[str, Any]) -> TrainEvent | None:
    """The event a metrics.jsonl line holds, or None for a type this version does not know."""
    cls = _BY_NAME.get(record.get("type", ""))
    if cls is None:
        return None
    names = cls.__dataclass_fields__
    return cls(**{k: v for k, v in record.items() if k in names})
