"""``gpt-tui train``: a training run in this process, printing the chapter-5 log, or (``--detach``) in the background.

torch is imported only once a run starts here; ``--detach`` hands the run to
another process (gpt_tui.cli.detach) without loading it.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from gpt_tui.cli import console
from gpt_tui.cli.detach import detach_train
from gpt_tui.cli.signals import stop_in_order
from gpt_tui.cli.tokenize_line import TokenizeLine
from gpt_tui.cli.train_flags import add_train_flags, train_overrides
from gpt_tui.engine import events as ev
from gpt_tui.engine.eta import StepPace
from gpt_tui.engine.eval_coverage import loss_with_coverage
from gpt_tui.engine.eval_schedule import book_step
from gpt_tui.engine.mfu import mfu_text, speed_line
from gpt_tui.engine.recipe_summary import recipe_line
from gpt_tui.errors import UserError
from gpt_tui.textsafe import printable, visible


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    train = sub.add_parser(
        "train",
        help="train a model headless, printing the chapter-5 log",
        epilog="Ctrl+C, SIGTERM or SIGHUP: finish the current step, save a checkpoint and exit (a second one exits "
        "at once; saved checkpoints stay whole). SIGUSR1: save a checkpoint and go on. A run started with --detach "
        "is controlled with `gpt-tui stop`, `gpt-tui checkpoint` and `gpt-tui attach`.",
    )
    add_train_flags(train)
    train.add_argument("--resume", help="continue a run exactly: a run directory or a full checkpoint (one outside a "
                       "run's checkpoints/ continues in --run-dir or a new run)")
    train.add_argument("--init-from", help="start from these weights (a checkpoint, run, or GPT-2 weights) at step 0")
    train.add_argument("--with-optimizer", action="store_true",
                       help="with --init-from: also restore the file's AdamW state and step count, as --resume does "
                       "(the book's model_and_optimizer.pth, or a full checkpoint)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "--detach", action="store_true",
        help="train in a background process that survives closing the terminal; follow it with `gpt-tui attach`",
    )
    train.set_defaults(func=cmd_train)


def _documents(count: int, event: ev.StartEvent) -> str:
    """" in N documents" after a split's tokens, for a corpus of several (one text file reads as before)."""
    if event.train_documents + event.val_documents <= 2:
        return ""
    return f" in {count:,} document{'s' if count != 1 else ''}"


