"""The gpt-tui app: composes the panes, owns the key bindings, and runs the workers.

Training runs in a thread worker that calls the engine's Trainer; its events
land in an EventBuffer and a UI timer folds them into the panes a few times a
second, so the training thread never waits for the screen. Generation runs in
another thread worker and posts each text piece to the REPL. Every worker
failure becomes a dialog; the app stays up.

Importing this module is cheap: torch and the engine load inside functions,
after the first frame is on screen.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Container
from textual.screen import Screen
from textual.widgets import Footer
from textual.worker import Worker, WorkerState, get_current_worker

from gpt_tui.errors import UserError
from gpt_tui.paths import expand_user
from gpt_tui.tui.chart import LossChart
from gpt_tui.tui.chart_data import LossHistory
from gpt_tui.tui.checkpoints import CheckpointsPanel
from gpt_tui.tui.config import (
    DEFAULT_THEME,
    Settings,
    describe_sampling,
    load_settings,
    sampling_config_kwargs,
    save_settings,
    settings_path,
    train_config_kwargs,
)
from gpt_tui.tui.dialogs import ConfirmDialog, ErrorDialog
from gpt_tui.tui.event_buffer import EventBuffer
from gpt_tui.tui.help import HelpScreen
from gpt_tui.tui.history import PromptHistory, history_path
from gpt_tui.tui.model_source import LoadedModel, ReplModelSource, display_path, load_model_file, reply_threads
from gpt_tui.tui.progress import TrainingProgress, format_count
from gpt_tui.tui.repl import ReplPane
from gpt_tui.tui.settings import SettingsScreen
from gpt_tui.tui.slash import HELP_LINES, is_slash, run_slash
from gpt_tui.tui.themes import load_themes
from gpt_tui.tui.training_pane import TrainingPane

EVENT_DRAIN_INTERVAL_S = 0.25
WIDE_MIN_COLUMNS = 120
WIDE_MIN_ROWS = 36


class GptTuiApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "gpt-tui"
    BINDINGS = [
        Binding("f1", "help", "Help", id="app.help"),
        Binding("f2", "settings", "Settings", id="app.settings"),
        Binding("f3", "checkpoints", "Checkpoints", id="app.checkpoints", show=False),
        Binding("f5", "train_toggle", "Train", id="train.toggle"),
        Binding("f6", "train_stop", "Stop", id="train.stop"),
        Binding("f7", "chart_mode", "Chart", id="chart.mode"),
        Binding("f8", "save_checkpoint", "Save", id="checkpoint.save", show=False),
        Binding("escape", "cancel_reply", "Cancel reply", id="reply.cancel", show=False),
        Binding("ctrl+y", "copy_reply", "Copy reply", id="reply.copy", show=False),
        Binding("ctrl+l", "clear_log", "Clear log", id="repl.clear", show=False),
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
        self.trainer: Any = None
        self.devices: list[str] = ["auto", "cpu"]
        self.theme_notes: list[str] = []
        self.resume_from: str | None = None
        self._training_worker: Worker[Any] | None = None
        self._reply_worker: Worker[Any] | None = None
        self._reply_serial = 0
        self._quitting = False
        self.first_frame_at: float | None = None
        self.train_key = "f5"

    # ----- composition -----
    def compose(self) -> ComposeResult:
        with Container(id="body"):
            yield TrainingPane(self.progress, stable=self.stable, id="training")
            chart_box = Container(id="chart-box")
            chart_box.border_title = "Loss · F7 switches"
            with chart_box:
                yield LossChart(self.history, id="chart")
            yield ReplPane(self.prompt_history, id="repl")
        yield Footer()

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
        self.settings, problems = load_settings()
        self.sampling = self.settings.sampling
        self._register_themes()
        if self.settings.keys:
            try:
                self.set_keymap(self.settings.keys)
            except Exception as exc:  # a key string Textual cannot parse
                problems.append(f"[keys] in settings.toml: {exc}")
        self._apply_training_settings()
        self.train_key = self.get_key_display(Binding(self.settings.keys.get("train.toggle", "f5"), "train_toggle"))
        self.chart.empty_hint = f"press {self.train_key} to start training"
        self.chart.redraw_if_changed(force=True)
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        for problem in problems + self.theme_notes:
            self.notify(problem, severity="warning", timeout=10)
        self._update_layout_class()
        if self.stable:
            for box in self.query("Input"):
                box.cursor_blink = False  # type: ignore[attr-defined]
        self.repl.input.focus()
        self.repl.note(self._welcome())
        self.set_interval(EVENT_DRAIN_INTERVAL_S, self.drain_events)
        self.call_after_refresh(self._after_first_frame)
        if self.open_run_dir:
            self._open_run(self.open_run_dir)

    def _welcome(self) -> Text:
        t = self.settings.training
        corpus = Path(t.data).name if t.data else "the built-in corpus (Python's docs)"
        text = Text()
        text.append("Welcome to gpt-tui. ", style="bold")
        text.append(f"Press {self.train_key} to pre-train the {t.model} model on {corpus} and watch the loss fall. ")
        text.append("Type below to talk to the model — now, while it trains, or after. F1 shows every key.")
        return text

    def _after_first_frame(self) -> None:
        if self.first_frame_at is None:
            self.first_frame_at = time.perf_counter()
        if self.warm_up:
            self.set_timer(0.2, self._warm_up)

    def _register_themes(self) -> None:
        catalog = load_themes()
        for theme in catalog.themes.values():
            self.register_theme(theme)
        self.theme_notes = catalog.problems
        wanted = self.settings.theme
        if wanted not in self.available_themes:
            if wanted != DEFAULT_THEME:
                self.theme_notes.append(f"Theme {wanted!r} is not installed; using {DEFAULT_THEME}.")
            wanted = DEFAULT_THEME if DEFAULT_THEME in self.available_themes else "textual-dark"
        self.theme = wanted

    def _remember_theme(self, theme: Any) -> None:
        if theme.name != self.settings.theme:
            self.settings = self.settings.with_value("app", "theme", theme.name)
            self._save_settings()

    def _save_settings(self) -> None:
        try:
            save_settings(self.settings, settings_path())
        except UserError as exc:
            self.notify(str(exc), severity="error", timeout=10)

    def _apply_training_settings(self) -> None:
        t = self.settings.training
        self.model_source.use_fresh(t.model, t.seed, t.device)
        pane = self.training_pane
        pane.model_label = f"model {t.model}"
        pane.corpus_label = Path(t.data).name if t.data else "python-docs (built-in)"
        context = t.context_length if t.context_length else "preset"
        pane.batch_label = f"{t.batch_size}×{context}" + (f" ×{t.grad_accum}" if t.grad_accum > 1 else "")
        pane.refresh_progress()
        self.update_repl_status()

    def on_resize(self) -> None:
        self._update_layout_class()

    def _update_layout_class(self) -> None:
        width, height = self.size
        wide = width >= WIDE_MIN_COLUMNS and height >= WIDE_MIN_ROWS
        self.set_class(wide, "-wide")
        pane = self.training_pane
        if pane.wide != wide:
            pane.wide = wide
            pane.refresh_progress()

    @work(thread=True, group="warm-up", exit_on_error=False)
    def _warm_up(self) -> None:
        """Load torch and the tokenizer in the background, so the first Start and reply begin sooner."""
        from gpt_tui.engine.device import available_devices
        from gpt_tui.engine.tokenizer import get_tokenizer

        self.devices = ["auto", *available_devices()]
        get_tokenizer()

    # ----- training -----
    def action_train_toggle(self) -> None:
        state = self.progress.state
        if state in ("running", "preparing"):
            if self.trainer is None:
                self.notify("Training is still starting; pause once the first step runs.")
                return
            self.trainer.pause()
            self.progress.state = "paused"
            self.notify("Training paused; F5 resumes.", timeout=3)
        elif state == "paused":
            if self.trainer is not None:
                self.trainer.unpause()
            self.progress.state = "running"
        elif state == "stopping":
            self.notify("Training is stopping; wait for it to save.")
            return
        else:
            self.start_training()
        self.training_pane.refresh_progress()

    def start_training(self) -> None:
        t = self.settings.training
        kwargs = train_config_kwargs(t)
        resume = self.resume_from
        self.resume_from = None
        self.buffer.drain()
        self.history.clear()
        self.progress.reset_for_start()
        self.progress.grad_accum = t.grad_accum
        self.trainer = None
        self.training_pane.refresh_progress()
        self.chart.redraw_if_changed(force=True)
        self._training_worker = self._run_training(kwargs, resume)

    @work(thread=True, exclusive=True, group="training", exit_on_error=False, name="training")
    def _run_training(self, kwargs: dict[str, Any], resume: str | None) -> Any:
        from gpt_tui.engine.trainer import TrainConfig, Trainer, resume_config

        if resume:
            config = resume_config(resume)
            trainer = Trainer(config, self.buffer.push, resume=resume)
        else:
            trainer = Trainer(TrainConfig(**kwargs), self.buffer.push)
        self.trainer = trainer
        if not self._call_ui(self._trainer_ready, trainer) or get_current_worker().is_cancelled:
            trainer.request_stop()
        return trainer.run()

    def _call_ui(self, callback: Any, *args: Any) -> bool:
        """Run ``callback`` on the UI thread from a worker; False when the app has already closed."""
        try:
            self.call_from_thread(callback, *args)
        except RuntimeError:  # the app is shutting down
            return False
        return True

    def _trainer_ready(self, trainer: Any) -> None:
        self.model_source.use_trainer(trainer)
        self.progress.run_dir = str(trainer.run_dir)
        self.training_pane.refresh_progress()
        self.update_repl_status()

    def action_train_stop(self) -> None:
        if not self.progress.active:
            self.notify("No training is running; F5 starts one.")
            return
        if self.trainer is None:
            if self._training_worker is not None:
                self._training_worker.cancel()
        else:
            self.trainer.request_stop()
        self.progress.state = "stopping"
        self.training_pane.refresh_progress()

    def drain_events(self) -> int:
        """Fold buffered trainer events into the panes; returns how many there were."""
        events = self.buffer.drain()
        if not events:
            return 0
        from gpt_tui.engine.events import CheckpointEvent, DoneEvent, SampleEvent

        for event in events:
            self.progress.apply(event)
            self.history.add(event)
            if isinstance(event, SampleEvent):
                self._show_sample(event)
            elif isinstance(event, CheckpointEvent):
                self._checkpoint_saved(event.path)
            elif isinstance(event, DoneEvent):
                verb = "finished" if event.reason == "finished" else "stopped"
                self.notify(f"Training {verb} at step {event.step}; checkpoint saved.", timeout=5)
                if event.checkpoint:
                    self._checkpoint_saved(event.checkpoint, quiet=True)
        self.training_pane.refresh_progress()
        self.update_repl_status()
        return len(events)

    def _show_sample(self, event: Any) -> None:
        text = Text()
        text.append(f"sample after epoch {event.epoch} (step {event.step}): ", style="bold")
        text.append(event.text)
        self.repl.note(text, "sample")

    def _checkpoint_saved(self, path: str, quiet: bool = False) -> None:
        for panel in self._checkpoint_panels():
            panel.reload(select=path)
            panel.say(f"Saved {display_path(path)}.")
        if not quiet:
            self.notify(f"Checkpoint saved: {Path(path).name}", timeout=4)

    def _checkpoint_panels(self) -> list[CheckpointsPanel]:
        panels: list[CheckpointsPanel] = []
        for screen in self.screen_stack:
            panels.extend(screen.query(CheckpointsPanel))
        return panels

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group == "training" and worker.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            self.drain_events()
            if worker.state == WorkerState.ERROR:
                error = worker.error
                if self.progress.state != "failed":
                    self.progress.state = "failed"
                    self.progress.message = str(error)
                self.training_pane.refresh_progress()
                self._show_error(error, "Training stopped")
            elif worker.state == WorkerState.CANCELLED and self.progress.active:
                self.progress.state = "stopped"
                self.training_pane.refresh_progress()
        elif worker.state == WorkerState.ERROR and worker.group in ("reply", "files"):
            self._show_error(worker.error, "Could not finish that")
        elif worker.state == WorkerState.ERROR and worker.group == "warm-up":
            self.notify(f"Background start-up failed: {worker.error}", severity="warning")

    def _show_error(self, error: BaseException | None, title: str) -> None:
        if isinstance(error, UserError):
            message = str(error)
        else:
            message = f"{type(error).__name__}: {error}\n\nThis is a bug in gpt-tui; the app keeps running."
        self.push_screen(ErrorDialog(message, title))

    # ----- REPL -----
    def update_repl_status(self) -> None:
        self.repl.set_status(f"{self.model_source.describe()} · {describe_sampling(self.sampling)}")

    def on_repl_pane_submitted(self, message: ReplPane.Submitted) -> None:
        text = message.text
        if is_slash(text):
            self._run_slash(text)
            return
        if self.repl.streaming:
            self.repl.note("A reply is still streaming; press Esc to cancel it first.", "error")
            return
        self._reply_serial += 1
        self.repl.begin_reply(text, self._reply_serial)
        self._reply_worker = self._generate_reply(self._reply_serial, text, sampling_config_kwargs(self.sampling))

    def _run_slash(self, text: str) -> None:
        try:
            result = run_slash(text, self.sampling)
        except UserError as exc:
            self.repl.note(str(exc), "error")
            return
        if result.action == "clear":
            self.repl.clear()
        elif result.action == "help":
            self.repl.note("\n".join(f"{cmd:<14} {what}" for cmd, what in HELP_LINES))
        else:
            self.sampling = result.sampling
            self.repl.note(result.message)
        self.update_repl_status()

    @work(thread=True, group="reply", exit_on_error=False, name="reply")
    def _generate_reply(self, serial: int, prompt: str, sampling: dict[str, Any]) -> None:
        from gpt_tui.engine.generation import GenerationStats, SamplingConfig, stream_text

        worker = get_current_worker()
        repl = self.repl
        status, footer_style = "cancelled", "dim"
        stats = GenerationStats()
        label = ""
        try:
            model, label = self.model_source.acquire()
            if worker.is_cancelled:
                return
            self._limit_reply_threads(model)
            pieces = stream_text(model, prompt, SamplingConfig(**sampling), stats)
            try:
                for piece in pieces:
                    if worker.is_cancelled:
                        break
                    repl.post_message(ReplPane.Piece(serial, piece))
                else:
                    status = "done"
            finally:
                pieces.close()
        except UserError as exc:
            status, footer_style = str(exc), "red"
        except BaseException:
            status, footer_style = "failed", "red"
            raise
        finally:
            repl.post_message(ReplPane.Ended(serial, self._reply_footer(status, stats, label), footer_style))

    def _limit_reply_threads(self, model: Any) -> None:
        """Decode on one intra-op thread when that is faster or kinder (see model_source.reply_threads).

        torch's thread count is per thread once set, but new threads copy the
        last value set anywhere; the UI thread sets it back at once, so a
        training thread started later still gets every core.
        """
        import torch

        threads = reply_threads(model, training_active=self.progress.active)
        if threads is not None and threads != torch.get_num_threads():
            previous = torch.get_num_threads()
            torch.set_num_threads(threads)

            def restore_default() -> None:
                torch.set_num_threads(previous)

            self._call_ui(restore_default)

    def _reply_footer(self, status: str, stats: Any, label: str) -> str:
        parts = [f"{stats.new_tokens} tokens"]
        if stats.new_tokens and not self.stable:
            parts.append(f"{stats.tokens_per_s:.0f} tok/s")
        if label:
            parts.append(label)
        if status != "done":
            parts.append(status)
        return " · ".join(parts)

    def on_repl_pane_ended(self, _message: ReplPane.Ended) -> None:
        self.update_repl_status()  # a training snapshot's step may have changed

    def action_cancel_reply(self) -> None:
        if self._reply_worker is not None and self._reply_worker.is_running:
            self._reply_worker.cancel()
            self.repl.cancel_current()

    def action_copy_reply(self) -> None:
        reply = self.repl.last_reply
        if reply is None:
            self.notify("No reply to copy yet.")
            return
        self.copy_to_clipboard(reply.prompt + reply.text)
        self.notify(f"Copied the last reply ({len(reply.prompt + reply.text)} characters).", timeout=3)

    def action_clear_log(self) -> None:
        self.repl.clear()

    # ----- chart, help, settings -----
    def action_chart_mode(self) -> None:
        mode = self.chart.cycle_mode()
        titles = {"loss": "Loss", "perplexity": "Perplexity", "lr": "Learning rate"}
        self.query_one("#chart-box").border_title = f"{titles[mode]} · F7 switches"

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.key_help()))

    def key_help(self) -> list[tuple[str, str]]:
        """The app's own bindings as currently mapped (the keymap in settings.toml can change them)."""
        rows: list[tuple[str, str]] = []
        seen: set[str] = set()
        for active in self.screen.active_bindings.values():
            binding = active.binding
            if active.node is not self or binding.action in seen or not binding.description:
                continue
            if binding.action == "command_palette":
                continue  # listed below with a clearer name
            seen.add(binding.action)
            rows.append((self.get_key_display(binding), f"{binding.description}  [{binding.id}]" if binding.id else binding.description))
        rows.append((self.get_key_display(Binding(self.COMMAND_PALETTE_BINDING, "")), "Command palette: every action, and Theme to switch themes"))
        return rows

    def action_settings(self, initial: str = "training") -> None:
        screen = SettingsScreen(
            self.settings,
            devices=self.devices,
            themes=sorted(self.available_themes),
            theme_notes=self.theme_notes,
            training_active=self.progress.active,
            initial=initial,
            stable=self.stable,
        )
        self.push_screen(screen, self._settings_closed)

    def action_checkpoints(self) -> None:
        self.action_settings("checkpoints")

    def _settings_closed(self, settings: Settings | None) -> None:
        if settings is None:
            return
        sampling_changed = settings.sampling != self.settings.sampling
        self.settings = settings
        if sampling_changed:
            self.sampling = settings.sampling
        self._save_settings()
        self._apply_training_settings()
        self.notify("Settings saved.", timeout=3)

    # ----- checkpoints -----
    def action_save_checkpoint(self) -> None:
        self._save_checkpoint_now()

    def on_checkpoints_panel_requested(self, message: CheckpointsPanel.Requested) -> None:
        message.stop()
        if message.action == "save":
            self._save_checkpoint_now()
        elif message.action == "load" and message.target:
            self._say(f"Loading {display_path(message.target)}…")
            self._load_weights(message.target)
        elif message.action == "delete" and message.target:
            target = message.target

            def confirmed(answer: bool | None) -> None:
                if answer:
                    self._delete_checkpoint(target)

            self.push_screen(ConfirmDialog(f"Delete {display_path(target)}? This cannot be undone.", yes="Delete", title="Delete checkpoint"), confirmed)
        elif message.action == "import" and message.target:
            self._say(f"Importing {message.target}…")
            self._import_weights(message.target)

    def _say(self, text: str, error: bool = False) -> None:
        for panel in self._checkpoint_panels():
            panel.say(text, error)

    def _save_checkpoint_now(self) -> None:
        trainer = self.trainer
        if trainer is not None and self.progress.state in ("running", "preparing"):
            trainer.request_checkpoint()
            self._say("A checkpoint will be saved after the current step.")
            self.notify("Saving a checkpoint after this step…", timeout=3)
        elif trainer is not None and self.progress.state == "paused":
            self._save_paused(trainer)
        elif self.progress.checkpoint and self.model_source.kind == "training":
            self._say(f"This run is already saved: {display_path(self.progress.checkpoint)}.")
            self.notify("Already saved at the end of the run.", timeout=3)
        else:
            self._save_repl_model()

    @work(thread=True, group="files", exit_on_error=False)
    def _save_paused(self, trainer: Any) -> None:
        trainer.save()  # the training thread is parked between steps, so this is consistent

    @work(thread=True, group="files", exit_on_error=False)
    def _save_repl_model(self) -> None:
        from gpt_tui import paths
        from gpt_tui.engine.checkpoint import save_checkpoint

        model, label = self.model_source.acquire()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name = f"saved-{model.config.n_layers}l{model.config.emb_dim}d-{stamp}.safetensors"
        path = save_checkpoint(paths.models_dir() / name, model, meta={"saved_from": label})
        self._call_ui(self._checkpoint_saved, str(path))

    @work(thread=True, group="files", exit_on_error=False)
    def _load_weights(self, source: str) -> None:
        loaded = load_model_file(source, self.settings.training.device)
        self._call_ui(self._weights_loaded, loaded)

    def _weights_loaded(self, loaded: LoadedModel) -> None:
        self.model_source.use_loaded(loaded)
        self.update_repl_status()
        params = format_count(sum(p.numel() for p in loaded.model.parameters()))
        self.repl.note(f"Now talking to {loaded.label} ({params} parameters).")
        self._say(f"Loaded {loaded.label}; the REPL uses it now.")
        self.notify(f"Loaded {Path(loaded.path).name}", timeout=3)

    @work(thread=True, group="files", exit_on_error=False)
    def _import_weights(self, source: str) -> None:
        from gpt_tui.engine.weights import import_weights

        path = import_weights(source)
        self._call_ui(self._checkpoint_saved, str(path))
        loaded = load_model_file(str(path), self.settings.training.device)
        self._call_ui(self._weights_loaded, loaded)

    def _delete_checkpoint(self, target: str) -> None:
        from gpt_tui.tui.checkpoint_files import delete_checkpoint

        try:
            delete_checkpoint(Path(target))
        except UserError as exc:
            self._say(str(exc), error=True)
            return
        for panel in self._checkpoint_panels():
            panel.reload()
            panel.say(f"Deleted {display_path(target)}.")

    # ----- an existing run -----
    def _open_run(self, run_dir: str) -> None:
        """Show a run's curves and talk to its newest checkpoint; Start continues it if it can."""
        from gpt_tui.engine.runs import read_metrics, read_status

        folder = expand_user(run_dir)
        if not folder.is_dir():
            self._show_error(UserError(f"Run directory {run_dir} does not exist; `gpt-tui runs` lists the runs."), "Cannot open run")
            return
        events, _ = read_metrics(folder)
        for event in events:
            self.progress.apply(event)
            self.history.add(event)
        state = read_status(folder).get("state", "stopped")
        self.progress.run_dir = str(folder)
        self.progress.state = state if state in ("finished", "failed") else "stopped"
        if self.progress.state != "finished":
            self.resume_from = str(folder)
        self.training_pane.refresh_progress()
        checkpoints = folder / "checkpoints"
        if checkpoints.is_dir() and any(checkpoints.glob("*.safetensors")):
            self._load_weights(str(folder))

    # ----- palette and quitting -----
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Train: start / pause / resume", "Start training, or pause and resume it (F5)", self.action_train_toggle)
        yield SystemCommand("Train: stop", "Stop training and save a checkpoint (F6)", self.action_train_stop)
        yield SystemCommand("Train: in the background", "A process that keeps training after you quit; shown here live", self.action_train_background)
        yield SystemCommand("Chart: switch", "Loss, perplexity, learning rate (F7)", self.action_chart_mode)
        yield SystemCommand("Checkpoint: save now", "Save the current weights (F8)", self.action_save_checkpoint)
        yield SystemCommand("Checkpoints", "List, load, delete, import GPT-2 weights (F3)", self.action_checkpoints)
        yield SystemCommand("Settings", "Device, model, hyperparameters, sampling (F2)", self.action_settings)
        yield SystemCommand("Copy last reply", "To the clipboard through the terminal (Ctrl+Y)", self.action_copy_reply)
        yield SystemCommand("Clear conversation", "Empty the REPL log (Ctrl+L)", self.action_clear_log)
        yield SystemCommand("Help", "Keys, commands and how to start (F1)", self.action_help)

    def action_train_background(self) -> None:
        from gpt_tui.tui.attach import start_background

        start_background(self)

    async def action_quit(self) -> None:
        if self._quitting:
            return
        if self.progress.active and self._training_worker is not None and self._training_worker.is_running:

            def answered(stop: bool | None) -> None:
                if stop:
                    self._quitting = True
                    self.action_train_stop()
                    self.run_worker(self._stop_then_exit(), group="quit")

            self.push_screen(
                ConfirmDialog(
                    "Training is running. Stop it, save a checkpoint and quit?",
                    yes="Stop, save and quit",
                    no="Keep training",
                    title="Quit gpt-tui",
                ),
                answered,
            )
            return
        self.exit()

    async def _stop_then_exit(self) -> None:
        self.notify("Stopping training and saving a checkpoint…", timeout=30)
        worker = self._training_worker
        if worker is not None:
            try:
                await worker.wait()
            except Exception:  # the failure already has its dialog
                pass
        self.drain_events()
        self.exit()

    def on_unmount(self) -> None:
        # The training thread would otherwise keep the process alive after the window closes.
        if self.trainer is not None:
            self.trainer.request_stop()
        if self._reply_worker is not None:
            self._reply_worker.cancel()


def run_app(*, run_dir: str | None = None, attach: str | None = None, compare: str | None = None) -> int:
    """Open the app (the ``gpt-tui`` command with no arguments); ``attach`` follows a run in another process."""
    if attach is not None:
        from gpt_tui.tui.attach import run_attached

        return run_attached(attach, compare)
    from gpt_tui.tui.attach import install_hangup_handler

    app = GptTuiApp(run_dir=run_dir)
    install_hangup_handler(app)  # a dropped SSH connection stops and saves a run training here
    app.run()
    return 0
