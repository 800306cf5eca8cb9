"""``gpt-tui plot``: a run's curves (or several runs' overlaid) as the book draws them, into a PNG, PDF or SVG."""

from __future__ import annotations

import argparse

from gpt_tui.cli import console
from gpt_tui.errors import UserError

# Deferred imports: matplotlib (an optional extra) loads in cmd_plot only; `gpt-tui --help` imports every subcommand.


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plot = sub.add_parser(
        "plot", help="draw runs' loss, perplexity and learning rate into an image (needs gpt-tui[plot])",
        description="Train and validation loss against epochs (tokens seen on the top axis), perplexity against "
        "tokens seen, and the learning rate, for one run or several overlaid.",
    )
    plot.add_argument("runs", nargs="+", metavar="RUN", help="a run name (as `gpt-tui runs` lists it) or a run directory")
    plot.add_argument("--out", required=True, metavar="FILE", help="the image to write: .png, .pdf or .svg")
    plot.set_defaults(func=cmd_plot)


def cmd_plot(args: argparse.Namespace) -> int:
    from gpt_tui import figures
    from gpt_tui.engine.metric_series import read_curves
    from gpt_tui.engine.runs import METRICS_FILE, find_run
    from gpt_tui.textsafe import visible

    path, fmt = figures.output_path(args.out)
    curves = []
    for name in args.runs:
        run = read_curves(find_run(name))
        if run.empty:
            raise UserError(f"Run {visible(name)} has no steps or evaluations in its {METRICS_FILE} yet; nothing to plot.")
        curves.append(run)
    written = figures.save(figures.runs_figure(curves), path, fmt)
    console.say(f"wrote {visible(written)}")
    return 0