class TrainLog:
    """Prints the chapter-5 log to stdout and a one-line progress bar to stderr; a dead stream only goes quiet."""

    def __init__(self, show_bar: bool, recipe: str = "") -> None:
        self.show_bar = show_bar and sys.stderr.isatty()
        self._recipe = recipe  # the run's settings, printed once it starts (not before a refusal)
        self._bar_visible = False
        self._last_bar = 0.0
        self._start: ev.StartEvent | None = None  # the device peak MFU is against
        self._last_step: ev.StepEvent | None = None  # the latest step, for the speed line after an evaluation
        self._pace = StepPace()  # the ETA's, without evaluation and save pauses
        self._tokenizing = TokenizeLine()  # the corpus being prepared, before the first step

    def _print(self, text: str) -> None:
        self._clear_bar()
        console.say(text)

    def _clear_bar(self) -> None:
        if self._bar_visible:
            console.write(sys.stderr, "\r\033[K")
            self._bar_visible = False

    def __call__(self, event: Any) -> None:
        self._pace.apply(event)
        if isinstance(event, ev.TokenizeProgress):
            if self.show_bar:
                self._tokenizing(event)
            return
        if isinstance(event, ev.StepEvent):
            self._last_step = event
        if isinstance(event, ev.StartEvent):
            self._start = event
            where = f"resuming at step {event.start_step}" if event.start_step else "starting"
            every = f"evaluated every {event.eval_every} steps; " if event.eval_every else ""
            if self._recipe:
                self._print(self._recipe)
            self._print(f"Run: {visible(event.run_dir)}")
            self._print(
                f"Device {event.device}, {event.num_parameters:,} parameters; "
                f"training tokens: {event.train_tokens:,}{_documents(event.train_documents, event)}, "
                f"validation tokens: {event.val_tokens:,}{_documents(event.val_documents, event)}; "
                f"{event.train_batches} training / {event.val_batches} validation batches; "
                f"{every}{event.total_steps} steps, {where}."
            )
            if event.precision:
                self._print(event.precision)
            if event.initial_train_loss is not None:  # the book recipe's lines, printed as the notebook prints them
                self._print(f"Training loss: {event.initial_train_loss}")
                self._print(f"Validation loss: {event.initial_val_loss}")
        elif isinstance(event, ev.EvalEvent):
            train = loss_with_coverage(event.train_loss, event.train_tokens, event.train_split_tokens)
            val = loss_with_coverage(event.val_loss, event.val_tokens, event.val_split_tokens)
            if event.step == 0:  # the untrained model, before any update: the notebook's two lines
                self._print(f"Training loss: {train}")
                self._print(f"Validation loss: {val}")
            else:  # the book's global_step, one less than the updates done (gpt_tui.engine.eval_schedule)
                self._print(f"Ep {event.epoch} (Step {book_step(event.step):06d}): Train loss {train}, Val loss {val}")
            if self._last_step is not None and self._last_step.step == event.step:
                self._print(speed_line(self._last_step, self._start))
        elif isinstance(event, ev.SampleEvent):
            self._print(printable(event.text.replace("\n", " ")))
        elif isinstance(event, ev.CheckpointEvent):
            self._print(f"Saved checkpoint {visible(event.path)}")
        elif isinstance(event, ev.DoneEvent):
            self._print(
                f"{event.reason.capitalize()} at step {event.step} after {event.elapsed:.1f}s "
                f"({event.tokens_seen:,} tokens seen{'; ' + event.stop_reason if event.stop_reason else ''})."
            )
        elif isinstance(event, ev.ErrorEvent):
            self._clear_bar()
        elif isinstance(event, ev.StepEvent) and self.show_bar:
            now = time.monotonic()
            if now - self._last_bar < 0.1 and event.step != event.total_steps:
                return
            self._last_bar = now
            width = 30
            done = int(width * event.step / max(event.total_steps, 1))
            rate = event.tokens_per_sec
            remaining = self._pace.eta(event.step, event.total_steps)
            self._bar_visible = console.write(
                sys.stderr,
                f"\r[{'#' * done}{'.' * (width - done)}] {event.step}/{event.total_steps} "
                f"loss {event.loss:.3f} lr {event.lr:.2e} {rate:,.0f} tok/s{mfu_text(event)} ETA {'--' if remaining is None else f'{remaining:.0f}s'}\033[K",
            )


_train_overrides = train_overrides  # the name tests and tools know


def cmd_train(args: argparse.Namespace) -> int:
    overrides = train_overrides(args)  # each flag checked before anything starts, here or in the background
    if getattr(args, "with_optimizer", False):
        if not args.init_from or args.resume:
            raise UserError("--with-optimizer goes with --init-from FILE (and without --resume); it restores that "
                            "file's optimizer state too.")
        args.resume, args.init_from = args.init_from, None
    if getattr(args, "detach", False):
        return detach_train(args)  # returns without loading torch; the background process does
    from gpt_tui.engine.trainer import Trainer, TrainConfig, resume_config

    if args.resume:
        config = resume_config(args.resume, overrides)
    else:
        config = TrainConfig(**overrides)
    trainer = Trainer(config, TrainLog(show_bar=not args.quiet, recipe=recipe_line(config)), resume=args.resume,
                      init_from=args.init_from)
    with stop_in_order(trainer):
        done = trainer.run()
    if done.reason == "stopped" and trainer.dist.is_main:
        console.say(f"Resume with: gpt-tui train --resume {visible(trainer.run_dir)}")
    return 0
