"""``gpt-tui eval``: loss and perplexity of saved weights on both splits of a corpus (by default the run's own)."""

from __future__ import annotations

import argparse
from typing import Any

from gpt_tui.cli.inference import load_for_inference
from gpt_tui.errors import UserError

# Deferred imports: torch and the model load in cmd_eval only; `gpt-tui --help` imports every subcommand.


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ev = sub.add_parser("eval", help="loss and perplexity of a checkpoint on both splits")
    ev.add_argument("--checkpoint", required=True, help="a checkpoint, a run (name or directory; RUN@best for its best checkpoint), or GPT-2 weights")
    ev.add_argument("--data", help="text file (default: the run's own corpus)")
    ev.add_argument("--context-length", type=int)
    ev.add_argument("--batch-size", type=int, default=8)
    ev.add_argument("--train-ratio", type=float)
    ev.add_argument("--num-batches", type=int, help="score the first N batches of each split (default: the whole split)")
    ev.add_argument("--device", default="auto")
    ev.add_argument("--hellaswag", metavar="FILE.jsonl", help="score HellaSwag (its published JSONL) instead of the splits")
    ev.add_argument("--hellaswag-out", metavar="FILE.jsonl", help="with --hellaswag: write each item's losses and answers")
    ev.set_defaults(func=cmd_eval)


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
    from gpt_tui.engine.data import make_loaders, tokenize_corpus
    from gpt_tui.engine.device import resolve_device
    from gpt_tui.engine.eval_coverage import coverage_text
    from gpt_tui.engine.evaluation import windows_loss
    from gpt_tui.engine.loss import perplexity
    from gpt_tui.engine.precision import autocast_for
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
    if args.data is None and stored:  # a checkpoint from elsewhere may name any file as its corpus
        home = ownership.run_home(resolve_checkpoint_path(source))
        ownership.confirm_stored_corpus(args.checkpoint, data, in_place=ownership.same_dir(stored.get("run_dir"), home), use="score it")
    context = args.context_length or stored.get("context_length") or model.config.context_length
    if context > model.config.context_length:
        raise UserError(f"--context-length {context} is longer than the model's {model.config.context_length} positions.")
    ratio = args.train_ratio or stored.get("train_ratio") or 0.9
    splits = make_loaders(
        tokenize_corpus(data), context_length=context, stride=context, batch_size=args.batch_size, train_ratio=ratio, seed=0
    )
    autocast = autocast_for(device, "fp32")
    for label, loader in (("train:", splits.train), ("val:", splits.val)):
        # the first N batches of the split's fixed order, or every window of it, the last partial batch included
        if args.num_batches is not None:
            windows = loader.order(0)[: args.num_batches * loader.batch_size]
        else:
            windows = np.arange(loader.num_windows)
        loss = windows_loss(model, loader, windows, device, autocast)
        read = coverage_text(len(windows) * context, loader.num_windows * context, exact=True)
        print(f"{label:<6} loss {loss:.4f}  perplexity {perplexity(loss):.2f}  ({read})")
    return 0
