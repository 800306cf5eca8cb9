"""The chart's data: full curves in plain lists, thinned to what a widget can show.

The training pane may run for hours, so the history keeps every point but
the chart only ever draws about two points per terminal column: a redraw
costs the same at step 100 and at step 100 000.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from gpt_tui.engine.events import EvalEvent, StepEvent
from gpt_tui.engine.perplexity import perplexity

CHART_MODES = ("loss", "perplexity", "lr")
MODE_TITLES = {"loss": "Loss", "perplexity": "Perplexity", "lr": "Learning rate"}  # the chart pane's border
LOG_SCALE_MODES = frozenset({"perplexity"})
# exp(20) ≈ 4.9e8: beyond this a perplexity says nothing more than "untrained".
MAX_LOSS_FOR_PERPLEXITY = 20.0


@dataclass(frozen=True)
class LineColor:
    """A curve's colour: the theme's ``[chart]`` key that sets it, and the colour drawn when no theme does."""

    key: str
    fallback: tuple[int, int, int]
    theme_color: str = "primary"  # the theme colour followed when the theme's [chart] table names none


@dataclass(frozen=True)
class Curve:
    """One kind of curve. It carries its colour for another run's copy overlaid
    for comparison, so every curve the chart meets can be coloured."""

    label: str
    color: LineColor
    compare_color: LineColor


COMPARE_TRAIN = LineColor("compare-train", (186, 134, 222), "secondary")
COMPARE_VAL = LineColor("compare-val", (229, 104, 121), "error")
TRAIN = Curve("train", LineColor("train", (95, 168, 211), "primary"), COMPARE_TRAIN)
VAL = Curve("val", LineColor("val", (242, 165, 65), "warning"), COMPARE_VAL)
LR = Curve("lr", LineColor("lr", (123, 196, 127), "success"), COMPARE_TRAIN)
# The exponential moving average of the train loss: a line through the noise of single batches.
SMOOTHED = Curve("train (smoothed)", TRAIN.color, COMPARE_TRAIN)
EMA_DECAY = 0.95  # each step's loss moves the line by 5%: about the last 20 steps
CURVES = (TRAIN, VAL, LR)
THEMED_CHART_KEYS = tuple(curve.color.key for curve in CURVES)  # what a theme's [chart] table may set


def mode_title(mode: str) -> str:
    """The plot's own title for a chart mode, saying when its axis is logarithmic."""
    return MODE_TITLES[mode] + (" (log scale)" if mode in LOG_SCALE_MODES else "")


@dataclass
class Series:
    label: str
    curve: Curve
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    overlaid: bool = False  # another run's curve drawn over this app's own

    @property
    def color(self) -> LineColor:
        return self.curve.compare_color if self.overlaid else self.curve.color

    def overlay(self, label: str) -> Series:
        """This curve as another run's, for comparison: its own label and the curve's compare colour."""
        return Series(label, self.curve, self.xs, self.ys, overlaid=True)


def downsample(xs: list[float], ys: list[float], max_points: int) -> tuple[list[float], list[float]]:
    """At most ``max_points`` points keeping each bucket's minimum and maximum, in x order.

    Min/max buckets keep spikes and the lowest loss visible, which a plain
    stride would drop.
    """
    n = len(xs)
    if n <= max_points or max_points < 2:
        return list(xs), list(ys)
    buckets = max_points // 2
    out_x: list[float] = []
    out_y: list[float] = []
    for b in range(buckets):
        start = b * n // buckets
        end = (b + 1) * n // buckets
        if end <= start:
            continue
        chunk = ys[start:end]
        low = min(chunk)
        high = max(chunk)
        i_low = start + chunk.index(low)
        i_high = start + chunk.index(high)
        first, second = sorted((i_low, i_high))
        out_x.append(xs[first])
        out_y.append(ys[first])
        if second != first:
            out_x.append(xs[second])
            out_y.append(ys[second])
    return out_x, out_y


