"""Where a run's events go besides metrics.jsonl: a CSV table, and TensorBoard event files.

Both are fed the same typed events metrics.jsonl stores (the run directory
hands each one on), so every view of a run shows the same numbers. The CSV
is cheap and always written; TensorBoard is an optional extra, imported only
when ``--tensorboard`` asks for it. metrics.jsonl stays the record: the CSV is
rebuilt from it when a run resumes, so it never holds a step twice.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterable, Protocol

from gpt_tui import extras, fileio
from gpt_tui.engine.events import EvalEvent, StepEvent, TrainEvent
from gpt_tui.engine.perplexity import perplexity
from gpt_tui.engine.runs import METRICS_CSV_FILE, TENSORBOARD_SUBDIR, read_metrics

SHARED_FIELDS = ("step", "epoch", "tokens_seen")  # in both a step's and an evaluation's record: one column each
TENSORBOARD_EXTRA = "tensorboard"
TENSORBOARD_FLUSH_S = 10  # how stale a live TensorBoard may be
_STEP_NOT_SCALARS = frozenset({"step", "epoch", "tokens_seen", "elapsed", "total_steps"})  # the x axis, or bookkeeping


def eval_column(name: str) -> str:
    """An evaluation field's column: what it measured on the train split is said to be the evaluation's
    (``eval_train_loss``, not the step's loss), and no name clashes with a step's."""
    step_names = {f.name for f in fields(StepEvent)}
    return f"eval_{name}" if name.startswith("train_") or name in step_names else name


def csv_columns() -> list[str]:
    """The table's header: every step field, then every evaluation field (new fields join by themselves)."""
    columns = [f.name for f in fields(StepEvent)] + ["perplexity"]
    columns += [eval_column(f.name) for f in fields(EvalEvent) if f.name not in SHARED_FIELDS]
    return columns + ["eval_train_perplexity", "val_perplexity"]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same float
    return str(value)


class CsvRows:
    """Folds events into table rows: one per step, its evaluation's columns filled in when one follows it.

    A step's row waits for the event after it, which is its evaluation when
    one was due; an evaluation with no step of its own (the one before
    training) gets a row with only the evaluation's columns.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def add(self, event: TrainEvent) -> list[dict[str, Any]]:
        """The rows ``event`` completes."""
        done: list[dict[str, Any]] = []
        if isinstance(event, StepEvent):
            done += self.flush()
            self._pending = {f.name: getattr(event, f.name) for f in fields(event)}
            self._pending["perplexity"] = perplexity(event.loss)
        elif isinstance(event, EvalEvent):
            row = self._pending if self._pending is not None and self._pending["step"] == event.step else None
            if row is None:
                done += self.flush()
                row = {name: getattr(event, name) for name in SHARED_FIELDS}
            for item in fields(event):
                if item.name not in SHARED_FIELDS:
                    row[eval_column(item.name)] = getattr(event, item.name)
            row["eval_train_perplexity"] = perplexity(event.train_loss)
            row["val_perplexity"] = perplexity(event.val_loss)
            self._pending = None
            done.append(row)
        else:
            done += self.flush()
        return done

    def flush(self) -> list[dict[str, Any]]:
        row, self._pending = self._pending, None
        return [row] if row is not None else []


def csv_text(rows: Iterable[dict[str, Any]], *, header: bool) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = csv_columns()
    if header:
        writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(name)) for name in columns])
    return out.getvalue()


def csv_from_metrics(run_dir: str | Path) -> str:
    """The whole table for a run, from its metrics.jsonl."""
    events, _ = read_metrics(run_dir)
    rows = CsvRows()
    table = [row for event in events for row in rows.add(event)] + rows.flush()
    return csv_text(table, header=True)


def rewrite_csv(run_dir: str | Path) -> Path:
    """Replace the run's CSV with one made from metrics.jsonl (on resume, and the app's export)."""
    return fileio.atomic_write_text(Path(run_dir) / METRICS_CSV_FILE, csv_from_metrics(run_dir))


class MetricSink(Protocol):
    def write(self, event: TrainEvent) -> None: ...

    def close(self) -> None: ...


class CsvSink:
    """Appends rows to the run's CSV as the events arrive; the header only into an empty file."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / METRICS_CSV_FILE
        self._rows = CsvRows()

    def write(self, event: TrainEvent) -> None:
        self._append(self._rows.add(event))

    def close(self) -> None:
        self._append(self._rows.flush())

    def _append(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        with fileio.open_append(self.path) as fh:
            fh.write(csv_text(rows, header=fh.tell() == 0))


def tensorboard_scalars(event: TrainEvent) -> list[tuple[str, float]]:
    """The (tag, value) pairs an event gives TensorBoard, at ``event.step``; fields added to the events join by themselves."""
    if isinstance(event, StepEvent):
        pairs = [(f"train/{f.name}", getattr(event, f.name)) for f in fields(event) if f.name not in _STEP_NOT_SCALARS]
        pairs.append(("train/perplexity", perplexity(event.loss)))
    elif isinstance(event, EvalEvent):
        pairs = [("val/loss", event.val_loss), ("val/perplexity", perplexity(event.val_loss)),
                 ("eval/train_loss", event.train_loss), ("eval/train_perplexity", perplexity(event.train_loss))]
        pairs += [(f"eval/{f.name}", getattr(event, f.name)) for f in fields(event)
                  if f.name not in SHARED_FIELDS and f.name not in ("train_loss", "val_loss")]
    else:
        return []
    return [(tag, float(value)) for tag, value in pairs
            if isinstance(value, (int, float)) and not isinstance(value, bool)]


class TensorBoardSink:
    """Scalars into ``<run>/tensorboard/`` through tensorboard's own event-file writer (no torch, no TensorFlow)."""

    def __init__(self, run_dir: Path, resumed_step: int | None) -> None:
        writer_module = extras.require(
            "tensorboard.summary.writer.event_file_writer", TENSORBOARD_EXTRA, "--tensorboard"
        )
        from tensorboard.compat.proto import event_pb2, summary_pb2

        self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
        folder = fileio.checked_dir(run_dir / TENSORBOARD_SUBDIR)
        self._writer = writer_module.EventFileWriter(str(folder), flush_secs=TENSORBOARD_FLUSH_S)
        if resumed_step is not None:
            # TensorBoard drops what an earlier process logged past this step: the curves read as one run.
            start = event_pb2.SessionLog(status=event_pb2.SessionLog.START)
            self._writer.add_event(event_pb2.Event(step=resumed_step + 1, session_log=start))

    def write(self, event: TrainEvent) -> None:
        scalars = tensorboard_scalars(event)
        if scalars:
            values = [self._summary_pb2.Summary.Value(tag=tag, simple_value=value) for tag, value in scalars]
            self._writer.add_event(self._event_pb2.Event(
                step=event.step, wall_time=time.time(), summary=self._summary_pb2.Summary(value=values)
            ))
        if not isinstance(event, StepEvent):
            self._writer.flush()  # an evaluation, a checkpoint, the end: worth seeing now

    def close(self) -> None:
        self._writer.close()


def open_sinks(run_dir: Path, *, tensorboard: bool, resumed_step: int | None) -> list[MetricSink]:
    """The sinks of a run about to train: its CSV, rebuilt from metrics.jsonl first, and TensorBoard if asked for."""
    rewrite_csv(run_dir)
    sinks: list[MetricSink] = [CsvSink(run_dir)]
    if tensorboard:
        sinks.append(TensorBoardSink(run_dir, resumed_step))
    return sinks
