"""The training loop of chapter 5, with warmup, cosine decay, clipping, accumulation and exact resume.

``Trainer.run`` is blocking and meant for a worker thread. It reports through
one callback of typed events (gpt_tui.engine.events) and checks a stop flag
between steps. Everything needed to continue exactly — weights, AdamW state,
step, epoch, position inside the epoch, RNG — goes into each full checkpoint.

The loop is here; its parts each live in a module of their own: where a run
starts (train_start), one optimizer step (train_step), the losses and samples
it reports (evaluation) and when (eval_schedule), its counters (train_progress), the requests made of
it (run_control) and the folder it owns (run_directory).
"""

from __future__ import annotations

import contextlib
import copy
import math
import threading
import time
from pathlib import Path
from typing import Any

import torch

from gpt_tui import fileio
from gpt_tui.engine import checkpoint as ckpt
from gpt_tui.engine import book_recipe, distributed, weights_snapshot
from gpt_tui.engine.batches import DataSplits
from gpt_tui.engine.best_checkpoint import BestKeeper
from gpt_tui.engine.checkpoint_schedule import CheckpointSchedule
from gpt_tui.engine.device import resolve_device
from gpt_tui.engine.eval_schedule import epoch_of_last_update, evaluates_after, final_evaluation_due
from gpt_tui.engine.evaluation import eval_interval, sample_text, split_losses
from gpt_tui.engine.events import (
    CheckpointEvent,
    DoneEvent,
    ErrorEvent,
    EvalEvent,
    EventCallback,
    SampleEvent,
    StartEvent,
    StepEvent,
    TrainEvent,
)
from gpt_tui.engine.mfu import Utilization
from gpt_tui.engine.model import GPTModel
from gpt_tui.engine.run_control import RunControl
from gpt_tui.engine.run_directory import RunDirectory
from gpt_tui.engine.runtime import release_device_memory, release_free_memory
from gpt_tui.engine.schedule import lr_at
from gpt_tui.engine.split_loaders import split_counts
from gpt_tui.engine.train_options import TrainConfig  # callers import it from here too, where it lived first
from gpt_tui.engine.train_progress import TrainProgress
from gpt_tui.engine.train_start import build_model, resume_config, starting_point, training_data  # noqa: F401  (resume_config: callers import it here)
from gpt_tui.engine.train_step import TrainFeed, TrainStep, make_optimizer
from gpt_tui.errors import UserError

KEEP_CHECKPOINTS = 3
OUT_OF_MEMORY = (
    "The GPU ran out of memory; use a smaller --batch-size or --context-length, "
    "or --grad-accum to keep the effective batch. The last saved checkpoint is intact."
)


