"""Typed events the trainer reports through a plain callback.

The CLI prints them, the app batches them onto its chart, and metrics.jsonl
stores them; all three read the same small dataclasses.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields
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
    eval_every: int = 0  # steps between evaluations (gpt_tui.engine.evaluation.eval_interval); 0: not recorded
    peak_flops: float | None = None  # the device peak MFU is measured against (gpt_tui.engine.mfu)
    peak_source: str = ""  # its number format and origin: "bf16, measured"


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
    mfu: float | None = None  # model FLOPs utilization, a fraction of StartEvent.peak_flops
    peak_memory: int | None = None  # bytes: the GPU allocator's high-water mark, or the process's peak RSS


@dataclass(frozen=True)
class EvalEvent:
    step: int
    epoch: int
    tokens_seen: int
    train_loss: float  # the evaluation's estimate on the training split, not a step's loss
    val_loss: float
    # predictions each split's evaluation scored, of how many in the split (gpt_tui.engine.eval_coverage);
    # 0 in records written before evaluations counted them
    train_tokens: int = 0
    val_tokens: int = 0
    train_split_tokens: int = 0
    val_split_tokens: int = 0


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
    stop_reason: str | None = None  # why a stopped run stopped: "early stop: ...", "asked to stop ..."


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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not a step


# What a field's annotation asks of a value read back from disk, and how to say it is not that.
_FIELD_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "int": (_is_int, "an integer"),
    "float": (lambda v: _is_int(v) or isinstance(v, float), "a number"),
    "str": (lambda v: isinstance(v, str), "text"),
    "str | None": (lambda v: v is None or isinstance(v, str), "text"),
    "float | None": (lambda v: v is None or _is_int(v) or isinstance(v, float), "a number"),
    "int | None": (lambda v: v is None or _is_int(v), "an integer"),
}


def record_to_event(record: Any) -> TrainEvent | None:
    """The event a metrics.jsonl line holds, or None for a type this version does not know.

    Raises ValueError saying which field is wrong when the line is not a
    well-formed record (a damaged or hand-edited file): readers skip it or
    report the run damaged rather than fail on it later, far from the cause.
    """
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    kind = record.get("type")
    cls = _BY_NAME.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return None
    values: dict[str, Any] = {}
    for item in fields(cls):
        if item.name not in record:
            if item.default is MISSING and item.default_factory is MISSING:
                raise ValueError(f"{kind} record has no {item.name}")
            continue
        value = record[item.name]
        check, what = _FIELD_CHECKS.get(str(item.type), (None, ""))
        if check is not None and not check(value):
            raise ValueError(f"{item.name} is not {what}")
        values[item.name] = float(value) if item.type in ("float", "float | None") and value is not None else value
    return cls(**values)
