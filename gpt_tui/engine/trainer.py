"""The training loop of chapter 5, with warmup, cosine decay, clipping, accumulation and exact resume.

``Trainer.run`` is blocking and meant for a worker thread. It reports through
one callback of typed events (gpt_tui.engine.events) and checks a stop flag
between steps. Everything needed to continue exactly — weights, AdamW state,
step, epoch, position inside the epoch, RNG — goes into each full checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from gpt_tui.engine import checkpoint as ckpt
from gpt_tui.engine import distributed
from gpt_tui.engine import runlock
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
from gpt_tui.engine.model import GPTConfig, GPTModel, get_preset
from gpt_tui.engine.runs import new_run_dir  # noqa: F401  (lived here first; callers import it from here)
from gpt_tui.errors import UserError

KEEP_CHECKPOINTS = 3
CONTROL_POLL_S = 0.2  # how often a run looks for stop / checkpoint / pause requests left in its directory


@dataclass
class TrainConfig:
    data: str | None = None  # a UTF-8 text file; None is the built-in corpus
    model: str = "tiny"
    context_length: int | None = None  # None: the preset's
    stride: int | None = None  # None: context_length (windows do not overlap)
    batch_size: int = 8
    epochs: int = 1
    max_steps: int | None = None  # when set, overrides epochs
    lr: float = 4e-4
    min_lr: float | None = None  # None: lr (no decay, as in the book)
    warmup_steps: int = 0
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float | None = 1.0  # None or 0: no clipping
    grad_accum: int = 1
    eval_freq: int = 5
    eval_iter: int = 5
    train_ratio: float = 0.9
    start_context: str = "Every effort moves you"
    sample_tokens: int = 50
    seed: int = 123
    device: str = "auto"
    precision: str = "auto"  # auto, fp32 or bf16
    run_dir: str | None = None
    checkpoint_every: int = 0  # steps between periodic checkpoints; 0: only at the end
    drop_rate: float | None = None  # None: the preset's
    init: str = "book"  # fresh weights: "book" (PyTorch defaults, as chapter 5) or "gpt2" (N(0, 0.02))
    compile: bool = False  # torch.compile the training step (pays off on GPUs for long runs)

    def validate(self) -> None:
        def positive(name: str, value: float | int | None, allow_none: bool = False) -> None:
            if value is None and allow_none:
                return
            if value is None or not value > 0 or (isinstance(value, float) and math.isnan(value)):
                raise UserError(f"{name.replace('_', '-')} must be greater than 0, got {value}.")

        for name in ("batch_size", "epochs", "grad_accum", "eval_freq", "eval_iter", "lr"):
            positive(name, getattr(self, name))
        positive("max_steps", self.max_steps, allow_none=True)
        positive("stride", self.stride, allow_none=True)
        positive("context_length", self.context_length, allow_none=True)
        if self.min_lr is not None and not 0 <= self.min_lr <= self.lr:
            raise UserError(f"min-lr must be between 0 and lr ({self.lr}), got {self.min_lr}.")
        if self.warmup_steps < 0 or self.checkpoint_every < 0 or self.sample_tokens < 0:
            raise UserError("warmup-steps, checkpoint-every and sample-tokens cannot be negative.")
        if self.weight_decay < 0:
            raise UserError(f"weight-decay cannot be negative, got {self.weight_decay}.")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise UserError(f"AdamW betas must lie in [0, 1), got ({self.beta1}, {self.beta2}).")
        if self.grad_clip is not None and self.grad_clip < 0:
            raise UserError(f"grad-clip cannot be negative, got {self.grad_clip}; use 0 to switch clipping off.")
        if not 0 < self.train_ratio < 1:
            raise UserError(f"train-ratio must lie strictly between 0 and 1, got {self.train_ratio}.")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise UserError(f"precision must be auto, fp32 or bf16, got {self.precision!r}.")
        if self.init not in ("book", "gpt2"):
            raise UserError(f"init must be book or gpt2, got {self.init!r}.")
        if self.drop_rate is not None and not 0 <= self.drop_rate < 1:
            raise UserError(f"drop-rate must lie in [0, 1), got {self.drop_rate}.")

    def model_config(self) -> GPTConfig:
        return get_preset(self.model, context_length=self.context_length, drop_rate=self.drop_rate)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def resume_config(source: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The training config stored in a checkpoint (or run dir), with explicit overrides applied."""
    path = ckpt.resolve_checkpoint_path(source)
    header = ckpt.read_header(path)
    stored = header.get("train_state", {}).get("train_config")
    if stored is None:
        raise UserError(f"{source} holds weights only; pass its path as --init-from to fine-tune from it.")
    config = TrainConfig.from_dict(stored)
    if path.parent.name == ckpt.CHECKPOINTS_SUBDIR:
        # A run copied or moved elsewhere continues where it is now, not where it was first written.
        config.run_dir = str(path.parent.parent)
    for key, value in (overrides or {}).items():
        setattr(config, key, value)
    return config


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
        self._synced_stop = False
        self._synced_checkpoint = False
        self._prefetcher: Any = None
        self._on_event = on_event
        self._resume_path = ckpt.resolve_checkpoint_path(resume) if resume else None
        self._init_from = init_from
        if self._resume_path is not None and config.run_dir is None:
            parent = self._resume_path.parent
            if parent.name == ckpt.CHECKPOINTS_SUBDIR:
                config.run_dir = str(parent.parent)
        self.run_dir = Path(config.run_dir) if config.run_dir else new_run_dir(config.model)
        self.config.run_dir = str(self.run_dir)
        self._stop = threading.Event()
        self._unpaused = threading.Event()
        self._unpaused.set()
        self._checkpoint_requested = threading.Event()
        self._lock = threading.Lock()  # held while weights change
        self.model: GPTModel | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.step = 0
        self.epoch = 0  # 0-based epoch index in progress
        self.batch_in_epoch = 0  # micro-batches of the current epoch already consumed
        self.tokens_seen = 0
        self.best_val_loss = float("inf")
        self._elapsed_before = 0.0
        self._run_lock: runlock.RunLock | None = None  # held while this trainer owns run_dir
        self._control_done: threading.Event | None = None
        self._control_thread: threading.Thread | None = None
        self._saved_step = -1  # the step of the last checkpoint this trainer wrote

    # ----- control, from any thread -----
    def request_stop(self) -> None:
        self._stop.set()
        self._unpaused.set()

    def pause(self) -> None:
        self._unpaused.clear()

    def unpause(self) -> None:
        self._unpaused.set()

    @property
    def paused(self) -> bool:
        return not self._unpaused.is_set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def request_checkpoint(self) -> None:
        self._checkpoint_requested.set()

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
        if self._on_event is not None:
            self._on_event(event)

    def _write_metric(self, event: TrainEvent) -> None:
        from gpt_tui.engine.events import event_to_record

        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(event_to_record(event)) + "\n")

    def run(self) -> DoneEvent:
        """Train to the end or to a stop request; on any failure the last checkpoint is left as it was."""
        out_of_memory = False
        try:
            if self.run_dir.is_dir():
                self._lock_run_dir()  # before anything in it is read back or rewritten
            done = self._run()
        except UserError as exc:
            self._fail(str(exc))
            self._unlock_run_dir()
            raise
        except torch.cuda.OutOfMemoryError:
            out_of_memory = True  # handled below, once this frame no longer pins the step's tensors
        except OSError as exc:
            message = (
                f"Cannot write to the run directory {self.run_dir}: {exc.strerror or exc}. "
                "Free some space or pick another --run-dir; the last saved checkpoint is intact."
            )
            self._fail(message)
            self._unlock_run_dir()
            raise UserError(message) from None
        except BaseException as exc:
            self._fail(f"{type(exc).__name__}: {exc}")
            self._unlock_run_dir()
            raise
        finally:
            from gpt_tui.engine.runtime import release_free_memory

            self._close_prefetcher()
            if self._joined_group:
                distributed.shutdown()
                self._joined_group = False
            release_free_memory()
        if out_of_memory:
            message = (
                "The GPU ran out of memory; use a smaller --batch-size or --context-length, "
                "or --grad-accum to keep the effective batch. The last saved checkpoint is intact."
            )
            self._free_device_memory()
            self._fail(message)
            self._unlock_run_dir()
            raise UserError(message)
        self._status(done.reason)
        self._unlock_run_dir()
        return done

    def _lock_run_dir(self) -> None:
        if self._run_lock is None and self.dist.is_main:
            self._run_lock = runlock.acquire(self.run_dir)
            self._start_control_watch()

    def _unlock_run_dir(self) -> None:
        if self._control_done is not None:
            self._control_done.set()
            self._control_done = None
        if self._control_thread is not None:
            self._control_thread.join(timeout=5)  # gone before the interpreter shuts down
            self._control_thread = None
        if self._run_lock is not None:
            self._run_lock.release()
            self._run_lock = None

    def _start_control_watch(self) -> None:
        """Act on requests other processes leave in the run directory (see runs.request_control)."""
        from gpt_tui.engine.runs import take_control_requests

        take_control_requests(self.run_dir)  # left over from an earlier process: not meant for this one
        done = threading.Event()
        actions = {
            "stop": self.request_stop,
            "checkpoint": self.request_checkpoint,
            "pause": self.pause,
            "resume": self.unpause,
        }

        def watch() -> None:
            while not done.wait(CONTROL_POLL_S):
                for action in take_control_requests(self.run_dir):
                    actions[action]()

        self._control_done = done
        self._control_thread = threading.Thread(target=watch, name="run-control", daemon=True)
        self._control_thread.start()

    def _free_device_memory(self) -> None:
        """Drop gradients and optimizer state after an out-of-memory error, so the app can go on."""
        from gpt_tui.engine.runtime import release_device_memory

        if self.model is not None:
            self.model.zero_grad(set_to_none=True)
        self.optimizer = None
        release_device_memory()

    def _status(self, state: str) -> None:
        from gpt_tui.engine.runs import write_status

        if not self.dist.is_main:
            return
        if self.run_dir.is_dir():
            try:
                write_status(self.run_dir, state, step=self.step, total_steps=getattr(self, "_total", None))
            except OSError:
                pass

    def _fail(self, message: str) -> None:
        if self._run_lock is None:
            # Not our run directory (another live run holds it, or it was never made): report, touch nothing.
            if self._on_event is not None:
                self._on_event(ErrorEvent(step=self.step, message=message))
            return
        self._emit_error(message)
        self._status("failed")

    def _emit_error(self, message: str) -> None:
        try:
            if not self.run_dir.is_dir():
                raise OSError
            self._emit(ErrorEvent(step=self.step, message=message))
        except OSError:
            if self._on_event is not None:
                self._on_event(ErrorEvent(step=self.step, message=message))

    def _setup(self) -> tuple[Any, torch.device]:
        from gpt_tui.engine.data import make_loaders, tokenize_corpus
        from gpt_tui.engine.device import resolve_device

        cfg = self.config
        if self.dist.enabled:
            device = distributed.device_for(self.dist, cfg.device)
            self._joined_group = distributed.init(self.dist, device)
        else:
            device = resolve_device(cfg.device)
        checkpoint = ckpt.load_checkpoint(self._resume_path, "cpu") if self._resume_path else None
        if checkpoint is not None and checkpoint.kind != "full":
            raise UserError(f"{self._resume_path} holds weights only and cannot be resumed; use it with --init-from to fine-tune.")

        if checkpoint is not None:
            model_config = checkpoint.config
        elif self._init_from:
            from gpt_tui.engine.weights import load_model

            loaded = load_model(self._init_from, "cpu")
            model_config = loaded.config
            if cfg.drop_rate is not None:
                model_config = model_config.with_(drop_rate=cfg.drop_rate)
        else:
            model_config = cfg.model_config()
        context = cfg.context_length or model_config.context_length
        if context > model_config.context_length:
            raise UserError(
                f"context-length {context} is longer than the model's {model_config.context_length} positions; "
                f"use --context-length {model_config.context_length} or less."
            )
        cfg.context_length = context

        tokens = tokenize_corpus(cfg.data)
        splits = make_loaders(
            tokens,
            context_length=context,
            stride=cfg.stride or context,
            batch_size=cfg.batch_size * self.dist.world_size,  # global batches; each rank takes its rows
            train_ratio=cfg.train_ratio,
            seed=cfg.seed,
            pin_memory=device.type == "cuda",
        )
        if len(splits.train) < cfg.grad_accum:
            raise UserError(
                f"The training split gives {len(splits.train)} batches per epoch, fewer than grad-accum {cfg.grad_accum}; "
                "lower --grad-accum or --batch-size."
            )

        torch.manual_seed(cfg.seed)
        model = GPTModel(model_config, init=cfg.init)
        if checkpoint is not None:
            model.load_state_dict(checkpoint.model_state)
        elif self._init_from:
            model.load_state_dict(loaded.model.state_dict())
        model.to(device)
        if model_config.tie_weights:
            model.head.weight = model.tok_emb.weight
        self.model = model
        self.optimizer = self._make_optimizer(model, device)

        if checkpoint is not None:
            ckpt.restore_optimizer(self.optimizer, model, checkpoint)
            state = checkpoint.train_state
            self.step = state["step"]
            self.epoch = state["epoch"]
            self.batch_in_epoch = state["batch_in_epoch"]
            self.tokens_seen = state["tokens_seen"]
            self.best_val_loss = state.get("best_val_loss", float("inf"))
            self._elapsed_before = state.get("elapsed", 0.0)
            ckpt.restore_rng(checkpoint)
        if self.dist.rank > 0:  # the same initial weights everywhere, different dropout masks per rank
            torch.manual_seed(cfg.seed + 1_000_003 * self.dist.rank + self.step)
        self._device = device
        self._splits = splits
        return splits, device

    def _make_optimizer(self, model: GPTModel, device: torch.device) -> torch.optim.Optimizer:
        """AdamW; 2-D weights decay, biases and LayerNorm gains do not; fused kernel where torch has one."""
        cfg = self.config
        decay = [p for p in model.parameters() if p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.dim() < 2]
        groups = [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        kwargs: dict[str, Any] = {"lr": cfg.lr, "betas": (cfg.beta1, cfg.beta2)}
        if device.type in ("cuda", "cpu"):
            try:
                return torch.optim.AdamW(groups, fused=True, **kwargs)
            except (RuntimeError, TypeError, ValueError):
                pass
        return torch.optim.AdamW(groups, **kwargs)

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        from gpt_tui.engine.precision import autocast_for

        return autocast_for(device, self.config.precision)

    def _training_module(self, model: GPTModel, device: torch.device) -> torch.nn.Module:
        """What the step calls: the model, compiled if asked, wrapped in DDP under torchrun."""
        from gpt_tui.engine.runtime import configure_for_training

        configure_for_training(device)
        module: torch.nn.Module = model
        if self.config.compile:
            module = torch.compile(module)  # type: ignore[assignment]
        if self.dist.enabled:
            module = distributed.wrap(module, device)
        return module

    def _grad_sync(self, module: torch.nn.Module, last_micro_step: bool) -> contextlib.AbstractContextManager:
        """DDP all-reduces gradients on the last micro-batch of a step only."""
        if self.dist.enabled and not last_micro_step:
            return module.no_sync()  # type: ignore[operator]
        return contextlib.nullcontext()

    def _train_batches(self, epoch: int, start: int) -> Any:
        """This rank's training batches of ``epoch`` from ``start``; built ahead on a thread when a GPU waits for them."""
        from gpt_tui.engine.data import Prefetcher

        self._close_prefetcher()
        shard = (self.dist.rank, self.dist.world_size) if self.dist.enabled else None
        batches = self._splits.train.batches(epoch, start, shard=shard)
        if self._device.type == "cuda":
            self._prefetcher = batches = Prefetcher(batches)
        return batches

    def _close_prefetcher(self) -> None:
        if self._prefetcher is not None:
            self._prefetcher.close()
            self._prefetcher = None

    def _step_report(self, loss_sum: torch.Tensor, grad_norm: torch.Tensor) -> tuple[float, float]:
        """The step's loss (averaged over ranks) and gradient norm, read in one device sync.

        Under torchrun the same all-reduce also agrees on stop and checkpoint
        requests, so every rank leaves the loop (or saves) at the same step.
        """
        if not self.dist.enabled:
            loss, norm = torch.stack([loss_sum.float(), grad_norm.float()]).tolist()
            return loss, norm
        flags = [float(self._stop.is_set()), float(self._checkpoint_requested.is_set())]
        packed = torch.cat([loss_sum.float().reshape(1), torch.tensor(flags, device=loss_sum.device)])
        loss_total, stop, save = distributed.all_reduce_sum(packed).tolist()
        self._synced_stop = self._synced_stop or stop > 0
        self._synced_checkpoint = save > 0
        return loss_total / self.dist.world_size, float(grad_norm)

    def _clip_gradients(self, model: GPTModel, max_norm: float | None) -> torch.Tensor:
        """The global gradient norm, after clipping to ``max_norm`` when it is set.

        The same arithmetic as ``clip_grad_norm_``, which multiplies every
        gradient by a coefficient clamped to 1 even when there is nothing to
        clip. On a CPU, where looking at the norm costs no device sync, that
        pass over all the gradients is skipped when it would multiply by 1.
        """
        params = [p for p in model.parameters() if p.grad is not None]
        get_total_norm = getattr(torch.nn.utils, "get_total_norm", None)
        if self._device.type != "cpu" or get_total_norm is None:
            return torch.nn.utils.clip_grad_norm_(params, max_norm or float("inf"))
        norm = get_total_norm([p.grad for p in params])
        if max_norm and float(max_norm / (norm + 1e-6)) < 1.0:
            torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
        return norm

    def _stop_requested(self) -> bool:
        return self._synced_stop if self.dist.enabled else self._stop.is_set()

    def _checkpoint_due(self) -> bool:
        return self._synced_checkpoint if self.dist.enabled else self._checkpoint_requested.is_set()

    def _loader_loss(self, loader: Any, autocast: contextlib.AbstractContextManager) -> float:
        """Mean loss of the first eval_iter batches; under torchrun each rank computes its rows and they add up."""
        from gpt_tui.engine.loss import calc_loss_batch, calc_loss_loader

        model, device, limit = self.model, self._device, self.config.eval_iter
        assert model is not None
        if not self.dist.enabled:
            return calc_loss_loader(model, loader.batches(0, 0), device, limit, autocast)
        total, count = 0.0, 0
        with torch.no_grad():
            for inputs, targets in loader.batches(0, 0):
                if count >= limit:
                    break
                rows = self.dist.shard(inputs.shape[0])
                part = torch.zeros(2, device=device)
                if rows.stop > rows.start:
                    loss = calc_loss_batch(model, inputs[rows], targets[rows], device, autocast)
                    part[0] = loss.float() * targets[rows].numel()
                    part[1] = targets[rows].numel()
                loss_sum, tokens = distributed.all_reduce_sum(part).tolist()
                total += loss_sum / tokens
                count += 1
        return total / count if count else float("nan")

    def _total_steps(self, steps_per_epoch: int) -> int:
        if self.config.max_steps is not None:
            return self.config.max_steps
        return self.config.epochs * steps_per_epoch

    def _train_state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "tokens_seen": self.tokens_seen,
            "best_val_loss": self.best_val_loss if math.isfinite(self.best_val_loss) else None,
            "elapsed": self._elapsed_before + self._elapsed(),
            "train_config": self.config.to_dict(),
        }

    def _elapsed(self) -> float:
        return time.perf_counter() - self._t0 if hasattr(self, "_t0") else 0.0

    def save(self, keep: int = KEEP_CHECKPOINTS) -> Path:
        """A full checkpoint of the current step (called between steps)."""
        assert self.model is not None and self.optimizer is not None
        path = self.run_dir / ckpt.CHECKPOINTS_SUBDIR / ckpt.checkpoint_name(self.step)
        with self._lock:
            finite = all(bool(torch.isfinite(p).all()) for p in self.model.parameters())
        if not finite:  # every rank has the same weights, so every rank stops here together
            raise UserError(
                f"The weights became NaN or infinite by step {self.step}; they were not saved, so the last good "
                "checkpoint stays the newest. Lower --lr or set --grad-clip 1.0."
            )
        if not self.dist.is_main:
            return path  # rank 0 holds the same weights and writes them
        with self._lock:
            ckpt.save_checkpoint(path, self.model, optimizer=self.optimizer, train_state=self._train_state())
        ckpt.prune_checkpoints(self.run_dir, keep)
        self._saved_step = self.step
        self._emit(CheckpointEvent(step=self.step, path=str(path)))
        return path

    def _prepare_run_dir(self) -> None:
        if not self.dist.is_main:
            return
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._lock_run_dir()
            config_file = self.run_dir / "config.json"
            tmp = config_file.with_name(".config.json.tmp")
            tmp.write_text(json.dumps(self.config.to_dict(), indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, config_file)  # a kill mid-write leaves the old file, never half of one
        except OSError as exc:
            raise UserError(f"Cannot write the run directory {self.run_dir}: {exc.strerror or exc}; pick another with --run-dir.") from None
        metrics = self.run_dir / "metrics.jsonl"
        if self._resume_path is not None and metrics.exists():
            self._truncate_metrics(metrics)

    def _truncate_metrics(self, metrics: Path) -> None:
        """Drop records newer than the resumed step, so the log reads as one unbroken run."""
        kept = []
        for line in metrics.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
            if record.get("type") in ("done", "error", "start"):
                continue
            if record.get("step", 0) <= self.step:
                kept.append(line)
        tmp = metrics.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
        os.replace(tmp, metrics)

    def _run(self) -> DoneEvent:
        cfg = self.config
        splits, device = self._setup()
        self._prepare_run_dir()
        model, optimizer = self.model, self.optimizer
        assert model is not None and optimizer is not None
        autocast = self._autocast(device)
        train_model = self._training_module(model, device)
        steps_per_epoch = len(splits.train) // cfg.grad_accum
        total_steps = self._total_steps(steps_per_epoch)
        self._total = total_steps
        self._status("running")
        min_lr = cfg.lr if cfg.min_lr is None else cfg.min_lr
        tokens_per_step = cfg.batch_size * self.dist.world_size * cfg.context_length * cfg.grad_accum
        self._emit(
            StartEvent(
                run_dir=str(self.run_dir),
                device=str(device),
                num_parameters=model.num_parameters(),
                train_tokens=splits.train_tokens,
                val_tokens=splits.val_tokens,
                train_batches=len(splits.train),
                val_batches=len(splits.val),
                total_steps=total_steps,
                start_step=self.step,
            )
        )
        self._t0 = time.perf_counter()
        if self.step == 0:
            self._evaluate(autocast)

        from gpt_tui.engine.loss import calc_loss_batch
        from gpt_tui.engine.schedule import lr_at

        rate_window: list[tuple[float, int]] = []
        reason = "finished"
        batches = self._train_batches(self.epoch, self.batch_in_epoch)
        while self.step < total_steps:
            if self.batch_in_epoch + cfg.grad_accum > len(splits.train):
                self._end_epoch()
                batches = self._train_batches(self.epoch, 0)
                continue
            self._unpaused.wait()
            if self._stop_requested():
                reason = "stopped"
                break
            step_start = time.perf_counter()
            lr = lr_at(self.step, lr=cfg.lr, min_lr=min_lr, warmup_steps=cfg.warmup_steps, total_steps=total_steps)
            loss_sum = torch.zeros((), device=device)
            model.train()
            with self._lock:
                for group in optimizer.param_groups:
                    group["lr"] = lr
                optimizer.zero_grad(set_to_none=True)
                for micro in range(cfg.grad_accum):
                    inputs, targets = next(batches)
                    inputs = inputs.to(device, non_blocking=True)
                    targets = targets.to(device, non_blocking=True)
                    with self._grad_sync(train_model, micro == cfg.grad_accum - 1):
                        loss = calc_loss_batch(train_model, inputs, targets, autocast=autocast) / cfg.grad_accum
                        loss.backward()
                    loss_sum += loss.detach()
                grad_norm = self._clip_gradients(model, cfg.grad_clip)
                optimizer.step()
            self.step += 1
            self.batch_in_epoch += cfg.grad_accum
            self.tokens_seen += tokens_per_step
            loss_value, grad_norm_value = self._step_report(loss_sum, grad_norm)
            step_time = time.perf_counter() - step_start
            rate_window.append((step_time, tokens_per_step))
            del rate_window[:-10]
            rate = sum(n for _, n in rate_window) / max(sum(t for t, _ in rate_window), 1e-9)
            self._emit(
                StepEvent(
                    step=self.step,
                    epoch=self.epoch + 1,
                    tokens_seen=self.tokens_seen,
                    loss=loss_value,
                    lr=lr,
                    grad_norm=grad_norm_value,
                    tokens_per_sec=rate,
                    elapsed=self._elapsed_before + self._elapsed(),
                    total_steps=total_steps,
                )
            )
            if not math.isfinite(loss_value):
                raise UserError(
                    f"The loss became {loss_value} at step {self.step}; training stopped and the last good checkpoint is kept. "
                    "Lower --lr or set --grad-clip 1.0."
                )
            if self.step % cfg.eval_freq == 0:
                self._evaluate(autocast)
            if self.batch_in_epoch + cfg.grad_accum > len(splits.train):
                self._end_epoch()
                batches = self._train_batches(self.epoch, 0)
            if self._checkpoint_due() or (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0):
                self._checkpoint_requested.clear()
                if self.step < total_steps:
                    self.save()
        else:
            if self.step % cfg.eval_freq != 0:
                self._evaluate(autocast)
        if reason == "stopped" and self._saved_step == self.step:
            # Stopped right after a periodic save: that checkpoint is this state; writing it twice only delays the exit.
            final = self.run_dir / ckpt.CHECKPOINTS_SUBDIR / ckpt.checkpoint_name(self.step)
        else:
            final = self.save()
        done = DoneEvent(
            step=self.step,
            tokens_seen=self.tokens_seen,
            reason=reason,
            checkpoint=str(final),
            elapsed=self._elapsed_before + self._elapsed(),
        )
        self._emit(done)
        return done

    def _end_epoch(self) -> None:
        """Sample from the start context, then move to the next epoch's shuffled order."""
        self._sample()
        self.epoch += 1
        self.batch_in_epoch = 0

    def _evaluate(self, autocast: contextlib.AbstractContextManager) -> None:
        model = self.model
        assert model is not None
        was_training = model.training
        model.eval()
        # The train estimate reads the first eval_iter batches of a fixed order, so it is comparable over time.
        train_loss = self._loader_loss(self._splits.train, autocast)
        val_loss = self._loader_loss(self._splits.val, autocast)
        model.train(was_training)
        if math.isfinite(val_loss):
            self.best_val_loss = min(self.best_val_loss, val_loss)
        self._emit(
            EvalEvent(
                step=self.step,
                epoch=self.epoch + 1,
                tokens_seen=self.tokens_seen,
                train_loss=train_loss,
                val_loss=val_loss,
            )
        )

    def _sample(self) -> None:
        if not self.config.sample_tokens or not self.config.start_context or not self.dist.is_main:
            return
        from gpt_tui.engine.generation import SamplingConfig, generate
        from gpt_tui.engine.tokenizer import text_to_token_ids, token_ids_to_text

        model = self.model
        assert model is not None
        prompt = text_to_token_ids(self.config.start_context).to(self._device)
        out = generate(model, prompt, SamplingConfig(max_new_tokens=self.config.sample_tokens))
        text = token_ids_to_text(out[0])
        self._emit(SampleEvent(step=self.step, epoch=self.epoch + 1, prompt=self.config.start_context, text=text))
