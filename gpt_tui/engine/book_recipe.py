"""``--recipe book``: chapter 5's ``train_model_simple`` as the notebook runs it, draw for draw.

The model starts from ``torch.manual_seed(seed)`` and the book's module-order
draws (book_init); the data is the book's character split in torch
DataLoaders (book_data); every forward pass is the book's plain one
(book_model), so dropout masks come from torch in the book's order; AdamW
decays every parameter, with no clipping, warmup or decay of the rate. The
log is the book's: the two initial losses, measured as the notebook does
before training (a fresh ``manual_seed(seed)``, the whole of both loaders),
then "Ep N (Step s)" after update s + 1 whenever ``s % eval_freq == 0``
(gpt_tui.engine.eval_schedule; the events count the s + 1 updates), each
estimate over the first ``eval_iter`` batches of a freshly shuffled pass over
the training loader, and a 50-token greedy sample after each epoch.

The trainer's machinery stays: the run directory, metrics.jsonl, stop,
pause and periodic checkpoints. A run resumed from a gpt-tui checkpoint
continues its weights, AdamW state, counters and generator; inside an
epoch it skips the batches already seen of a fresh shuffle, as the book has
no way to continue an epoch's order either.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch.utils.data import DataLoader

from gpt_tui.engine import checkpoint as ckpt
from gpt_tui.engine.book_data import BookData, book_data
from gpt_tui.engine.book_init import book_init_
from gpt_tui.engine.book_model import book_generate, book_loss
from gpt_tui.engine.device import resolve_device
from gpt_tui.engine.eval_schedule import evaluates_after
from gpt_tui.engine.events import DoneEvent, EvalEvent, SampleEvent, StartEvent, StepEvent
from gpt_tui.engine.model import GPTModel
from gpt_tui.engine.tokenizer import text_to_token_ids, token_ids_to_text
from gpt_tui.engine.train_progress import TrainProgress
from gpt_tui.engine.train_start import starting_point
from gpt_tui.errors import UserError
Trainer = Any  # gpt_tui.engine.trainer.Trainer, which calls in here (named only, so no import cycle)

BOOK_EVAL_FREQ = 5  # train_model_simple's eval_freq and eval_iter in the notebook
BOOK_EVAL_ITER = 5


def loader_loss(model: GPTModel, loader: DataLoader, device: torch.device, num_batches: int | None = None) -> float:
    """The book's ``calc_loss_loader``: the mean of the first ``num_batches`` batch losses of a new pass."""
    if len(loader) == 0:
        return float("nan")
    count = len(loader) if num_batches is None else min(num_batches, len(loader))
    total = 0.0
    for i, (inputs, targets) in enumerate(loader):
        if i >= count:
            break
        total += book_loss(model, inputs.to(device), targets.to(device)).item()
    return total / count


def book_model(trainer: Trainer, device: torch.device) -> tuple[GPTModel, torch.optim.Optimizer]:
    """The model and optimizer: fresh as the book draws them, or from the checkpoint or weights given."""
    cfg = trainer.config
    start = starting_point(cfg, trainer._resume_path, trainer._init_from)
    config = start.model_config if cfg.drop_rate is None else start.model_config.with_(drop_rate=cfg.drop_rate)
    with torch.device("meta"):
        model = GPTModel(config)  # no draws: the book's draws come next, from the seed
    model = model.to_empty(device="cpu")
    book_init_(model, cfg.seed)
    if start.checkpoint is not None:
        model.load_state_dict(start.checkpoint.model_state)
    elif start.imported is not None:
        model.load_state_dict(start.imported.model.state_dict())
    model.to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay,
    )
    if start.checkpoint is not None:
        ckpt.restore_optimizer(optimizer, model, start.checkpoint)
        trainer.progress = TrainProgress.from_state(start.checkpoint.train_state)
        ckpt.restore_rng(start.checkpoint)
    return model, optimizer


def initial_losses(model: GPTModel, data: BookData, device: torch.device, seed: int) -> tuple[float, float]:
    """The notebook's losses before training: a fresh seed, eval mode, every batch of both loaders.

    The generator is put back afterwards: the notebook seeds again and rebuilds
    the same model before it trains, which leaves it where the first build did.
    """
    saved = torch.get_rng_state()
    torch.manual_seed(seed)
    model.eval()
    with torch.no_grad():
        train, val = loader_loss(model, data.train, device), loader_loss(model, data.val, device)
    torch.set_rng_state(saved)
    return train, val


