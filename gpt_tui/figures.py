"""Training curves drawn with matplotlib into PNG, PDF or SVG files: ``gpt-tui plot`` and the app's chart export.

matplotlib is an optional extra (``gpt-tui[plot]``), imported here only when
a figure is drawn. Figures are built as ``matplotlib.figure.Figure`` objects
rendered by the Agg canvas, never through pyplot, so drawing holds no global
state and is safe on a worker thread of the app; the size in pixels is fixed
(no tight cropping), so a figure is the same size every time.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from gpt_tui import extras, fileio, paths
from gpt_tui.engine.metric_series import RunCurves
from gpt_tui.engine.perplexity import perplexity
from gpt_tui.errors import UserError
from gpt_tui.textsafe import visible

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PLOT_EXTRA = "plot"
OUTPUT_FORMATS = ("png", "pdf", "svg")
DPI = 100
RUNS_FIGURE_SIZE = (15.0, 4.5)  # inches: three panels side by side, 1500 × 450 pixels in a PNG
CHART_FIGURE_SIZE = (8.0, 4.5)  # the app's one chart, 800 × 450 pixels


def _figure(size: tuple[float, float], purpose: str) -> "Figure":
    extras.require("matplotlib", PLOT_EXTRA, purpose)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def output_path(text: str) -> tuple[Path, str]:
    """The file a figure goes to and its format (from the name), or one line saying what to give instead."""
    path = paths.expand_user(text)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in OUTPUT_FORMATS:
        raise UserError(f"Cannot tell the format of {visible(text)}; end the name with .png, .pdf or .svg.")
    if path.is_dir():
        raise UserError(f"{visible(text)} is a folder; give a file name ending in .{fmt}.")
    if not path.parent.is_dir():
        raise UserError(f"The folder {visible(path.parent)} does not exist; make it first or write the figure elsewhere.")
    return path, fmt


def save(figure: "Figure", path: Path, fmt: str) -> Path:
    """Write the figure all at once: an interrupted save leaves no half file, and a link there is replaced."""
    try:
        return fileio.atomic_write(path, lambda out: figure.savefig(out, format=fmt, dpi=DPI))
    except UserError:
        raise
    except OSError as exc:
        raise UserError(f"Cannot write {visible(path)}: {exc.strerror or exc}.") from None


def _finite(xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    pairs = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]
    return [x for x, _ in pairs], [y for _, y in pairs]


def runs_figure(runs: Sequence[RunCurves]) -> "Figure":
    """The book's figures for each run overlaid: losses against epochs (tokens seen on top), perplexity, and lr."""
    figure = _figure(RUNS_FIGURE_SIZE, "gpt-tui plot")
    loss_ax, ppl_ax, lr_ax = figure.subplots(1, 3)
    colors = [f"C{i % 10}" for i in range(len(runs))]
    for curves, color in zip(runs, colors):
        name = visible(curves.name)
        evals = bool(curves.eval_steps)
        train_x = curves.eval_epochs if evals else curves.step_epochs
        train_y = curves.eval_train_losses if evals else curves.step_losses
        loss_ax.plot(*_finite(train_x, train_y), color=color, label=f"{name} training loss")
        loss_ax.plot(*_finite(curves.eval_epochs, curves.val_losses), color=color, linestyle="-.",
                     label=f"{name} validation loss")
        train_ppl = [perplexity(loss) for loss in (curves.eval_train_losses if evals else curves.step_losses)]
        ppl_ax.plot(*_finite(curves.eval_tokens if evals else curves.step_tokens, train_ppl), color=color,
                    label=f"{name} training")
        ppl_ax.plot(*_finite(curves.eval_tokens, [perplexity(loss) for loss in curves.val_losses]), color=color,
                    linestyle="-.", label=f"{name} validation")
        lr_ax.plot(*_finite(curves.steps, curves.lrs), color=color, label=name)
    loss_ax.set_xlabel("Epochs")
    loss_ax.set_ylabel("Loss")
    loss_ax.legend(loc="upper right", fontsize="small")
    _tokens_axis(loss_ax, runs)
    ppl_ax.set_xlabel("Tokens seen")
    ppl_ax.set_ylabel("Perplexity")
    if any(line.get_ydata().size for line in ppl_ax.get_lines()):
        ppl_ax.set_yscale("log")
    ppl_ax.legend(loc="upper right", fontsize="small")
    lr_ax.set_xlabel("Step")
    lr_ax.set_ylabel("Learning rate")
    lr_ax.set_ylim(bottom=0)  # a constant rate reads as a flat line at its value, not as noise around it
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    lr_ax.legend(loc="lower right", fontsize="small")
    figure.subplots_adjust(left=0.05, right=0.99, bottom=0.12, top=0.86, wspace=0.25)
    return figure


def _tokens_axis(ax: Any, runs: Sequence[RunCurves]) -> None:
    """Tokens seen along the top of the epochs axis, as in the book; exact for the first run whose rate is known."""
    rates = [(curves.name, curves.tokens_per_epoch) for curves in runs if curves.tokens_per_epoch]
    if not rates:
        return
    name, rate = rates[0]
    assert rate is not None
    top = ax.secondary_xaxis("top", functions=(lambda e: e * rate, lambda t: t / rate))
    same = len({r for _, r in rates}) == 1 and len(rates) == len(runs)
    top.set_xlabel("Tokens seen" if same else f"Tokens seen ({visible(name)})")


def chart_figure(series: Sequence[Any], title: str, *, log_y: bool, x_label: str = "Step") -> "Figure":
    """The app's chart as shown (gpt_tui.tui.chart_data Series: label, xs, ys and a colour), for a file."""
    figure = _figure(CHART_FIGURE_SIZE, "Exporting the chart")
    ax = figure.subplots()
    for line in series:
        red, green, blue = line.color.fallback
        ax.plot(line.xs, line.ys, color=(red / 255, green / 255, blue / 255), label=visible(line.label))
    if log_y and any(line.ys for line in series):
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(x_label)
    if series:
        ax.legend(loc="upper right")
    figure.subplots_adjust(left=0.1, right=0.97, bottom=0.12, top=0.9)
    return figure
