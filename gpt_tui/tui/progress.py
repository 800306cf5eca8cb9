"""What the training pane shows, folded from trainer events; no widgets, so it tests on its own."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpt_tui.engine.eta import StepPace
from gpt_tui.engine.eval_coverage import coverage_text
from gpt_tui.engine.events import (
    CheckpointEvent, DoneEvent, ErrorEvent, EvalEvent, SampleEvent, StartEvent, StepEvent, TokenizeProgress,
)

# States a run moves through; "idle" before the first start.
ACTIVE_STATES = ("preparing", "running", "paused", "stopping")


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "--:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes:02d}:{secs:02d}"


def format_count(n: float) -> str:
    """12 345 -> 12.3k, 4 200 000 -> 4.2M: tokens and parameters at a glance."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= limit:
            return f"{n / limit:.1f}{suffix}"
    return f"{n:.0f}"


def format_loss(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    return f"{value:.3f}"


@dataclass
class TrainingProgress:
    state: str = "idle"
    run_dir: str = ""
    device: str = ""
    num_parameters: int = 0
    train_tokens: int = 0
    val_tokens: int = 0
    train_documents: int = 0  # 0: not said (a single document, or a run from before documents were counted)
    val_documents: int = 0
    steps_per_epoch: int = 0
    start_step: int = 0
    step: int = 0
    total_steps: int = 0
    epoch: int = 0
    tokens_seen: int = 0
    lr: float = 0.0
    loss: float | None = None
    train_loss: float | None = None  # last evaluation
    val_loss: float | None = None
    best_val_loss: float | None = None
    val_coverage: str = ""  # what the last evaluation read of the validation split: "13.8k tokens, whole split"
    tokens_per_sec: float = 0.0
    mfu: float | None = None  # model FLOPs utilization of the latest step, a fraction of peak_flops
    peak_memory: int | None = None  # bytes
    peak_flops: float | None = None  # the device peak MFU is against, and where it came from
    peak_source: str = ""
    elapsed: float = 0.0
    checkpoint: str = ""
    message: str = ""  # the last error, or why the run ended
    grad_accum: int = 1
    n_layers: int = 0  # the model's shape, from the run's start (0: not reported)
    n_heads: int = 0
    emb_dim: int = 0
    context_length: int = 0
    corpus_progress: str = ""  # while the corpus is tokenized: files, MB/s, tokens, ETA
    pace: StepPace = field(default_factory=StepPace)  # seconds per step, evaluations and pauses left out

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def run_name(self) -> str:
        return Path(self.run_dir).name if self.run_dir else ""

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    @property
    def epochs_total(self) -> int:
        if not self.steps_per_epoch or not self.total_steps:
            return 0
        return math.ceil(self.total_steps / self.steps_per_epoch)

    @property
    def eta(self) -> float | None:
        """Seconds left at the recent pace of training steps (gpt_tui.engine.eta)."""
        return self.pace.eta(self.step, self.total_steps)

    def reset_for_start(self) -> None:
        """A new run begins: forget the last one's numbers."""
        self.__init__(state="preparing")  # type: ignore[misc]

    def apply(self, event: Any) -> None:
        self.pace.apply(event)
        if isinstance(event, StepEvent):
            self.step = event.step
            self.epoch = event.epoch
            self.tokens_seen = event.tokens_seen
            self.loss = event.loss
            self.lr = event.lr
            self.tokens_per_sec = event.tokens_per_sec
            self.mfu, self.peak_memory = event.mfu, event.peak_memory
            self.elapsed = event.elapsed
            self.total_steps = event.total_steps
            if self.state == "preparing":
                self.state = "running"
        elif isinstance(event, EvalEvent):
            self.train_loss = event.train_loss
            self.val_loss = event.val_loss
            self.val_coverage = coverage_text(event.val_tokens, event.val_split_tokens)
            if math.isfinite(event.val_loss):
                self.best_val_loss = event.val_loss if self.best_val_loss is None else min(self.best_val_loss, event.val_loss)
            self.epoch = max(self.epoch, event.epoch)
            if self.state == "preparing":
                self.state = "running"
        elif isinstance(event, TokenizeProgress):
            self.corpus_progress = "" if event.done else event.line()
        elif isinstance(event, StartEvent):
            self.corpus_progress = ""
            self.run_dir = event.run_dir
            self.device = event.device
            self.num_parameters = event.num_parameters
            self.n_layers, self.n_heads = event.n_layers, event.n_heads
            self.emb_dim, self.context_length = event.emb_dim, event.context_length
            self.train_tokens = event.train_tokens
            self.val_tokens = event.val_tokens
            self.train_documents, self.val_documents = event.train_documents, event.val_documents
            self.steps_per_epoch = max(1, event.train_batches // max(1, self.grad_accum))
            self.total_steps = event.total_steps
            self.start_step = event.start_step
            self.peak_flops, self.peak_source = event.peak_flops, event.peak_source
            self.step = event.start_step
            self.epoch = max(self.epoch, 1)
        elif isinstance(event, CheckpointEvent):
            self.checkpoint = event.path
        elif isinstance(event, DoneEvent):
            self.state = "finished" if event.reason == "finished" else "stopped"
            if event.checkpoint:
                self.checkpoint = event.checkpoint
            self.elapsed = event.elapsed
            self.tokens_seen = event.tokens_seen
        elif isinstance(event, ErrorEvent):
            self.state = "failed"
            self.message = event.message
        elif isinstance(event, SampleEvent):
            pass
