"""``gpt-tui eval``: loss and perplexity of saved weights on both splits of a corpus (by default the run's own)."""

from __future__ import annotations

import argparse
from typing import Any

from gpt_tui.cli.inference import load_for_inference
from gpt_tui.errors import UserError

# Deferred imports: torch and the model load in cmd_eval only; `gpt-tui --help` imports every subcommand.


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ev = sub.add_parser("eval", help="loss and perplexity of a checkpoint on both splits")
    ev.add_argument("--checkpoint", required=True, help="a checkpoint, a run (name or directory), or GPT-2 weights")
    ev.add_argument("--data", help="text file (default: the run's own corpus)")
    ev.add_argument("--context-length", type=int)
    ev.add_argument("--batch-size", type=int, default=8)
    ev.add_argument("--train-ratio", type=float)
    ev.add_argument("--num-batches", type=int, help="batches per split (default: all)")
    ev.add_argument("--device", default="auto")
    ev.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from gpt_tui.engine.checkpoint import read_header, resolve_checkpoint_path
    from gpt_tui.engine.data import make_loaders, tokenize_corpus
    from gpt_tui.engine.device import resolve_device
    from gpt_tui.engine.loss import calc_loss_loader, perplexity
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
