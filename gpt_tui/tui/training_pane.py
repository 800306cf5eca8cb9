"""The training pane: the run's state, its numbers, a progress bar, and start/pause/stop buttons.

It renders a TrainingProgress the app keeps up to date; it never talks to the
trainer. With ``stable`` set (snapshot tests), values that depend on the clock
or the machine — elapsed time, ETA, tokens/s, the time-stamped run name — show
as placeholders so a screenshot is the same on every run.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, ProgressBar, Static

from gpt_tui.engine.mfu import format_bytes, format_flops, format_mfu
from gpt_tui.textsafe import visible
from gpt_tui.tui.model_shape import loss_with_perplexity, pane_title, shape_text
from gpt_tui.tui.model_source import display_path
from gpt_tui.tui.progress import TrainingProgress, format_count, format_duration, format_loss

STATE_STYLES = {
    "idle": ("○", "dim"),
    "preparing": ("◌", "bold"),
    "running": ("●", "bold green"),
    "paused": ("❚❚", "bold yellow"),
    "stopping": ("◌", "bold yellow"),
    "finished": ("✔", "bold"),
    "stopped": ("■", "bold"),
    "failed": ("✖", "bold red"),
}
HIDDEN = "··"


def _split_cell(tokens: int, documents: int) -> str:
    """A split's size in its cell: tokens, and documents where the corpus has several."""
    if not tokens:
        return "-"
    return f"{format_count(tokens)}/{format_count(documents)} doc" if documents > 1 else f"{format_count(tokens)} tok"


class TrainingPane(Vertical):
    DEFAULT_CSS = """
    TrainingPane {
        border: round $primary 40%;
        height: auto;
        padding: 0 1;
    }
    TrainingPane > #train-state { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    TrainingPane > #train-stats { height: 6; }
    TrainingPane > #train-progress { height: 1; margin: 0; }
    TrainingPane > #train-progress Bar { width: 1fr; }
    TrainingPane > #train-saved { height: 1; color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis; }
    TrainingPane > #train-buttons { height: 1; margin-top: 0; }
    TrainingPane > #train-buttons Button { margin-right: 1; min-width: 10; }
    """

    def __init__(self, progress: TrainingProgress, *, stable: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.progress = progress
        self.stable = stable
        self.border_title = "Training"
        self.corpus_label = ""
        self.model_label = ""
        self.batch_label = ""  # "4 × 64 tokens"
        self.wide = False

    def compose(self) -> ComposeResult:
        yield Static(id="train-state")
        yield Static(id="train-stats")
        yield ProgressBar(total=100, show_eta=False, id="train-progress")
        yield Static(id="train-saved")
        with Horizontal(id="train-buttons"):
            yield Button("Start", id="train-toggle", variant="primary", compact=True, action="app.train_toggle")
            yield Button("Stop", id="train-stop", variant="error", compact=True, action="app.train_stop", disabled=True)

    def on_mount(self) -> None:
        self.refresh_progress()

    def _volatile(self, text: str) -> str:
        return HIDDEN if self.stable else text

    def _path(self, path: str) -> str:
        shown = display_path(path)
        if self.stable and self.progress.run_name:
            shown = shown.replace(self.progress.run_name, HIDDEN)
        return shown

    def refresh_progress(self) -> None:
        """Redraw from ``self.progress``; cheap, called from the app's event timer."""
        p = self.progress
        symbol, style = STATE_STYLES.get(p.state, ("?", ""))
        state = Text()
        state.append(f"{symbol} {p.state}", style=style)
        title = pane_title(p)  # the device, on the top border
        if self.border_title != title:
            self.border_title = title
        shape = shape_text(p)
        if shape:  # the run's name is on the "saving to" line below
            state.append(f"  {shape}", style="dim")
        if p.run_dir and (self.wide or not shape):
            state.append("  run ", style="dim")
            state.append(self._volatile(p.run_name))
        elif self.model_label and not shape:
            state.append(f"  {self.model_label}", style="dim")
        # Fixed-height lines: no relayout of the screen for a new number.
        self.query_one("#train-state", Static).update(state, layout=False)

        epochs = f"{p.epoch}/{p.epochs_total}" if p.epochs_total else (str(p.epoch) if p.epoch else "-")
        total = f"/{p.total_steps}" if p.total_steps else ""
        rate = f"{format_count(p.tokens_per_sec)} tok/s" if p.tokens_per_sec else "-"
        elapsed = format_duration(p.elapsed) if p.step or p.elapsed else "-"
        eta = format_duration(p.eta) if p.active else "-"
        rows = [
            ["step", f"{p.step}{total}", "epoch", epochs],
            ["tokens", format_count(p.tokens_seen), "lr", f"{p.lr:.2e}" if p.lr else "-"],
            ["loss", loss_with_perplexity(p.loss), "val", loss_with_perplexity(p.val_loss)],  # (perplexity)
            ["speed", self._volatile(rate), "best", format_loss(p.best_val_loss)],
            ["time", self._volatile(elapsed), "ETA", self._volatile(eta)],
            ["MFU", self._volatile(format_mfu(p.mfu)) if p.mfu is not None else "-",
             "memory", self._volatile(format_bytes(p.peak_memory)) if p.peak_memory is not None else "-"],
        ]
        if self.wide:
            details = [
                ["params", format_count(p.num_parameters) if p.num_parameters else "-"],
                ["device", p.device or "-"],
                ["train", _split_cell(p.train_tokens, p.train_documents)],
                ["val", _split_cell(p.val_tokens, p.val_documents)],
                ["batch", self.batch_label or "-"],
                ["peak", self._volatile(format_flops(p.peak_flops)) if p.peak_flops else "-"],
            ]
            rows = [row + extra for row, extra in zip(rows, details)]
        # Plain padded text, not a rich Table: this redraws several times a second while training.
        stats = Text(no_wrap=True, overflow="ellipsis")
        for i, row in enumerate(rows):
            if i:
                stats.append("\n")
            for j in range(0, len(row), 2):
                stats.append(f"{row[j]:<7}", style="dim")
                stats.append(f"{row[j + 1]:<11}")
        self.query_one("#train-stats", Static).update(stats, layout=False)
        # on the pane's lower border: an estimate says so, without a row of its own
        self.border_subtitle = f"val over {p.val_coverage}" if p.val_coverage else ""

        bar = self.query_one("#train-progress", ProgressBar)
        bar.update(total=p.total_steps or 100, progress=p.step if p.total_steps else 0)

        if p.message and p.state == "failed":
            saved = Text(visible(p.message), style="red", no_wrap=True, overflow="ellipsis")  # it may quote a file
        elif p.corpus_progress and p.state == "preparing":
            saved = Text(p.corpus_progress, no_wrap=True, overflow="ellipsis")
        elif p.checkpoint:
            saved = Text(f"saved {visible(Path(p.checkpoint).name)}", no_wrap=True, overflow="ellipsis")
        elif p.run_dir:
            saved = Text(f"saving to {visible(self._path(p.run_dir))}", no_wrap=True, overflow="ellipsis")
        else:
            corpus = f"corpus {visible(self.corpus_label)}" if self.corpus_label else ""
            saved = Text(corpus, no_wrap=True, overflow="ellipsis")
        self.query_one("#train-saved", Static).update(saved, layout=False)

        toggle = self.query_one("#train-toggle", Button)
        label = {"running": "Pause", "paused": "Resume", "preparing": "Pause"}.get(p.state, "Start")
        if str(toggle.label) != label:
            toggle.label = label
        toggle.disabled = p.state == "stopping"
        self.query_one("#train-stop", Button).disabled = not p.active or p.state == "stopping"