def step_means(xs: list[float], ys: list[float], max_points: int) -> tuple[list[float], list[float]]:
    """At most ``max_points`` points, each the mean of the steps since the point before, drawn at the last of them.

    A single step's loss is one batch's: noise, which min/max thinning would
    even pick out. Buckets are a power of two steps wide, counted from the
    first, so drawn points move only when the width doubles; the last bucket
    is the mean of the steps since the last full one, and grows with the run.
    """
    n = len(xs)
    if n == 0 or max_points < 1:
        return list(xs), list(ys)
    width = 1
    while -(-n // width) > max_points:
        width *= 2
    out_x = [xs[min(start + width, n) - 1] for start in range(0, n, width)]
    out_y = [sum(ys[start : start + width]) / len(ys[start : start + width]) for start in range(0, n, width)]
    return out_x, out_y


def bucket_ends(xs: list[float], ys: list[float], max_points: int) -> tuple[list[float], list[float]]:
    """At most ``max_points`` points, the last of each bucket: a smoothed line already carries its past.

    Buckets are those of ``step_means``, so both lines thin the same way.
    """
    n = len(xs)
    if n == 0 or max_points < 1:
        return list(xs), list(ys)
    width = 1
    while -(-n // width) > max_points:
        width *= 2
    ends = [min(start + width, n) - 1 for start in range(0, n, width)]
    return [xs[i] for i in ends], [ys[i] for i in ends]


def step_ticks(last_step: float, max_ticks: int) -> list[int]:
    """Whole-number ticks 0, d, 2d... up to ``last_step`` with d a 1-2-5 step: steps are counts."""
    if last_step <= 0 or max_ticks < 2:
        return [0]
    raw = last_step / (max_ticks - 1)
    magnitude = 10 ** max(0, math.floor(math.log10(raw))) if raw >= 1 else 1
    for factor in (1, 2, 5, 10):
        spacing = int(factor * magnitude)
        if spacing >= raw:
            break
    return list(range(0, int(last_step) + 1, max(1, spacing)))


class LossHistory:
    """Every training loss, validation loss and learning rate seen, by step."""

    def __init__(self) -> None:
        self.train = Series(TRAIN.label, TRAIN)
        self.val = Series(VAL.label, VAL)
        self.lr = Series(LR.label, LR)
        self.smoothed = Series(SMOOTHED.label, SMOOTHED)  # EMA of the train curve, point for point
        self.version = 0  # bumped on every change, so the chart redraws only when needed

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]

    def add(self, event: Any) -> bool:
        """Fold one trainer event in; True when the curves changed."""
        if isinstance(event, StepEvent):
            self._add_train(event.step, event.loss)
            self.lr.xs.append(event.step)
            self.lr.ys.append(event.lr)
        elif isinstance(event, EvalEvent):
            if event.step == 0 and not self.train.xs:
                # The loss before training: the curve's starting point.
                self._add_train(0, event.train_loss)
            if math.isfinite(event.val_loss):
                self.val.xs.append(event.step)
                self.val.ys.append(event.val_loss)
        else:
            return False
        self.version += 1
        return True

    def _add_train(self, step: float, loss: float) -> None:
        self.train.xs.append(step)
        self.train.ys.append(loss)
        if not math.isfinite(loss):
            return  # a nan or inf batch would stay in the average for ever
        last = self.smoothed.ys[-1] if self.smoothed.ys else loss
        self.smoothed.xs.append(step)
        self.smoothed.ys.append(EMA_DECAY * last + (1 - EMA_DECAY) * loss)

    def smoothed_series(self, mode: str, max_points: int) -> list[Series]:
        """The smoothed train curve of one chart mode (none for the learning rate), thinned to ``max_points``."""
        if mode == "lr" or not self.smoothed.xs:
            return []
        xs, ys = bucket_ends(self.smoothed.xs, self.smoothed.ys, max_points)
        if mode == "perplexity":
            ys = [perplexity(y, cap=MAX_LOSS_FOR_PERPLEXITY) for y in ys]
        return [Series(self.smoothed.label, SMOOTHED, xs, ys)]

    @property
    def points(self) -> int:
        return len(self.train.xs) + len(self.val.xs)

    def series(self, mode: str, max_points: int) -> list[Series]:
        """The curves of one chart mode, each thinned to ``max_points``."""
        if mode == "lr":
            sources = [self.lr]
        else:
            sources = [self.train, self.val]
        out = []
        for source in sources:
            if source is self.train:  # means of the steps each point covers; the evaluation before step 1 stays its own
                first = 1 if source.xs[:1] == [0] else 0
                xs, ys = step_means(source.xs[first:], source.ys[first:], max_points)
                xs, ys = source.xs[:first] + xs, source.ys[:first] + ys
            else:
                xs, ys = downsample(source.xs, source.ys, max_points)
            if mode == "perplexity":  # of the thinned losses: a train point is the exp of its steps' mean loss
                # clipped so a fresh model's ~11 and a diverged one's inf both stay drawable
                ys = [perplexity(y, cap=MAX_LOSS_FOR_PERPLEXITY) for y in ys]
            finite = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]
            out.append(Series(source.label, source.curve, [x for x, _ in finite], [y for _, y in finite]))
        return out