def run_book(trainer: Trainer) -> DoneEvent:
    """The whole run; the caller (Trainer.run) records failures and releases the run directory."""
    cfg = trainer.config
    if trainer.dist.enabled:
        raise UserError("--recipe book trains in one process, as the book does; start it without torchrun.")
    device = resolve_device(cfg.device)
    model, optimizer = book_model(trainer, device)
    trainer.model, trainer.optimizer = model, optimizer
    trainer._device = device
    data = book_data(cfg)
    progress = trainer.progress
    trainer._dir.prepare(cfg.to_dict(), resumed_step=progress.step if trainer._resume_path is not None else None)
    steps_per_epoch = len(data.train)
    total = min(cfg.max_steps, cfg.epochs * steps_per_epoch) if cfg.max_steps else cfg.epochs * steps_per_epoch
    trainer._total = total
    eval_freq, eval_iter = cfg.eval_freq or BOOK_EVAL_FREQ, cfg.eval_iter or BOOK_EVAL_ITER
    first = initial_losses(model, data, device, cfg.seed) if progress.step == 0 else (None, None)
    trainer._status("running")
    trainer._emit(StartEvent(
        run_dir=str(trainer.run_dir), device=str(device), num_parameters=model.num_parameters(),
        train_tokens=data.train_tokens, val_tokens=data.val_tokens, train_batches=steps_per_epoch,
        val_batches=len(data.val), total_steps=total, start_step=progress.step, eval_every=eval_freq,
        initial_train_loss=first[0], initial_val_loss=first[1],
    ))
    progress.start_clock()
    trainer._checkpoints.restart()
    reason = "finished"
    tokens_per_batch = cfg.batch_size * (cfg.context_length or 0)
    while progress.epoch < cfg.epochs and progress.step < total and reason == "finished":
        model.train()
        skip = progress.batch_in_epoch
        for i, (inputs, targets) in enumerate(data.train):
            if i < skip:
                continue
            trainer._control.wait_while_paused()
            if trainer._control.stop_requested() or progress.step >= total:
                reason = "stopped" if progress.step < total else reason
                break
            started = time.perf_counter()
            with trainer._lock:
                optimizer.zero_grad()
                loss = book_loss(model, inputs.to(device), targets.to(device))
                loss.backward()
                grad_norm = _grad_norm(model)  # reported only: the book does not clip
                optimizer.step()
            progress.advance(1, inputs.numel())
            loss_value = loss.item()
            trainer._emit(StepEvent(
                step=progress.step, epoch=progress.epoch + 1, tokens_seen=progress.tokens_seen, loss=loss_value,
                lr=cfg.lr, grad_norm=grad_norm, tokens_per_sec=progress.tokens_per_sec(time.perf_counter() - started, tokens_per_batch),
                elapsed=progress.elapsed(), total_steps=total,
            ))
            if not math.isfinite(loss_value):
                raise UserError(f"The loss became {loss_value} at step {progress.step}; lower --lr.")
            if evaluates_after(progress.step, eval_freq):  # the book's global_step (updates - 1) % eval_freq == 0
                _evaluate(trainer, model, data, device, eval_iter)
            if trainer._checkpoints.due(progress.step) or trainer._control.checkpoint_due():
                trainer._control.checkpoint_taken()
                trainer.save()
        else:
            _sample(trainer, model, device)
            progress.next_epoch()
    final = trainer.save()
    done = DoneEvent(
        step=progress.step, tokens_seen=progress.tokens_seen, reason=reason, checkpoint=str(final),
        elapsed=progress.elapsed(), stop_reason=trainer._control.stop_reason if reason == "stopped" else None,
    )
    trainer._emit(done)
    return done


def _grad_norm(model: GPTModel) -> float:
    norms = [torch.linalg.vector_norm(p.grad) for p in model.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


def _evaluate(trainer: Trainer, model: GPTModel, data: BookData, device: torch.device, eval_iter: int) -> None:
    """The book's ``evaluate_model``: a new pass over each loader (the training one reshuffled), then train mode."""
    model.eval()
    with torch.no_grad():
        train = loader_loss(model, data.train, device, eval_iter)
        val = loader_loss(model, data.val, device, eval_iter)
    model.train()
    progress = trainer.progress
    trainer._best.evaluated(progress, val, trainer.request_stop)
    trainer._emit(EvalEvent(step=progress.step, epoch=progress.epoch + 1, tokens_seen=progress.tokens_seen, train_loss=train, val_loss=val))


def _sample(trainer: Trainer, model: GPTModel, device: torch.device) -> None:
    """The book's ``generate_and_print_sample``: greedy, the prompt and its continuation together."""
    cfg = trainer.config
    if not cfg.sample_tokens or not cfg.start_context:
        return
    model.eval()
    ids = book_generate(model, text_to_token_ids(cfg.start_context).to(device), cfg.sample_tokens)
    model.train()
    trainer._emit(SampleEvent(step=trainer.step, epoch=trainer.progress.epoch + 1, prompt=cfg.start_context, text=token_ids_to_text(ids[0])))
