"""``gpt-tui eval``: loss and perplexity of saved weights on both splits of a corpus (by default the run's own)."""

from __future__ import annotations

import argparse
from typing import Any

from gpt_tui.cli.eval_progress import EvalProgress
from gpt_tui.cli.inference import load_for_inference
from gpt_tui.errors import UserError

# Deferred imports: torch and the model load in cmd_eval only; `gpt-tui --help` imports every subcommand.


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ev = sub.add_parser("eval", help="loss and perplexity of a checkpoint on both splits")
    ev.add_argument("--checkpoint", required=True, help="a checkpoint, a run (name or directory; RUN@best for its best checkpoint), or GPT-2 weights")
    ev.add_argument("--data", action="append", help="a source as for train --data, repeatable (default: the run's own corpus)")
    ev.add_argument("--val-data", action="append", help="a held-out set to score as the validation split, repeatable")
    ev.add_argument("--context-length", type=int)
    ev.add_argument("--batch-size", type=int, default=8)
    ev.add_argument("--train-ratio", type=float)
    ev.add_argument("--num-batches", type=int, help="score the first N batches of each split (default: the whole split)")
    ev.add_argument("--device", default="auto")
    _precision_flag(ev)
    ev.add_argument("--hellaswag", metavar="FILE.jsonl", help="score HellaSwag (its published JSONL) instead of the splits")
    ev.add_argument("--hellaswag-out", metavar="FILE.jsonl", help="with --hellaswag: write each item's losses and answers")
    ev.set_defaults(func=cmd_eval)


def _precision_flag(parser: argparse.ArgumentParser) -> None:
    """Training's ``--precision`` (one declaration, in TrainConfig); ``auto`` follows the calibration's evaluation choice."""
    from gpt_tui.engine.options import default_of, options_of
    from gpt_tui.engine.train_options import TrainConfig

    opt = next(o for o in options_of(TrainConfig) if o.name == "precision")
    default = default_of(TrainConfig, "precision")
    parser.add_argument(opt.cli_flag, dest=opt.name, type=opt.kind, choices=opt.choices, default=default,
                        help=f"{opt.help}; auto: what the calibration measured faster for evaluation, as in training "
                        f"(gpt-tui doctor shows it; default: {default})")


def _check_flags(args: argparse.Namespace) -> None:
    """Refuse what no evaluation can use before loading anything (0 batches would print a loss of nan)."""
    for flag, value, leave_out in (("--num-batches", args.num_batches, "leave it out to score every batch"),
                                   ("--context-length", args.context_length, "leave it out for the run's own")):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be 1 or more, got {value}; {leave_out}.")


def cmd_eval(args: argparse.Namespace) -> int:
    _check_flags(args)
    if args.hellaswag is not None or args.hellaswag_out is not None:
        from gpt_tui.cli.benchmark import cmd_hellaswag

        return cmd_hellaswag(args)
    import numpy as np

    from gpt_tui.engine import ownership
    from gpt_tui.engine.checkpoint import read_header, resolve_checkpoint_path
    from gpt_tui.cli.tokenize_line import TokenizeLine
    from gpt_tui.engine.corpus_split import load_split
    from gpt_tui.engine.split_loaders import split_loaders
    from gpt_tui.engine.device import resolve_device
    from gpt_tui.engine.eval_coverage import coverage_text
    from gpt_tui.engine.evaluation import windows_loss
    from gpt_tui.engine.loss import perplexity
    from gpt_tui.cli import console
    from gpt_tui.engine.precision import autocast_for, precision_line
    from gpt_tui.engine.weight_sources import weights_source

    device = resolve_device(args.device)
    source = weights_source(args.checkpoint)
    model = load_for_inference(source, args.device)
    stored: dict[str, Any] = {}
    try:
        stored = read_header(resolve_checkpoint_path(source)).get("train_state", {}).get("train_config") or {}
    except UserError:
        pass  # foreign weights carry no training config
    data = args.data if args.data is not None else stored.get("data")
    val_data = args.val_data if args.val_data is not None or args.data is not None else stored.get("val_data")
    if args.data is None and stored:  # a checkpoint from elsewhere may name any file as its corpus
        home = ownership.run_home(resolve_checkpoint_path(source))
        in_place = ownership.same_dir(stored.get("run_dir"), home)
        for named, flag in ((data, "--data"), (val_data if args.val_data is None else None, "--val-data")):
            ownership.confirm_stored_corpus(args.checkpoint, named, in_place=in_place, use="score it", flag=flag)
    context = args.context_length or stored.get("context_length") or model.config.context_length
    if context > model.config.context_length:
        raise UserError(f"--context-length {context} is longer than the model's {model.config.context_length} positions.")
    ratio = args.train_ratio or stored.get("train_ratio") or 0.9
    split = load_split(
        data, train_ratio=ratio, val_data=val_data, glob=stored.get("glob"), text_field=stored.get("text_field") or "text",
        skip_bad_files=bool(stored.get("skip_bad_files")), progress=TokenizeLine(),
    )
    splits = split_loaders(split, context_length=context, stride=context, batch_size=args.batch_size, train_ratio=ratio, seed=0)
    autocast = autocast_for(device, args.precision, "evaluation")
    console.say(precision_line(device, args.precision, ("evaluation",)), err=True)
    progress = EvalProgress()  # on a terminal only, like train's bar
    for label, loader in (("train:", splits.train), ("val:", splits.val)):
        # the first N batches of the split's fixed order, or every window of it, the last partial batch included
        if args.num_batches is not None:
            windows = loader.order(0)[: args.num_batches * loader.batch_size]
        else:
            windows = np.arange(loader.num_windows)
        progress.start(label[:-1], len(windows), loader.batch_size, context)
        loss = windows_loss(model, loader, windows, device, autocast, on_batch=progress)
        progress.clear()
        read = coverage_text(len(windows) * context, loader.num_windows * context, exact=True)
        print(f"{label:<6} loss {loss:.4f}  perplexity {perplexity(loss):.2f}  ({read})")
    return 0
