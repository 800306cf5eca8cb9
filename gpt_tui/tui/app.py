"""The gpt-tui app: composes the panes, owns the key bindings, and runs the workers.

Training runs in a thread worker that calls the engine's Trainer; its events
land in an EventBuffer and a UI timer folds them into the panes a few times a
second, so the training thread never waits for the screen. Every other result
from a worker, or from a run followed in another process, arrives as a message
(gpt_tui.tui.messages) and is handled on the UI thread (worker_results,
followed_run). The concepts live in their own modules: training_control
(which run F5 trains), replies (the REPL's worker), weight_actions (save,
load, import, delete), app_settings (F2 and themes), quitting, attach (runs
in other processes) and launch (the command-line entry). Every worker
failure becomes a dialog; the app stays up.

Importing this module is cheap: torch and the engine load inside functions,
after the first frame is on screen.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Iterable

from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Container
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from gpt_tui.engine.events import CheckpointEvent, DoneEvent, SampleEvent
from gpt_tui.errors import UserError
from gpt_tui.textsafe import printable
from gpt_tui.tui import attach, messages
from gpt_tui.tui.app_settings import SettingsHandling
from gpt_tui.tui.chart import LossChart
from gpt_tui.tui.chart_export import ChartExport
from gpt_tui.tui.chart_data import CHART_MODES, MODE_TITLES, LossHistory
from gpt_tui.tui.checkpoints import CheckpointsPanel
from gpt_tui.tui.commands import app_commands, key_help
from gpt_tui.tui.config import Settings, describe_sampling, load_settings
from gpt_tui.tui.corpus_view import sources_label
from gpt_tui.tui.dialogs import ErrorDialog
from gpt_tui.tui.event_buffer import EventBuffer
from gpt_tui.tui.fitted_footer import FittedFooter
from gpt_tui.tui.fold import fold_events
from gpt_tui.tui.followed_run import FollowedRunHandlers
from gpt_tui.tui.help import HelpScreen
from gpt_tui.tui.key_names import binding_ids, usable_keymap
from gpt_tui.tui.history import PromptHistory, history_path
from gpt_tui.tui.layout import NEXT_PANE_KEY, LayoutControl, PaneTabs, TooSmall
from gpt_tui.tui.model_source import ReplModelSource
from gpt_tui.tui.progress import TrainingProgress
from gpt_tui.tui.quitting import QuitHandling
from gpt_tui.tui.repl import ReplPane
from gpt_tui.tui.replies import Replies
from gpt_tui.tui.runs_screen import RunsScreen
from gpt_tui.tui.screenshot import save_screenshot
from gpt_tui.tui.trainer_control import TrainerControl
from gpt_tui.tui.training_control import NEW_RUN_KEY, TrainingControl
from gpt_tui.tui.training_pane import TrainingPane
from gpt_tui.tui.weight_actions import WeightActions
from gpt_tui.tui.worker_results import WorkerResultHandlers, notices_to

EVENT_DRAIN_INTERVAL_S = 0.25


class GptTuiApp(WorkerResultHandlers, FollowedRunHandlers, SettingsHandling, QuitHandling, App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "gpt-tui"
    BINDINGS = [
        Binding("f1", "help", "Help", id="app.help"),
        Binding("f2", "settings", "Settings", id="app.settings"),
        Binding("f3", "checkpoints", "Checkpoints", id="app.checkpoints", show=False),
        Binding("f4", "runs", "Runs", id="app.runs"),
        Binding("f5", "train_toggle", "Train", id="train.toggle"),
        Binding("f6", "train_stop", "Stop", id="train.stop"),
        Binding(NEW_RUN_KEY, "train_new", "New run", id="train.new", show=False),
        Binding("f7", "chart_mode", "Chart", id="chart.mode"),
        Binding("f8", "save_checkpoint", "Save", id="checkpoint.save", show=False),
        Binding("f9", "export_chart", "Export chart", id="chart.export", show=False),
        Binding("f10", "chart_smoothing", "Smoothed line", id="chart.smooth", show=False),
        Binding("escape", "cancel_reply", "Cancel reply", id="reply.cancel", show=False),
        Binding("ctrl+y", "copy_reply", "Copy reply", id="reply.copy", show=False),
        Binding("ctrl+l", "clear_log", "Clear log", id="repl.clear", show=False),
        Binding(NEXT_PANE_KEY, "next_pane", "Pane", id="layout.pane"),
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True),
    ]

    def __init__(
        self,
        *,
        run_dir: str | None = None,
        stable: bool = False,
        warm_up: bool = True,
    ) -> None:
        """``stable`` hides clocks, speeds and time-stamped names (snapshot tests); ``warm_up`` preloads torch after the first frame."""
        super().__init__()
        self.stable = stable
        self.warm_up = warm_up
        self.open_run_dir = run_dir
        self.settings = Settings()
        self.sampling = self.settings.sampling
        self.buffer = EventBuffer()
        self.history = LossHistory()
        self.progress = TrainingProgress()
        self.model_source = ReplModelSource()
        self.prompt_history = PromptHistory(history_path())
        self.trainer: TrainerControl | None = None  # set and cleared on the UI thread only
        self.devices: list[str] = ["auto", "cpu"]
        self.theme_notes: list[str] = []
        self.resume_from: str | None = None  # the run F5 continues
        self.training_control = TrainingControl(self)
        self.replies = Replies(self)
        self.weight_actions = WeightActions(self)
        self.chart_export = ChartExport(self)
        self.arrangement = LayoutControl(self)
        self._training_worker: Worker[Any] | None = None
        self._quitting = False
        self.first_frame_at: float | None = None
        self.train_key = "f5"

    # ----- composition -----
    def compose(self) -> ComposeResult:
        yield PaneTabs(id="pane-tabs")
        yield TooSmall(id="too-small")
        with Container(id="body"):
            yield TrainingPane(self.progress, stable=self.stable, id="training")
            chart_box = Container(id="chart-box")
            chart_box.border_title = f"{MODE_TITLES[CHART_MODES[0]]} · F7 switches"
            with chart_box:
                yield LossChart(self.history, id="chart")
            yield ReplPane(self.prompt_history, id="repl")
        yield FittedFooter()

    @property
    def training_pane(self) -> TrainingPane:
        return self.query_one(TrainingPane)

    @property
    def chart(self) -> LossChart:
        return self.query_one(LossChart)

    @property
    def repl(self) -> ReplPane:
        return self.query_one(ReplPane)

    def on_mount(self) -> None:
        self._notices_off = notices_to(self)
        self.settings, problems = load_settings()
        self.sampling = self.settings.sampling
        self._register_themes()
        if self.settings.keys:  # an entry Textual could never match gets a notice, and is left out
            keys, key_problems = usable_keymap(self.settings.keys, binding_ids())
            self.settings = replace(self.settings, keys=keys)
            problems += key_problems
            self.set_keymap(keys)
        self._apply_training_settings()
        self.train_key = self.get_key_display(Binding(self.settings.keys.get("train.toggle", "f5"), "train_toggle"))
        self.chart.empty_hint = f"press {self.train_key} to start training"
        self.chart.redraw_if_changed(force=True)
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        for problem in problems + self.theme_notes:
            self.notify(problem, severity="warning", timeout=10)  # "[keys]" is no markup
        self.arrangement.apply(self.size)
        if self.stable:
            for box in self.query("Input"):
                box.cursor_blink = False  # type: ignore[attr-defined]
        self.repl.input.focus()
        self.repl.note(self._welcome())
        self.set_interval(EVENT_DRAIN_INTERVAL_S, self.drain_events)
        self.call_after_refresh(self._after_first_frame)
        if self.open_run_dir:
            self.training_control.open_run(self.open_run_dir)

    def _welcome(self) -> Text:
        t = self.settings.training
        corpus = sources_label(t.data) or "the built-in corpus (Python's docs)"
        text = Text()
        text.append("Welcome to gpt-tui. ", style="bold")
        text.append(f"Press {self.train_key} to pre-train the {t.model} model on {corpus} and watch the loss fall. ")
        text.append("Type below to talk to the model — now, while it trains, or after. ")
        text.append("Your own text: pick a file or folder in Settings (F2) → Corpus. F4 lists your runs; F1 shows every key.")
        return text

    def _after_first_frame(self) -> None:
        if self.first_frame_at is None:
            self.first_frame_at = time.perf_counter()
        if self.warm_up:
            self.set_timer(0.2, self._warm_up)
        if not self.open_run_dir:
            self.training_control.offer_last_run()

    def _apply_training_settings(self) -> None:
        t = self.settings.training
        self.model_source.use_fresh(t.model, t.seed, t.device)
        pane = self.training_pane
        pane.model_label = f"model {t.model}"
        pane.corpus_label = sources_label(t.data) or "python-docs (built-in)"
        context = t.context_length if t.context_length else "preset"
        pane.batch_label = f"{t.batch_size}×{context}" + (f" ×{t.grad_accum}" if t.grad_accum > 1 else "")
        pane.refresh_progress()
        self.update_repl_status()

    def on_resize(self, event: events.Resize) -> None:
        self.arrangement.apply(event.size)  # self.size is still the previous size here

    def action_next_pane(self) -> None:
        self.arrangement.next_pane()

    @work(thread=True, group="warm-up", exit_on_error=False)
    def _warm_up(self) -> None:
        """Load torch and the tokenizer in the background, so the first Start and reply begin sooner."""
        from gpt_tui.engine.device import available_devices
        from gpt_tui.engine.tokenizer import get_tokenizer

        self.post_message(messages.DevicesFound(["auto", *available_devices()]))
        get_tokenizer()

    # ----- training -----
    def action_train_toggle(self) -> None:
        self.training_control.toggle()

    def action_train_new(self) -> None:
        self.training_control.new_run()

    def action_train_stop(self) -> None:
        self.training_control.stop()

    def drain_events(self) -> int:
        """Fold buffered trainer events into the panes; returns how many there were."""
        events = self.buffer.drain()
        if not events:
            return 0

        fold_events(self.progress, self.history, events)
        for event in events:
            if isinstance(event, SampleEvent):
                self._show_sample(event)
            elif isinstance(event, CheckpointEvent):
                self.weight_actions.checkpoint_saved(event.path)
            elif isinstance(event, DoneEvent):
                self.training_control.run_done(event)
        self.training_pane.refresh_progress()
        self.update_repl_status()
        return len(events)

    def _show_sample(self, event: Any) -> None:
        text = Text()
        text.append(f"sample after epoch {event.epoch} (step {event.step}): ", style="bold")
        text.append(printable(event.text))
        self.repl.note(text, "sample")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group == "training":
            self.training_control.worker_changed(worker)
        elif worker.state == WorkerState.ERROR and worker.group in ("reply", "files"):
            self.show_error(worker.error, "Could not finish that")
        elif worker.state == WorkerState.ERROR and worker.group == "warm-up":
            self.notify(f"Background start-up failed: {worker.error}", severity="warning")

    def notify(self, message: str, *, markup: bool = False, **options: Any) -> None:  # type: ignore[override]
        """Every notice is plain text: notices quote errors, paths and run names, whose brackets are no markup."""
        super().notify(message, markup=markup, **options)

    def show_error(self, error: BaseException | None, title: str) -> None:
        if isinstance(error, UserError):
            message = str(error)
        else:
            message = f"{type(error).__name__}: {error}\n\nThis is a bug in gpt-tui; the app keeps running."
        self.push_screen(ErrorDialog(printable(message), title))  # it can quote a file name or a file

    # ----- REPL -----
    def update_repl_status(self) -> None:
        described = self.model_source.describe(self.progress.step)  # the live step, not the last snapshot's
        self.repl.set_status(f"{described} · {describe_sampling(self.sampling)}")

    @property
    def _reply_worker(self) -> Worker[Any] | None:
        return self.replies.worker

    def on_repl_pane_submitted(self, message: ReplPane.Submitted) -> None:
        self.replies.submit(message.text)

    def on_repl_pane_ended(self, _message: ReplPane.Ended) -> None:
        self.update_repl_status()  # a training snapshot's step may have changed
        self.replies.reply_ended()  # a prompt typed while it streamed goes next

    def action_cancel_reply(self) -> None:
        self.replies.cancel()

    def action_copy_reply(self) -> None:
        self.replies.copy_last()

    def action_clear_log(self) -> None:
        self.repl.clear()

    # ----- chart, help, settings -----
    def action_export_chart(self) -> None:
        self.chart_export.export_chart()

    def action_export_metrics(self) -> None:
        self.chart_export.export_metrics()

    def action_chart_mode(self) -> None:
        mode = self.chart.cycle_mode()
        self.query_one("#chart-box").border_title = f"{MODE_TITLES[mode]} · F7 switches"

    def action_chart_smoothing(self) -> None:
        self.chart.smoothed = not self.chart.smoothed

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.key_help()))

    def key_help(self) -> list[tuple[str, str]]:
        return key_help(self)

    def action_runs(self) -> None:
        self.push_screen(RunsScreen(attach))

    # ----- checkpoints -----
    def action_save_checkpoint(self) -> None:
        self.weight_actions.save_now()

    def on_checkpoints_panel_requested(self, message: CheckpointsPanel.Requested) -> None:
        message.stop()
        self.weight_actions.requested(message)

    # ----- palette and quitting -----
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield from app_commands(self)

    def deliver_screenshot(self, filename: str | None = None, path: str | None = None, time_format: str | None = None) -> str | None:
        """Palette → Screenshot: into the run's folder or the data directory, the path or the reason said."""
        saved = save_screenshot(self, filename, path)
        return str(saved) if saved else None

    def action_train_background(self) -> None:
        attach.start_background(self)