class Trainer:
    """Runs one training job; safe to control (stop, pause, checkpoint, snapshot) from another thread."""

    def __init__(
        self,
        config: TrainConfig,
        on_event: EventCallback | None = None,
        *,
        resume: str | None = None,
        init_from: str | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.dist = distributed.from_env()  # one process unless started by torchrun
        self._joined_group = False
        self._control = RunControl(self.dist)
        self._feed: TrainFeed | None = None  # the training batches, once the data is read
        self._on_event = on_event
        self._resume_path = ckpt.resolve_checkpoint_path(resume) if resume else None
        self._init_from = init_from
        actions = {
            "stop": lambda: self.request_stop("asked to stop (gpt-tui stop, or the app)"),
            "checkpoint": self.request_checkpoint,
            "pause": self.pause,
            "resume": self.unpause,
            "weights": self.write_weights_snapshot,
        }
        self._dir = RunDirectory.for_run(config, self._resume_path, is_main=self.dist.is_main, actions=actions)
        self.run_dir = self._dir.path
        self._lock = threading.Lock()  # held while weights change
        self.model: GPTModel | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.progress = TrainProgress()
        self._device: torch.device | None = None  # where it trains, and on what, once set up
        self._splits: DataSplits | None = None
        self._total: int | None = None  # the step the run ends at, once its data is known
        self._saved_step = -1  # the step of the last checkpoint this trainer wrote
        self._checkpoints = CheckpointSchedule(config.checkpoint_every, config.checkpoint_minutes)
        self._best = BestKeeper(self.run_dir, config.early_stop, self.dist.is_main)  # best.safetensors, --early-stop

    @property
    def step(self) -> int:
        """Optimizer steps taken so far, over every process of this run."""
        return self.progress.step

    # ----- control, from any thread -----
    def request_stop(self, reason: str | None = None) -> None:
        """Finish the current step, save and end; the first ``reason`` given is recorded in status.json."""
        self._control.request_stop(reason)

    def pause(self) -> None:
        self._control.pause()
        self._note_pause("paused")

    def unpause(self) -> None:
        self._control.unpause()
        self._note_pause("running")

    def _note_pause(self, state: str) -> None:
        """Record a hold (or its end) in status.json, so `gpt-tui runs` shows it; only while this trainer owns the run."""
        if self._dir.locked and not self._control.stopping:
            self._status(state)

    @property
    def paused(self) -> bool:
        return self._control.paused

    @property
    def stopping(self) -> bool:
        return self._control.stopping

    def request_checkpoint(self) -> None:
        self._control.request_checkpoint()

    def snapshot_model(self) -> GPTModel:
        """An eval-mode copy of the current weights, taken between optimizer steps."""
        if self.model is None:
            raise UserError("The model is not built yet; wait for training to start.")
        with self._lock:
            snapshot = copy.deepcopy(self.model)
        return snapshot.eval()

    # ----- the run -----
    def _emit(self, event: TrainEvent) -> None:
        if not self.dist.is_main:
            return  # rank 0 speaks for every rank
        self._write_metric(event)
        try:
            if self._on_event is not None:
                self._on_event(event)
        except OSError as exc:  # the display failed, not the run directory: stop in order, saving
            self.request_stop(f"the progress display failed: {exc.strerror or exc}")

    def _write_metric(self, event: TrainEvent) -> None:
        self._dir.append_metric(event)

    def run(self) -> DoneEvent:
        """Train to the end or to a stop request; on any failure the last checkpoint is left as it was."""
        out_of_memory = False
        try:
            if self.run_dir.is_dir() and not self._dir.made_here:
                self._dir.claim()  # before anything in it is read back or rewritten
            done = self._run()
        except UserError as exc:
            self._fail(str(exc))
            self._dir.release()
            raise
        except torch.cuda.OutOfMemoryError:
            out_of_memory = True  # handled below, once this frame no longer pins the step's tensors
        except OSError as exc:  # the event callback's own errors never get here (see _emit)
            message = self._dir.failure_message(exc)
            self._fail(message)
            self._dir.release()
            raise UserError(message) from None
        except BaseException as exc:
            self._fail(f"{type(exc).__name__}: {exc}")
            self._dir.release()
            raise
        finally:
            if self._feed is not None:
                self._feed.close()
            if self._joined_group:
                distributed.shutdown()
                self._joined_group = False
            release_free_memory()
            self._dir.remove_if_unused()  # made for a run that failed before writing anything
        if out_of_memory:
            self._free_device_memory()
            self._fail(OUT_OF_MEMORY)
            self._dir.release()
            raise UserError(OUT_OF_MEMORY)
        self._status(done.reason, reason=done.stop_reason)
        self._dir.release()
        return done

    def write_weights_snapshot(self) -> None:
        """Model-only weights for an attached app's REPL (gpt_tui.engine.weights_snapshot)."""
        weights_snapshot.write_weights_snapshot(self)

    def _free_device_memory(self) -> None:
        """Drop gradients and optimizer state after an out-of-memory error, so the app can go on."""
        if self.model is not None:
            self.model.zero_grad(set_to_none=True)
        self.optimizer = None
        release_device_memory()

    def _status(self, state: str, **extra: Any) -> None:
        self._dir.write_status(state, step=self.step, total_steps=self._total, **extra)

    def _fail(self, message: str) -> None:
        """Report a failure; only a run directory this trainer owns records it (metrics.jsonl, status.json).

        Another live run may hold the folder, or it was never made: then the callback alone hears of it.
        """
        error = ErrorEvent(step=self.step, message=message)
        recorded = False
        if self._dir.locked and self.run_dir.is_dir():
            with contextlib.suppress(OSError):
                self._emit(error)
                recorded = True
        if not recorded and self._on_event is not None:
            self._on_event(error)
        if self._dir.locked:
            self._status("failed", reason=message)

    def _setup(self) -> tuple[DataSplits, torch.device]:
        cfg = self.config
        if self.dist.enabled:
            device = distributed.device_for(self.dist, cfg.device)
            self._joined_group = distributed.init(self.dist, device)
        else:
            device = resolve_device(cfg.device)
        start = starting_point(cfg, self._resume_path, self._init_from)
        splits = training_data(cfg, self.dist.world_size, pin_memory=device.type == "cuda", progress=self._on_event if self.dist.is_main else None)
        model = build_model(cfg, start, device)
        self.model = model
        self.optimizer = self._make_optimizer(model, device)

        checkpoint = start.checkpoint
        if checkpoint is not None:
            ckpt.restore_optimizer(self.optimizer, model, checkpoint)
            self.progress = TrainProgress.from_state(checkpoint.train_state)
            ckpt.restore_rng(checkpoint)
        if self.dist.rank > 0:  # the same initial weights everywhere, different dropout masks per rank
            torch.manual_seed(cfg.seed + 1_000_003 * self.dist.rank + self.step)
        self._device = device
        self._splits = splits
        self._feed = TrainFeed(splits.train, self.dist, prefetch=device.type == "cuda")
        return splits, device

    def _make_optimizer(self, model: GPTModel, device: torch.device) -> torch.optim.Optimizer:
        return make_optimizer(model, device, self.config)

    def save(self, keep: int = KEEP_CHECKPOINTS) -> Path:
        """A full checkpoint of the current step (called between steps)."""
        assert self.model is not None and self.optimizer is not None
        path = self._dir.checkpoint_path(self.step)
        with self._lock:
            finite = all(bool(torch.isfinite(p).all()) for p in self.model.parameters())
        if not finite:  # every rank has the same weights, so every rank stops here together
            raise UserError(
                f"The weights became NaN or infinite by step {self.step}; they were not saved, so the last good "
                "checkpoint stays the newest. Lower --lr or set --grad-clip 1.0."
            )
        if not self.dist.is_main:
            return path  # rank 0 holds the same weights and writes them
        fileio.refuse_link(path.parent)
        self._write(path)
        self._best.settle(self.step, self._write, saved=path)  # an evaluation's new best at this step: a link to it
        ckpt.prune_checkpoints(self.run_dir, keep, self.config.run_id)  # this run's checkpoints only
        self._saved_step = self.step
        self._checkpoints.restart()
        self._emit(CheckpointEvent(step=self.step, path=str(path)))
        return path

    def _write(self, path: Path) -> None:
        with self._lock:
            ckpt.save_checkpoint(path, self.model, optimizer=self.optimizer, train_state=self.progress.to_state(self.config.to_dict()))

    def _run(self) -> DoneEvent:
        cfg = self.config
        if cfg.recipe == "book":
            return book_recipe.run_book(self)  # chapter 5's loop, draw for draw
        splits, device = self._setup()
        progress = self.progress
        resumed_step = self.step if self._resume_path is not None else None
        self._dir.prepare(cfg.to_dict(), resumed_step=resumed_step)
        model, optimizer = self.model, self.optimizer
        assert model is not None and optimizer is not None
        train_step = TrainStep(model, optimizer, cfg, device, self.dist)
        autocast = train_step.autocast
        usage = Utilization(model, cfg.context_length, device, cfg.precision, self.dist.world_size)  # MFU, peak memory
        feed = self._feed
        assert feed is not None
        steps_per_epoch = len(splits.train) // cfg.grad_accum
        total_steps = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * steps_per_epoch
        eval_every = eval_interval(cfg, splits)
        self._total = total_steps
        self._status("running")
        min_lr = cfg.lr if cfg.min_lr is None else cfg.min_lr
        tokens_per_step = cfg.batch_size * self.dist.world_size * cfg.context_length * cfg.grad_accum
        self._emit(StartEvent(
            run_dir=str(self.run_dir), device=str(device), num_parameters=model.num_parameters(),
            **split_counts(splits), train_batches=len(splits.train),
            val_batches=len(splits.val), total_steps=total_steps, start_step=progress.step, eval_every=eval_every,
            **usage.start_fields(),
        ))
        progress.start_clock()
        self._checkpoints.restart()
        if progress.step == 0:
            self._evaluate(autocast)

        reason = "finished"
        batches = feed.epoch(progress.epoch, progress.batch_in_epoch)
        while progress.step < total_steps:
            self._best.settle(progress.step, self._write)  # before the weights change: the last evaluation's new best
            if progress.batch_in_epoch + cfg.grad_accum > len(splits.train):
                self._end_epoch()
                batches = feed.epoch(progress.epoch, 0)
                continue
            self._control.wait_while_paused()
            if self._control.stop_requested():
                reason = "stopped"
                break
            step_start = time.perf_counter()
            lr = lr_at(progress.step, lr=cfg.lr, min_lr=min_lr, warmup_steps=cfg.warmup_steps, total_steps=total_steps)
            model.train()
            with self._lock:
                loss_sum, grad_norm = train_step(batches, lr)
            progress.advance(cfg.grad_accum, tokens_per_step)
            loss_value, grad_norm_value = self._control.read_step(loss_sum, grad_norm)
            rate = progress.tokens_per_sec(time.perf_counter() - step_start, tokens_per_step)
            self._emit(StepEvent(
                step=progress.step, epoch=progress.epoch + 1, tokens_seen=progress.tokens_seen, loss=loss_value, lr=lr,
                grad_norm=grad_norm_value, tokens_per_sec=rate, elapsed=progress.elapsed(), total_steps=total_steps, **usage.step_fields(rate),
            ))
            if not math.isfinite(loss_value):
                raise UserError(
                    f"The loss became {loss_value} at step {progress.step}; training stopped and the last good checkpoint is kept. "
                    "Lower --lr or set --grad-clip 1.0."
                )
            if evaluates_after(progress.step, eval_every):  # the book's schedule: after updates 1, 1 + k, ...
                self._evaluate(autocast)
            if progress.batch_in_epoch + cfg.grad_accum > len(splits.train):
                self._end_epoch()
                batches = feed.epoch(progress.epoch, 0)
            if self._control.checkpoint_due() or self._checkpoints.due(progress.step):
                self._control.checkpoint_taken()
                if progress.step < total_steps:
                    self.save()
        else:
            if final_evaluation_due(progress.step, eval_every, resumed_step or 0):
                self._evaluate(autocast)
        if reason == "stopped" and self._saved_step == progress.step:
            # Stopped right after a periodic save: that checkpoint is this state; writing it twice only delays the exit.
            final = self._dir.checkpoint_path(progress.step)
        else:
            final = self.save()
        done = DoneEvent(
            step=progress.step, tokens_seen=progress.tokens_seen, reason=reason, checkpoint=str(final), elapsed=progress.elapsed(),
            stop_reason=self._control.stop_reason if reason == "stopped" else None,
        )
        self._emit(done)
        return done

    def _end_epoch(self) -> None:
        """Sample from the start context, then move to the next epoch's shuffled order."""
        self._sample()
        self.progress.next_epoch()

    def _evaluate(self, autocast: contextlib.AbstractContextManager) -> None:
        assert self.model is not None and self._splits is not None and self._device is not None
        losses = split_losses(self.model, self._splits, self._device, self.config, autocast, self.dist)
        self._best.evaluated(self.progress, losses.val_loss, self.request_stop)  # a new best; --early-stop may stop the run
        progress = self.progress
        epoch = epoch_of_last_update(progress.epoch, progress.batch_in_epoch, progress.step)
        self._emit(EvalEvent(step=progress.step, epoch=epoch, tokens_seen=progress.tokens_seen, **losses.event_fields()))

    def _sample(self) -> None:
        if not self.config.sample_tokens or not self.config.start_context or not self.dist.is_main:
            return
        assert self.model is not None and self._device is not None
        text = sample_text(self.model, self.config.start_context, self.config.sample_tokens, self._device)
        self._emit(SampleEvent(step=self.step, epoch=self.progress.epoch + 1, prompt=self.config.start_context, text=text))
