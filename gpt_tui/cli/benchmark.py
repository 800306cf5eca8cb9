"""``gpt-tui eval --hellaswag FILE``: a benchmark score for saved weights, with progress on a terminal.

The scoring is gpt_tui.engine.hellaswag's; this module reads the flags, shows
progress on stderr when it is a terminal, prints the totals and, with
``--hellaswag-out``, writes each item's result as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from gpt_tui import fileio
from gpt_tui.cli import console
from gpt_tui.cli.inference import load_for_inference
from gpt_tui.errors import UserError
from gpt_tui.paths import expand_user
from gpt_tui.textsafe import visible


def _out_path(value: str | None) -> Path | None:
    """Where per-item results go, checked before the model loads so that no scoring is lost to a bad path."""
    if value is None:
        return None
    path = expand_user(value)
    if path.is_dir():
        raise UserError(f"--hellaswag-out {value} is a folder; give a file name such as hellaswag-items.jsonl.")
    if not path.parent.is_dir():
        raise UserError(f"--hellaswag-out {value}: the folder {path.parent} does not exist; create it or choose another.")
    return path


def cmd_hellaswag(args: argparse.Namespace) -> int:
    from gpt_tui.engine.device import resolve_device
    from gpt_tui.engine.hellaswag import ItemScore, Score, evaluate, read_items
    from gpt_tui.engine.precision import autocast_for, precision_line
    from gpt_tui.engine.weight_sources import weights_source

    if args.hellaswag is None:
        raise UserError("--hellaswag-out needs --hellaswag FILE.jsonl, the items to score.")
    out = _out_path(args.hellaswag_out)
    items = read_items(expand_user(args.hellaswag))
    device = resolve_device(args.device)
    model = load_for_inference(weights_source(args.checkpoint), args.device)
    precision = args.precision  # eval's --precision; auto: the calibration's evaluation choice
    autocast = autocast_for(device, precision, "evaluation")
    console.say(precision_line(device, precision, ("evaluation",)), err=True)
    show = sys.stderr is not None and sys.stderr.isatty()
    last = 0.0

    def progress(result: ItemScore, score: Score) -> None:
        nonlocal last
        now = time.monotonic()
        if show and (now - last >= 0.2 or score.count == len(items)):
            last = now
            console.write(sys.stderr, f"\rHellaSwag {score.count:,}/{len(items):,}  acc_norm {score.acc_norm:.4f}\033[K")

    score, results = evaluate(model, items, device, progress, autocast)
    if show:
        console.write(sys.stderr, "\r\033[K")
    if out is not None:
        text = "".join(json.dumps(r.to_record()) + "\n" for r in results)
        try:
            fileio.atomic_write_text(out, text)
        except OSError as exc:
            raise UserError(f"Cannot write {out}: {exc.strerror or exc}.") from None
    n = f"{score.count:,}"
    console.say(
        f"HellaSwag ({visible(Path(args.hellaswag).name)}): {n} items; acc {score.acc:.4f} ({score.correct:,}/{n}), "
        f"acc_norm {score.acc_norm:.4f} ({score.correct_norm:,}/{n})"
    )
    if out is not None:
        console.say(f"Per-item results: {visible(str(out))}")
    return 0
