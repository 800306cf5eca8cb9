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
    precision: str = ""  # the format per phase and why (gpt_tui.engine.precision.precision_line); "": not recorded
    # the book recipe's losses of the untrained model over both whole splits (its "Training loss:" lines)
    initial_train_loss: float | None = None
    initial_val_loss: float | None = None
    train_documents: int = 0  # documents in each split (gpt_tui.engine.corpus_split); 0: not recorded
    val_documents: int = 0
    # the model's shape (gpt_tui.engine.model.GPTConfig); 0 in records written before events carried it
    n_layers: int = 0
    n_heads: int = 0
    emb_dim: int = 0
    context_length: int = 0


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


@dataclass(frozen=True)
class TokenizeProgress:
    """How far preparing the corpus has got: sent while its parts are tokenized, before StartEvent.

    Shown on one updating line (CLI) and in the training pane; not stored in
    metrics.jsonl, as it describes the corpus, not the run.
    """

    files_done: int = 0  # parts finished, cached ones included
    files_total: int = 0
    cached_files: int = 0  # parts read back from the token cache
    bytes_done: int = 0  # of the parts being tokenized
    bytes_total: int = 0
    tokens: int = 0  # ids written so far
    elapsed: float = 0.0  # seconds since tokenizing began
    done: bool = False  # the last report: every part is ready

    @property
    def bytes_per_sec(self) -> float:
        return self.bytes_done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate so far, or None before there is a rate."""
        rate = self.bytes_per_sec
        return max(0.0, (self.bytes_total - self.bytes_done) / rate) if rate > 0 and self.bytes_total else None

    def line(self) -> str:
        """One line: files, MB/s, tokens and ETA."""
        eta = self.eta
        left = "done" if self.done else ("ETA --" if eta is None else f"ETA {eta:.0f}s")
        cached = f" ({self.cached_files:,} cached)" if self.cached_files else ""
        return (
            f"Tokenizing: {self.files_done:,}/{self.files_total:,} files{cached}, "
            f"{self.bytes_per_sec / 1e6:.1f} MB/s, {self.tokens:,} tokens, {left}"
        )


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
