"""`gpt-tui plot` and the app's chart export: real images of the expected size, one line when matplotlib is missing."""

from __future__ import annotations

import json
import math
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from gpt_tui import figures, paths
from gpt_tui.cli import main
from gpt_tui.engine import events as ev
from gpt_tui.engine.metric_series import curves_from_events, read_curves
from gpt_tui.engine.runs import METRICS_FILE

REPO = Path(__file__).resolve().parents[1]


def _events(steps_per_epoch: int, epochs: int, tokens_per_step: int, scale: float) -> list[ev.TrainEvent]:
    """A run's log: a start record, a step each, an evaluation every 2 steps and at each epoch's end."""
    total = steps_per_epoch * epochs
    out: list[ev.TrainEvent] = [
        ev.StartEvent(run_dir="x", device="cpu", num_parameters=1, train_tokens=1, val_tokens=1,
                      train_batches=steps_per_epoch, val_batches=1, total_steps=total, start_step=0),
        ev.EvalEvent(step=0, epoch=1, tokens_seen=0, train_loss=10.0 * scale, val_loss=10.1 * scale),
    ]
    for step in range(1, total + 1):
        epoch = (step - 1) // steps_per_epoch + 1
        loss = scale * (10.0 - step * 0.5)
        out.append(ev.StepEvent(step=step, epoch=epoch, tokens_seen=step * tokens_per_step, loss=loss,
                                lr=4e-4 * (1 - step / (total + 1)), grad_norm=1.0, tokens_per_sec=1e3,
                                elapsed=float(step), total_steps=total))
        if step % 2 == 0 or step % steps_per_epoch == 0:
            out.append(ev.EvalEvent(step=step, epoch=epoch, tokens_seen=step * tokens_per_step,
                                    train_loss=loss, val_loss=loss + 0.3))
    out.append(ev.DoneEvent(step=total, tokens_seen=total * tokens_per_step, reason="finished", checkpoint=None,
                            elapsed=float(total)))
    return out


def _write_run(name: str, events: list[ev.TrainEvent]) -> Path:
    run_dir = paths.runs_dir() / name
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"model": "tiny", "grad_accum": 1}), encoding="utf-8")
    (run_dir / METRICS_FILE).write_text("".join(json.dumps(ev.event_to_record(e)) + "\n" for e in events),
                                        encoding="utf-8")
    return run_dir


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _expected_pixels(size: tuple[float, float]) -> tuple[int, int]:
    return round(size[0] * figures.DPI), round(size[1] * figures.DPI)


def _check_pdf(data: bytes) -> None:
    assert data.startswith(b"%PDF-")
    assert len(re.findall(rb"/Type\s*/Page(?![a-z])", data)) == 1  # one page
    assert data.rstrip().endswith(b"%%EOF")


def test_epochs_come_from_steps_per_epoch():
    curves = curves_from_events("r", _events(steps_per_epoch=3, epochs=2, tokens_per_step=64, scale=1.0))
    assert curves.steps_per_epoch == 3
    # the evaluations at the ends of epochs 1 and 2 sit at 1.0 and 2.0, as in the book's figure
    assert dict(zip(curves.eval_steps, curves.eval_epochs)) == {0: 0.0, 2: 2 / 3, 3: 1.0, 4: 4 / 3, 6: 2.0}
    assert curves.tokens_per_epoch == 3 * 64


@pytest.mark.parametrize("runs", [1, 2])
def test_plot_writes_png_and_pdf(runs, capsys):
    names = [_write_run("first", _events(3, 2, 64, 1.0)).name]
    if runs == 2:
        names.append(str(_write_run("second", _events(4, 2, 32, 0.8))))  # by path; the first by name
    out_dir = paths.data_dir() / "out"
    out_dir.mkdir()
    assert main(["plot", *names, "--out", str(out_dir / "curves.png")]) == 0
    assert main(["plot", *names, "--out", str(out_dir / "curves.pdf")]) == 0
    said = capsys.readouterr().out.splitlines()
    assert said == [f"wrote {out_dir / 'curves.png'}", f"wrote {out_dir / 'curves.pdf'}"]
    assert png_size((out_dir / "curves.png").read_bytes()) == _expected_pixels(figures.RUNS_FIGURE_SIZE)
    _check_pdf((out_dir / "curves.pdf").read_bytes())
    assert sorted(p.name for p in out_dir.iterdir()) == ["curves.pdf", "curves.png"]  # no temporary files left


