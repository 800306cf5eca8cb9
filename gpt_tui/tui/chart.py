"""The loss chart: train and validation loss (or perplexity, or learning rate) against steps.

Drawing goes through plotext, which rebuilds the whole chart on every
refresh, so this widget redraws on its own timer at most a few times a second
and only when the history changed, with the data thinned to the widget's width.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import RenderResult
from textual.reactive import reactive
from plotext._dict import themes as plotext_themes
from textual_plotext import PlotextPlot

from gpt_tui.tui.chart_colors import ChartPalette, chart_palette
from gpt_tui.tui.chart_data import CHART_MODES, LOG_SCALE_MODES, SMOOTHED, TRAIN, LossHistory, mode_title, step_ticks

REDRAW_INTERVAL_S = 0.25  # how often the chart checks for new data
# A redraw may use at most this share of one core: at ~20 ms per plotext render of
# a large chart that is one redraw every 0.8 s, on a small one every 0.25 s. The
# training thread, not the chart, should have the CPU.
CPU_BUDGET = 0.025
POINTS_PER_COLUMN = 2


class LossChart(PlotextPlot):
    """Reads a shared LossHistory; the app appends to it, the chart decides when to draw."""

    DEFAULT_CSS = """
    LossChart {
        width: 1fr;
        height: 1fr;
        min-height: 6;
    }
    """

    mode: reactive[str] = reactive("loss")
    smoothed: reactive[bool] = reactive(True)  # the train curve's moving average over faint raw steps

    def __init__(self, history: LossHistory, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.history = history
        self._drawn: tuple[int, str, int, str, bool] | None = None
        self.redraws = 0  # how many times the plot was rebuilt (tests and the benchmark read it)
        self._next_redraw_at = 0.0
        self._render_cost = 0.0
        self.empty_hint = "press F5 to start training"

    def on_mount(self) -> None:
        super().on_mount()
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.redraw_if_changed(force=True))
        self.set_interval(REDRAW_INTERVAL_S, self.redraw_if_changed)
        self.redraw_if_changed(force=True)

    def watch_mode(self, _mode: str) -> None:
        if self.is_mounted:
            self.redraw_if_changed(force=True)

    def watch_smoothed(self, _smoothed: bool) -> None:
        if self.is_mounted:
            self.redraw_if_changed(force=True)

    def cycle_mode(self) -> str:
        self.mode = CHART_MODES[(CHART_MODES.index(self.mode) + 1) % len(CHART_MODES)]
        return self.mode

    def on_resize(self) -> None:
        self.redraw_if_changed()

    def render(self) -> RenderResult:
        # plotext is strict about its input; a chart it cannot draw must not take the app down.
        started = time.perf_counter()
        try:
            return super().render()
        except Exception as exc:  # noqa: BLE001 - any plotext failure
            return Text(f"The chart cannot be drawn right now ({type(exc).__name__}: {exc}).", style="dim")
        finally:
            cost = time.perf_counter() - started
            self._render_cost = cost
            self._next_redraw_at = started + max(REDRAW_INTERVAL_S, cost / CPU_BUDGET)

    def redraw_if_changed(self, force: bool = False) -> None:
        state = (self.history.version, self.mode, self.size.width, self.app.theme, self.smoothed)
        if not force and state == self._drawn:
            return
        only_new_data = self._drawn is not None and state[1:] == self._drawn[1:]
        if not force and only_new_data and time.perf_counter() < self._next_redraw_at:
            return  # new points wait for the budget; a resize, mode or theme change does not
        self._drawn = state
        self._replot()
        self.refresh()

    def _replot(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.yscale("linear")  # plotext cannot draw an empty log axis; set below once there is data
        plt.xlabel("step")
        max_points = max(16, self.size.width * POINTS_PER_COLUMN)
        palette = self._use_palette()
        drawn = False
        last_step = 0.0
        curves = self.history.series(self.mode, max_points)
        if self.smoothed:
            curves += self.history.smoothed_series(self.mode, max_points)
        for series in curves:
            if not series.xs:
                continue
            strength = "normal"
            if self.smoothed and series.curve is TRAIN and not series.overlaid:
                strength = "faint"  # the raw steps under their moving average
            elif series.curve is SMOOTHED:
                strength = "strong"
            color = palette.line(series.color, strength=strength)
            marker = "braille" if len(series.xs) > 1 else "dot"
            plt.plot(series.xs, series.ys, label=series.label, marker=marker, color=color)
            last_step = max(last_step, series.xs[-1])
            drawn = True
        if drawn and self.mode in LOG_SCALE_MODES:
            plt.yscale("log")
        ticks = step_ticks(last_step, max(2, self.size.width // 12))
        plt.xticks(ticks, [str(t) for t in ticks])
        # The pane's border names the curve; the plot's own title only guides a first-time user.
        plt.title("" if drawn else f"{mode_title(self.mode)} — {self.empty_hint}")
        self.redraws += 1

    def _use_palette(self) -> ChartPalette:
        """The theme's chart colours; the canvas and tick labels go through a plotext theme of their own."""
        palette = chart_palette(self.app.theme_variables)
        name = f"gpt-tui-{self.app.theme}"
        plotext_themes[name] = (palette.background, palette.background, palette.labels, "default", [palette.labels])
        if self.theme != name:
            self.theme = name  # type: ignore[assignment]
        return palette
