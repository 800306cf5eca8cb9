"""Other runs' curves on the app's chart (``--compare``, and Compare in the Runs screen), followed live."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.widget import Widget

from gpt_tui.engine.runs import RunFollower
from gpt_tui.errors import UserError
from gpt_tui.tui.chart_data import LossHistory, Series

FOLLOW_INTERVAL_S = 0.5


class CombinedHistory:
    """The app's own curves plus other runs' curves, read by the chart as one history."""

    def __init__(self, primary: LossHistory) -> None:
        self.primary = primary
        self.others: list[tuple[str, LossHistory]] = []

    @property
    def version(self) -> tuple[int, ...]:
        return (self.primary.version, *(history.version for _, history in self.others))

    @property
    def points(self) -> int:
        return self.primary.points + sum(history.points for _, history in self.others)

    def series(self, mode: str, max_points: int) -> list[Series]:
        out = self.primary.series(mode, max_points)
        for name, history in self.others:
            for series in history.series(mode, max_points):
                out.append(series.overlay(f"{name} {series.label}"))
        return out

    def __getattr__(self, name: str) -> Any:  # clear(), add(), train, val... are the primary's
        return getattr(self.primary, name)


class ComparedRun(Widget):
    """Another run's curves on the chart, kept up to date while it trains."""

    DEFAULT_CSS = "ComparedRun { display: none; }"

    def __init__(self, run_dir: str | Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.history = LossHistory()
        self.follower = RunFollower(self.run_dir)

    def on_mount(self) -> None:
        app: Any = self.app  # a GptTuiApp: its chart and history
        combined = app.chart.history
        if not isinstance(combined, CombinedHistory):
            combined = CombinedHistory(app.history)
            app.chart.history = combined  # type: ignore[assignment]
        combined.others.append((self.run_dir.name, self.history))
        self.poll()
        self.set_interval(FOLLOW_INTERVAL_S, self.poll)

    def poll(self) -> None:
        update = self.follower.poll()
        if update.reset:
            self.history.clear()
        for event in update.events:
            self.history.add(event)

    def on_unmount(self) -> None:
        combined = getattr(self.app.chart, "history", None)
        if isinstance(combined, CombinedHistory):
            combined.others = [(n, h) for n, h in combined.others if h is not self.history]


def compare_with(app: Any, run_dir: str | Path) -> ComparedRun:
    """Overlay another run's loss curves on the app's chart."""
    folder = Path(run_dir)
    if not folder.is_dir():
        raise UserError(f"Run directory {run_dir} does not exist; `gpt-tui runs` lists the runs.")
    compared = ComparedRun(folder)
    app.mount(compared)
    return compared
