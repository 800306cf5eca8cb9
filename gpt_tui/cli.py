"""The ``gpt-tui`` command: the app with no arguments, headless subcommands otherwise.

Every subcommand calls the same engine the app uses. A ``UserError`` becomes one
line on stderr and a non-zero exit; nothing the user typed produces a traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any, Callable, Sequence

from gpt_tui import __version__
from gpt_tui.errors import UserError

# TrainConfig fields that `train` exposes as flags; each defaults to None so an
# explicit value can be told apart from "not given" when resuming.
_TRAIN_FLAGS: list[tuple[str, type, str]] = [
    ("data", str, "UTF-8 text file to train on (default: the built-in corpus)"),
    ("model", str, "model preset: tiny, mini, gpt2-small (gpt2, 124M), gpt2-medium, gpt2-large, gpt2-xl"),
    ("context_length", int, "tokens per training window (at most the model's context)"),
    ("stride", int, "tokens between window starts (default: context length)"),
    ("batch_size", int, "windows per batch"),
    ("epochs", int, "passes over the training split"),
    ("max_steps", int, "optimizer steps to run (overrides --epochs)"),
    ("lr", float, "peak learning rate"),
    ("min_lr", float, "learning rate at the end of the cosine decay (default: --lr, no decay)"),
    ("warmup_steps", int, "steps of linear warmup"),
    ("weight_decay", float, "AdamW weight decay"),
    ("grad_clip", float, "clip the global gradient norm to this (0: off)"),
    ("grad_accum", int, "micro-batches per optimizer step"),
    ("eval_freq", int, "evaluate every N steps"),
    ("eval_iter", int, "batches per evaluation"),
    ("train_ratio", float, "share of the tokens used for training"),
    ("start_context", str, "prompt for the sample printed after each epoch"),
    ("sample_tokens", int, "tokens in each epoch's sample"),
    ("seed", int, "random seed"),
    ("device", str, "auto, cpu, cuda, cuda:N or mps"),
    ("precision", str, "auto, fp32 or bf16"),
    ("run_dir", str, "where to write config, metrics and checkpoints (default: a new run under the user data dir)"),
    ("checkpoint_every", int, "save a checkpoint every N steps (a final one is always saved)"),
    ("drop_rate", float, "dropout rate (default: the preset's)"),
    ("init", str, "fresh weights: book (PyTorch defaults, as in chapter 5; the default) or gpt2 (N(0, 0.02))"),
]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpt-tui",
        description="Pre-train GPT-2-style models from scratch, watch them learn, and talk to them. "
        "Run without a subcommand to open the app.",
    )
    parser.add_argument("--version", action="version", version=f"gpt-tui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    app = sub.add_parser("app", help="open the terminal app (the default)")
    app.add_argument("--run-dir", help="open on this run directory")
    app.set_defaults(func=cmd_app)

    train = sub.add_parser(
        "train",
        help="train a model headless, printing the chapter-5 log",
        epilog="Ctrl+C, SIGTERM or SIGHUP: finish the current step, save a checkpoint and exit (a second one exits "
        "at once; saved checkpoints stay whole). SIGUSR1: save a checkpoint and go on. A run started with --detach "
        "is controlled with `gpt-tui stop`, `gpt-tui checkpoint` and `gpt-tui attach`.",
    )
    for name, kind, help_text in _TRAIN_FLAGS:
        train.add_argument(_flag(name), dest=name, type=kind, default=None, help=help_text)
    train.add_argument("--resume", help="continue a run exactly: a run directory or a full checkpoint")
    train.add_argument("--init-from", help="start from these weights (a checkpoint, run, or GPT-2 weights) at step 0")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "--compile", action="store_true", default=None,
        help="torch.compile the training step (a minute to compile; pays off on GPUs for long runs)",
    )
    train.add_argument(
        "--detach", action="store_true",
        help="train in a background process that survives closing the terminal; follow it with `gpt-tui attach`",
    )
    train.set_defaults(func=cmd_train)

    gen = sub.add_parser("generate", help="stream a continuation of a prompt to stdout")
    source = gen.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a checkpoint, run directory, or GPT-2 weights")
    source.add_argument("--model", help="a preset with fresh random weights")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--max-new-tokens", type=int, default=50)
    gen.add_argument("--temperature", type=float, default=0.0, help="0 is greedy")
    gen.add_argument("--top-k", type=int)
    gen.add_argument("--top-p", type=float)
    gen.add_argument("--num-beams", type=int, default=1)
    gen.add_argument("--length-penalty", type=float, default=1.0)
    gen.add_argument("--stop", action="append", default=[], help="stop at this string (repeatable)")
    gen.add_argument("--eos", action="store_true", help="stop at <|endoftext|>")
    gen.add_argument("--seed", type=int)
    gen.add_argument("--device", default="auto")
    gen.add_argument(
        "--precision", default="auto", choices=("auto", "fp32", "bf16"),
        help="weights to decode with; auto: bf16 where the hardware is fast at it (about twice the tokens/s)",
    )
    gen.add_argument("--stats", action="store_true", help="print time to first token and tokens/s to stderr")
    gen.set_defaults(func=cmd_generate)

    ev = sub.add_parser("eval", help="loss and perplexity of a checkpoint on both splits")
    ev.add_argument("--checkpoint", required=True, help="a checkpoint, run directory, or GPT-2 weights")
    ev.add_argument("--data", help="text file (default: the run's own corpus)")
    ev.add_argument("--context-length", type=int)
    ev.add_argument("--batch-size", type=int, default=8)
    ev.add_argument("--train-ratio", type=float)
    ev.add_argument("--num-batches", type=int, help="batches per split (default: all)")
    ev.add_argument("--device", default="auto")
    ev.set_defaults(func=cmd_eval)

    runs = sub.add_parser("runs", help="list training runs and their status")
    runs.add_argument("--dir", help="runs folder (default: the user data dir's)")
    runs.set_defaults(func=cmd_runs)

    for register in _extra_subcommands():
        register(sub)
    return parser


def _extra_subcommands() -> list[Callable[[Any], None]]:
    found = []
    for module_name in ("gpt_tui.cli_weights", "gpt_tui.cli_runs"):
        try:
            module = __import__(module_name, fromlist=["add_subcommands"])
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        found.append(module.add_subcommands)
    return found


# ----- train -----
class TrainLog:
    """Prints the chapter-5 log to stdout and a one-line progress bar to stderr."""

    def __init__(self, show_bar: bool) -> None:
        self.show_bar = show_bar and sys.stderr.isatty()
        self._bar_visible = False
        self._last_bar = 0.0

    def _print(self, text: str) -> None:
        self._clear_bar()
        print(text, flush=True)

    def _clear_bar(self) -> None:
        if self._bar_visible:
            sys.stderr.write("\r\033[K")
            self._bar_visible = False

    def __call__(self, event: Any) -> None:
        from gpt_tui.engine import events as ev

        if isinstance(event, ev.StartEvent):
            where = f"resuming at step {event.start_step}" if event.start_step else "starting"
            self._print(f"Run: {event.run_dir}")
            self._print(
                f"Device {event.device}, {event.num_parameters:,} parameters; "
                f"training tokens: {event.train_tokens:,}, validation tokens: {event.val_tokens:,}; "
                f"{event.train_batches} training / {event.val_batches} validation batches; "
                f"{event.total_steps} steps, {where}."
            )
        elif isinstance(event, ev.EvalEvent):
            self._print(
                f"Ep {event.epoch} (Step {event.step:06d}): Train loss {event.train_loss:.3f}, Val loss {event.val_loss:.3f}"
            )
        elif isinstance(event, ev.SampleEvent):
            self._print(event.text.replace("\n", " "))
        elif isinstance(event, ev.CheckpointEvent):
            self._print(f"Saved checkpoint {event.path}")
        elif isinstance(event, ev.DoneEvent):
            self._print(
                f"{event.reason.capitalize()} at step {event.step} after {event.elapsed:.1f}s "
                f"({event.tokens_seen:,} tokens seen)."
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
            remaining = (event.total_steps - event.step) * (event.elapsed / max(event.step, 1))
            sys.stderr.write(
                f"\r[{'#' * done}{'.' * (width - done)}] {event.step}/{event.total_steps} "
                f"loss {event.loss:.3f} lr {event.lr:.2e} {rate:,.0f} tok/s ETA {remaining:.0f}s\033[K"
            )
            sys.stderr.flush()
            self._bar_visible = True


def _train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    values = {name: getattr(args, name) for name, _, _ in _TRAIN_FLAGS if getattr(args, name) is not None}
    if getattr(args, "compile", None):
        values["compile"] = True
    if values.get("grad_clip") == 0:
        values["grad_clip"] = None
    return values


def cmd_train(args: argparse.Namespace) -> int:
    if getattr(args, "detach", False):
        from gpt_tui.cli_runs import detach_train

        return detach_train(args)  # returns without loading torch; the background process does
    from gpt_tui.engine.trainer import Trainer, TrainConfig, resume_config

    overrides = _train_overrides(args)
    if args.resume:
        config = resume_config(args.resume, overrides)
    else:
        config = TrainConfig(**overrides)
    trainer = Trainer(config, TrainLog(show_bar=not args.quiet), resume=args.resume, init_from=args.init_from)

    interrupts = 0

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            # Checkpoints are replaced atomically, so leaving now cannot damage one.
            sys.stderr.write("\nStopped at once; the last saved checkpoint is intact.\n")
            os._exit(130)
        name = signal.Signals(signum).name
        sys.stderr.write(f"\n{name}: finishing this step and saving a checkpoint (again to quit at once)...\n")
        trainer.request_stop()

    def on_checkpoint_signal(_signum: int, _frame: Any) -> None:
        trainer.request_checkpoint()  # `gpt-tui attach` and `kill -USR1` ask for a checkpoint this way

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            previous[sig] = signal.signal(sig, on_signal)
    if hasattr(signal, "SIGUSR1"):
        previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, on_checkpoint_signal)
    try:
        done = trainer.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if done.reason == "stopped" and trainer.dist.is_main:
        print(f"Resume with: gpt-tui train --resume {trainer.run_dir}", flush=True)
    return 0


# ----- generate -----
def _load_for_inference(source: str, device: str) -> Any:
    from gpt_tui.engine.device import resolve_device

    dev = resolve_device(device)
    try:
        from gpt_tui.engine.weights import load_model
    except ModuleNotFoundError:
        from gpt_tui.engine.checkpoint import load_model_from_checkpoint, resolve_checkpoint_path

        return load_model_from_checkpoint(resolve_checkpoint_path(source), dev)
    return load_model(source, dev).model


def _note_long_prompt(prompt: str, context_length: int) -> None:
    """Say so when the model cannot see the whole prompt (it continues from the prompt's end)."""
    from gpt_tui.engine.tokenizer import encode

    count = len(encode(prompt))
    if count > context_length:
        sys.stderr.write(
            f"gpt-tui: note: the prompt is {count} tokens but this model reads at most {context_length}; "
            f"it continues from the last {context_length}. Shorten the prompt to keep its start in view.\n"
        )


def cmd_generate(args: argparse.Namespace) -> int:
    from gpt_tui.engine.generation import SamplingConfig, stream_text
    from gpt_tui.engine.tokenizer import EOT_ID, VOCAB_SIZE

    sampling = SamplingConfig(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        num_beams=args.num_beams,
        length_penalty=args.length_penalty,
        stop_strings=tuple(args.stop),
        eos_id=EOT_ID if args.eos else None,
        seed=args.seed,
    )
    sampling.validate(VOCAB_SIZE)
    if args.checkpoint:
        model = _load_for_inference(args.checkpoint, args.device)
    else:
        import torch

        from gpt_tui.engine.device import resolve_device
        from gpt_tui.engine.model import GPTModel, get_preset

        torch.manual_seed(args.seed or 0)
        model = GPTModel(get_preset(args.model)).to(resolve_device(args.device)).eval()
    from gpt_tui.engine.generation import prepare_for_inference

    model = prepare_for_inference(model, args.precision)
    _note_long_prompt(args.prompt, model.config.context_length)
    start = time.perf_counter()
    first: float | None = None
    pieces = 0
    sys.stdout.write(args.prompt)
    sys.stdout.flush()
    for piece in stream_text(model, args.prompt, sampling):
        if first is None:
            first = time.perf_counter() - start
        pieces += 1
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    if args.stats:
        total = time.perf_counter() - start
        sys.stderr.write(f"time to first token {first or 0:.3f}s, {pieces} pieces in {total:.2f}s\n")
    return 0


# ----- eval -----
def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from gpt_tui.engine.checkpoint import read_header, resolve_checkpoint_path
    from gpt_tui.engine.data import make_loaders, tokenize_corpus
    from gpt_tui.engine.device import resolve_device
    from gpt_tui.engine.loss import calc_loss_loader, perplexity
    from gpt_tui.engine.precision import autocast_for

    device = resolve_device(args.device)
    model = _load_for_inference(args.checkpoint, args.device)
    stored: dict[str, Any] = {}
    try:
        stored = read_header(resolve_checkpoint_path(args.checkpoint)).get("train_state", {}).get("train_config") or {}
    except UserError:
        pass  # foreign weights carry no training config
    data = args.data if args.data is not None else stored.get("data")
    context = args.context_length or stored.get("context_length") or model.config.context_length
    if context > model.config.context_length:
        raise UserError(f"--context-length {context} is longer than the model's {model.config.context_length} positions.")
    ratio = args.train_ratio or stored.get("train_ratio") or 0.9
    splits = make_loaders(
        tokenize_corpus(data), context_length=context, stride=context, batch_size=args.batch_size, train_ratio=ratio, seed=0
    )
    autocast = autocast_for(device, "fp32")
    with torch.no_grad():
        train = calc_loss_loader(model, splits.train.batches(0, 0), device, args.num_batches, autocast)
        val = calc_loss_loader(model, splits.val.batches(0, 0), device, args.num_batches, autocast)
    print(f"train: loss {train:.4f}  perplexity {perplexity(train):.2f}  ({splits.train_tokens:,} tokens)")
    print(f"val:   loss {val:.4f}  perplexity {perplexity(val):.2f}  ({splits.val_tokens:,} tokens)")
    return 0


# ----- runs -----
def cmd_runs(args: argparse.Namespace) -> int:
    from gpt_tui.engine.runs import list_runs

    runs = list_runs(args.dir)
    if not runs:
        print("No runs yet; start one with `gpt-tui train`.")
        return 0
    print(f"{'RUN':<34} {'STATUS':<9} {'STEP':>12} {'BEST VAL':>9}  MODEL")
    for run in runs:
        steps = f"{run.step}/{run.total_steps}" if run.total_steps else str(run.step)
        best = f"{run.best_val_loss:.3f}" if run.best_val_loss is not None else "-"
        print(f"{run.name:<34} {run.status:<9} {steps:>12} {best:>9}  {run.model or '-'}")
    return 0


# ----- app -----
def cmd_app(args: argparse.Namespace) -> int:
    from gpt_tui.tui.app import run_app

    return run_app(run_dir=getattr(args, "run_dir", None))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", cmd_app)
    if func in (cmd_app, cmd_train):
        from gpt_tui.engine.runtime import tune_malloc

        tune_malloc()  # before any thread starts, so the app's training worker shares the main heap
    try:
        return int(func(args) or 0)
    except UserError as exc:
        sys.stderr.write(f"gpt-tui: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("\ngpt-tui: interrupted\n")
        return 130
    except RuntimeError as exc:
        if type(exc).__name__ != "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, named so torch stays unimported
            raise
        sys.stderr.write(
            "gpt-tui: error: the GPU ran out of memory; use a smaller model, batch or context, "
            "or --device cpu.\n"
        )
        return 2
    except BrokenPipeError:
        return 0