def test_runs_are_overlaid_with_a_legend():
    first = curves_from_events("first", _events(3, 2, 64, 1.0))
    second = curves_from_events("second", _events(4, 2, 32, 0.8))
    figure = figures.runs_figure([first, second])
    loss_ax, ppl_ax, lr_ax = figure.axes[:3]
    labels = [text.get_text() for text in loss_ax.get_legend().get_texts()]
    assert labels == ["first training loss", "first validation loss", "second training loss", "second validation loss"]
    lines = loss_ax.get_lines()
    assert list(lines[1].get_xdata()) == first.eval_epochs and list(lines[1].get_ydata()) == first.val_losses
    assert list(ppl_ax.get_lines()[3].get_ydata()) == [math.exp(v) for v in second.val_losses]
    assert ppl_ax.get_yscale() == "log"
    assert list(lr_ax.get_lines()[0].get_ydata()) == first.lrs
    assert [text.get_text() for text in lr_ax.get_legend().get_texts()] == ["first", "second"]


def test_plot_refuses_bad_input_in_one_line(capsys):
    _write_run("first", _events(3, 1, 64, 1.0))
    empty = paths.runs_dir() / "empty"
    empty.mkdir()
    out = paths.data_dir() / "curves"
    for argv, says in [
        (["plot", "first", "--out", str(out) + ".jpg"], "end the name with .png, .pdf or .svg"),
        (["plot", "first", "--out", str(out / "a.png")], "does not exist"),
        (["plot", "nosuchrun", "--out", str(out) + ".png"], "No run called 'nosuchrun'"),
        (["plot", "empty", "--out", str(out) + ".png"], "nothing to plot"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("gpt-tui: error: ") and says in err[0], err
    assert not list(paths.data_dir().glob("curves*"))


def test_plot_without_matplotlib_names_the_extra():
    run_dir = _write_run("first", _events(3, 1, 64, 1.0))
    out = run_dir.parent / "curves.png"
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from gpt_tui.cli import main\n"
        f"sys.exit(main(['plot', {str(run_dir)!r}, '--out', {str(out)!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and 'pip install "gpt-tui[plot]"' in lines[0], result.stderr
    assert not out.exists()


def test_read_curves_of_a_written_run():
    run_dir = _write_run("first", _events(3, 2, 64, 1.0))
    curves = read_curves(run_dir)
    assert curves.name == "first" and curves.steps == list(range(1, 7)) and curves.eval_steps == [0, 2, 3, 4, 6]


@pytest.mark.anyio
async def test_app_exports_its_chart_as_png_and_its_metrics_as_csv(fast_tui_settings, monkeypatch):
    from pilot import new_app, press_while_busy, screen_text, wait_until

    from gpt_tui.engine.metric_sinks import csv_from_metrics
    from gpt_tui.engine.runs import CHART_EXPORT_FILE, METRICS_CSV_FILE, write_status

    run_dir = _write_run("shown", _events(3, 2, 64, 1.0))
    write_status(run_dir, "finished", step=6, total_steps=6)
    app = new_app(run_dir=str(run_dir))
    notes: list[str] = []
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        shown = app.notify

        def noted(message: str, **options: object) -> None:
            notes.append(str(message))
            shown(message, **options)  # type: ignore[arg-type]

        app.notify = noted  # type: ignore[method-assign]
        await wait_until(pilot, lambda: app.history.points > 0, what="the run's curves")
        await press_while_busy(pilot, "f9")
        await wait_until(pilot, lambda: any("written to" in n for n in notes), what="the export")
        png = run_dir / CHART_EXPORT_FILE.format(mode="loss")
        assert notes[-1] == f"Chart written to {png.relative_to(paths.data_dir())}"
        assert png_size(png.read_bytes()) == _expected_pixels(figures.CHART_FIGURE_SIZE)

        await press_while_busy(pilot, "f7")  # perplexity
        await wait_until(pilot, lambda: app.chart.mode == "perplexity")
        notes.clear()
        monkeypatch.setitem(sys.modules, "matplotlib", None)  # the extra not installed
        await press_while_busy(pilot, "f9")
        await wait_until(pilot, lambda: bool(notes), what="the refusal")
        assert len(notes) == 1 and 'pip install "gpt-tui[plot]"' in notes[0]
        await wait_until(pilot, lambda: '"gpt-tui[plot]"' in screen_text(app), what="the extra's name drawn as it is")
        assert not (run_dir / CHART_EXPORT_FILE.format(mode="perplexity")).exists()

        notes.clear()
        app.action_export_metrics()  # the palette's "Metrics: export CSV"
        await wait_until(pilot, lambda: bool(notes), what="the CSV export")
        assert notes == [f"Metrics written to {(run_dir / METRICS_CSV_FILE).relative_to(paths.data_dir())}"]
        assert (run_dir / METRICS_CSV_FILE).read_text(encoding="utf-8") == csv_from_metrics(run_dir)


def test_chart_figure_draws_the_chart_series():
    from gpt_tui.tui.chart_data import LossHistory

    history = LossHistory()
    for event in _events(3, 2, 64, 1.0):
        history.add(event)
    series = history.series("perplexity", 1000)
    figure = figures.chart_figure(series, "Perplexity", log_y=True)
    lines = figure.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["train", "val"]
    assert [list(line.get_ydata()) for line in lines] == [s.ys for s in series]
    assert figure.axes[0].get_yscale() == "log"
