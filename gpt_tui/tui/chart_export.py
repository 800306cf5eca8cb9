"""The chart as a PNG and the metrics as a CSV, written into the run directory (F9 and the palette).

The PNG shows the very curves the chart shows (gpt_tui.tui.chart_data), taken
on the UI thread and drawn with matplotlib on a worker; the worker posts
``ExportWritten`` and the app says where the file went, or what was wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpt_tui.errors import UserError
from gpt_tui.textsafe import visible
from gpt_tui.tui.chart_data import LOG_SCALE_MODES, mode_title
from gpt_tui.tui.messages import ExportWritten
from gpt_tui.tui.model_source import display_path

EXPORT_POINTS = 4000  # a file has room for far more points than a terminal column


class ChartExport:
    """Writes the current run's chart and metrics into its folder, off the UI thread."""

    def __init__(self, app: Any) -> None:
        self.app = app  # the GptTuiApp: its chart, and the run it shows (progress.run_dir)

    def _run_dir(self) -> Path | None:
        run_dir = self.app.progress.run_dir
        if not run_dir or not Path(run_dir).is_dir():
            self.app.notify("There is no run to export yet: train (F5) or open one from the Runs screen (F4).",
                            severity="warning")
            return None
        return Path(run_dir)

    def _start(self, work: Any) -> None:
        self.app.run_worker(work, thread=True, group="files", exit_on_error=False)

    # ----- on the UI thread -----
    def export_chart(self) -> None:
        run_dir = self._run_dir()
        if run_dir is None:
            return
        chart = self.app.chart
        mode = chart.mode
        series = chart.history.series(mode, EXPORT_POINTS)  # copies: the worker never reads the live history
        if not any(line.xs for line in series):
            self.app.notify("The chart has no points yet; export it once training has logged a step.", severity="warning")
            return
        self._start(lambda: self._draw(run_dir, mode, series))

    def export_metrics(self) -> None:
        run_dir = self._run_dir()
        if run_dir is not None:
            self._start(lambda: self._write_csv(run_dir))

    def written(self, message: ExportWritten) -> None:
        if message.error is not None:
            self.app.notify(message.error, title=f"Cannot export the {message.what}", severity="error", timeout=10)
        else:
            self.app.notify(f"{message.what.capitalize()} written to {visible(display_path(message.path))}", timeout=8)

    # ----- on a worker -----
    def _draw(self, run_dir: Path, mode: str, series: list[Any]) -> None:
        from gpt_tui import figures
        from gpt_tui.engine.runs import CHART_EXPORT_FILE

        try:
            figure = figures.chart_figure(series, mode_title(mode), log_y=mode in LOG_SCALE_MODES)
            path = figures.save(figure, run_dir / CHART_EXPORT_FILE.format(mode=mode), "png")
        except UserError as exc:
            self.app.post_message(ExportWritten("chart", None, str(exc)))
            return
        self.app.post_message(ExportWritten("chart", path, None))

    def _write_csv(self, run_dir: Path) -> None:
        from gpt_tui.engine.metric_sinks import rewrite_csv
        from gpt_tui.engine.runs import METRICS_CSV_FILE, run_is_live

        try:
            if run_is_live(run_dir) and (run_dir / METRICS_CSV_FILE).is_file():
                path = run_dir / METRICS_CSV_FILE  # its trainer keeps it current: rewriting would race its appends
            else:
                path = rewrite_csv(run_dir)
        except (UserError, OSError) as exc:
            why = str(exc) if isinstance(exc, UserError) else f"{exc.strerror or exc}"
            self.app.post_message(ExportWritten("metrics", None, why))
            return
        self.app.post_message(ExportWritten("metrics", path, None))
