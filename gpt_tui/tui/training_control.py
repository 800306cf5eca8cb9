"""Which run F5 trains, and the worker that trains it: start, continue, stop, fine-tune.

A run is the thing people care about, so the app never drops one by
accident: after a stop (F6), a crash or a relaunch, F5 continues the same run
in its own directory from its newest checkpoint, and its chart keeps its
history. A fresh run is always an explicit choice ("Train: new run").
Weights picked in the Checkpoints panel make F5 ask whether to continue their
run or to start a new one from them (fine-tuning).

Everything that reads run files or builds a Trainer runs on a worker thread;
torch is imported there, never at this module's import. The worker posts what
it found (gpt_tui.tui.messages) and the UI thread alone sets the app's state.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.worker import Worker, WorkerState, get_current_worker

from gpt_tui.errors import UnconfirmedCorpus, UserError
from gpt_tui.paths import expand_user
from gpt_tui.textsafe import visible
from gpt_tui.tui.config import split_values, train_config_kwargs
from gpt_tui.tui.dialogs import ChoiceDialog, ConfirmDialog
from gpt_tui.tui.fold import fold_events
from gpt_tui.tui.messages import RunHistoryRead, SavedRunRead, TrainerReady
from gpt_tui.tui.model_source import display_path, weights_label
from gpt_tui.tui.saved_run import SavedRun, checkpoint_step, has_checkpoint, read_saved_run, resumable_run_dir, resumable_source
from gpt_tui.tui.trainer_control import TrainerControl

NEW, CONTINUE, FINETUNE = "new", "continue", "finetune"
NEW_RUN_KEY = "ctrl+n"  # the default key of the "train.new" binding
OFFERED_STATES = ("stopped", "stale", "failed")  # a newest run in one of these is offered on launch


@dataclass(frozen=True)
class TrainPlan:
    """What the next training worker does."""

    kind: str  # NEW, CONTINUE or FINETUNE
    source: str | None = None  # CONTINUE: a run dir or checkpoint; FINETUNE: the weights to start from
    overrides: dict[str, Any] = field(default_factory=dict)  # CONTINUE: settings that change (Max steps raised)


class TrainingControl:
    """The app's training decisions; the app's key actions call these."""

    def __init__(self, app: Any) -> None:
        self.app = app  # the GptTuiApp (not imported: the app imports this module)
        self.weights_picked = False  # the user loaded or imported weights in the Checkpoints panel since the last start
        self._waiting: TrainPlan | None = None  # a plan whose worker waits for the previous run to let go
        self._last_worker: Worker[Any] | None = None  # the newest training worker, current or not
        self._last_plan = TrainPlan(NEW)  # what that worker was asked to do
        self._starts = 0  # counts starts, so a start that waited and was overtaken does nothing

    @property
    def new_run_key(self) -> str:
        app = self.app
        return app.get_key_display(Binding(app.settings.keys.get("train.new", NEW_RUN_KEY), "train_new"))

    # ----- F5, F6, new run -----
    def toggle(self) -> None:
        """F5: pause or resume a live run; otherwise start the run that fits what the user did last."""
        app, progress = self.app, self.app.progress
        state = progress.state
        if state in ("running", "preparing"):
            if app.trainer is None:
                app.notify("Training is still starting; pause once the first step runs.")
                return
            app.trainer.pause()
            progress.state = "paused"
            app.notify("Training paused; F5 resumes.", timeout=3)
        elif state == "paused":
            if app.trainer is not None:
                app.trainer.unpause()
            progress.state = "running"
        elif state == "stopping":
            app.notify("Training is stopping; wait for it to save.")
            return
        elif self.weights_picked and app.model_source.kind == "loaded" and app.model_source.loaded is not None:
            self._ask_about_weights(app.model_source.loaded.path)
        elif app.resume_from:
            self.start(TrainPlan(CONTINUE, app.resume_from))
        elif state == "finished" and progress.run_dir:
            self._after_finished()
        else:
            self.start(TrainPlan(NEW))
        app.training_pane.refresh_progress()

    def new_run(self) -> None:
        """"Train: new run": a fresh run with the settings in F2, whatever came before."""
        if self.app.progress.active:
            self.app.notify("A run is training; stop it first (F6), then start a new one.", severity="warning")
            return
        self.start(TrainPlan(NEW))

    def stop(self) -> None:
        app = self.app
        if not app.progress.active:
            app.notify(f"No training is running; {app.train_key} starts one.")
            return
        if app.trainer is None and app._training_worker is None:  # still waiting for the last run to let go
            app.progress.state = "stopped"
            if self._waiting is not None and self._waiting.kind == CONTINUE:
                app.resume_from = self._waiting.source
            app.training_pane.refresh_progress()
            return
        if app.trainer is None:
            if app._training_worker is not None:
                app._training_worker.cancel()
        else:
            app.trainer.request_stop("stopped in the app")
        app.progress.state = "stopping"
        app.training_pane.refresh_progress()

    def _after_finished(self) -> None:
        """A finished run goes on only past its end (Max steps raised above it); otherwise offer a new run."""
        app, progress = self.app, self.app.progress
        wanted = app.settings.training.max_steps
        total = progress.total_steps or progress.step
        if wanted is not None and wanted > total:
            self.start(TrainPlan(CONTINUE, progress.run_dir, {"max_steps": wanted}))
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.start(TrainPlan(NEW))

        app.push_screen(
            ConfirmDialog(
                f"Run {progress.run_name} has finished all its {total} steps. Start a new run with the settings in F2?\n\n"
                f"To train this run further instead, set Max steps in F2 above {total} and press {app.train_key}.",
                yes="New run",
                title="Run finished",
            ),
            answered,
        )

    def _ask_about_weights(self, path: str) -> None:
        """Weights picked in F3: continue their run (a full checkpoint in a run dir) or fine-tune a new run from them."""
        app = self.app
        label = weights_label(path)
        origin = resumable_source(path)
        fine_tune = "start a new run from these weights (fine-tune from step 0, with the settings in F2)"
        if origin is None:

            def confirmed(yes: bool | None) -> None:
                if yes:
                    self.start(TrainPlan(FINETUNE, path))

            app.push_screen(
                ConfirmDialog(f"{label} holds weights only, so no run continues from it. {fine_tune[0].upper()}{fine_tune[1:]}?",
                              yes="New run from these weights", title="Train from loaded weights"),
                confirmed,
            )
            return
        run_dir, step = origin

        def chosen(answer: str | None) -> None:
            if answer == CONTINUE:
                self.start(TrainPlan(CONTINUE, path))
            elif answer == FINETUNE:
                self.start(TrainPlan(FINETUNE, path))

        app.push_screen(
            ChoiceDialog(
                f"{label} is step {step} of run {run_dir.name}. Continue that run from step {step} in its own directory "
                f"(what it logged after step {step} is replaced), or {fine_tune}?",
                [(CONTINUE, "Continue that run", "c"), (FINETUNE, "New run (fine-tune)", "n")],
                title="Train from loaded weights",
            ),
            chosen,
        )

    # ----- starting a worker -----
    def start(self, plan: TrainPlan) -> None:
        """Reset the panes for ``plan`` and start its worker once the previous one has let go of its run."""
        app = self.app
        self.weights_picked = False
        self._starts += 1
        previous = self._last_worker
        app._training_worker = None  # its end, still to come, is no longer this run's business
        app.resume_from = None
        app.buffer.drain()
        if plan.kind != CONTINUE:
            app.history.clear()
        app.progress.reset_for_start()
        app.progress.grad_accum = app.settings.training.grad_accum
        if plan.kind == CONTINUE:
            app.progress.run_dir = str(resumable_run_dir(plan.source or ""))
            app.repl.note(f"Continuing run {app.progress.run_name} from its checkpoint, with its own settings; "
                          f"Train: new run ({self.new_run_key}) starts a fresh one with the settings in F2.")
        elif plan.kind == FINETUNE:
            app.repl.note(f"A new run from {weights_label(plan.source or '')}, with the settings in F2.")
        app.trainer = None
        app.training_pane.refresh_progress()
        app.chart.redraw_if_changed(force=True)
        kwargs = train_config_kwargs(app.settings.training)
        if previous is not None and not previous.is_finished:
            self._waiting = plan
            app.run_worker(self._start_after(previous, plan, kwargs, self._starts), group="training-wait", exit_on_error=False)
        else:
            self._launch(plan, kwargs)

    async def _start_after(self, previous: Worker[Any], plan: TrainPlan, kwargs: dict[str, Any], start: int) -> None:
        try:
            await previous.wait()
        except Exception:  # its failure already has its dialog
            pass
        if start == self._starts and self.app.progress.state == "preparing":  # not stopped or overtaken meanwhile
            self._waiting = None
            self._launch(plan, kwargs)

    def _launch(self, plan: TrainPlan, kwargs: dict[str, Any]) -> None:
        self._last_plan = plan
        worker = self.app.run_worker(
            lambda: self._train(plan, kwargs), thread=True, group="training", name="training", exit_on_error=False
        )
        self.app._training_worker = self._last_worker = worker

    def _train(self, plan: TrainPlan, kwargs: dict[str, Any]) -> Any:
        """The training worker's body (a thread)."""
        from gpt_tui.engine.trainer import TrainConfig, Trainer, resume_config

        app = self.app
        if plan.kind == CONTINUE:
            from gpt_tui.engine.checkpoint import resolve_checkpoint_path
            from gpt_tui.engine.runs import read_metrics

            path = resolve_checkpoint_path(plan.source or "")
            config = resume_config(str(path), plan.overrides)
            step = checkpoint_step(path)
            if config.run_dir and step is not None:
                events, _ = read_metrics(config.run_dir)
                # What the run logged after its checkpoint is replaced as it trains again.
                app.post_message(RunHistoryRead([e for e in events if getattr(e, "step", step + 1) <= step], config.grad_accum))
            trainer = Trainer(config, app.buffer.push, resume=str(path))
        elif plan.kind == FINETUNE:
            trainer = Trainer(TrainConfig(**kwargs), app.buffer.push, init_from=plan.source)
        else:
            trainer = Trainer(TrainConfig(**kwargs), app.buffer.push)
        # The UI thread makes it the app's trainer; it runs once that is done, or stops at once
        # if the app closes first (its worker is cancelled then).
        handled, worker = threading.Event(), get_current_worker()
        posted = app.post_message(TrainerReady(trainer, handled))
        while posted and not handled.wait(0.05) and not worker.is_cancelled:
            pass
        if not handled.is_set() or worker.is_cancelled:
            trainer.request_stop()
        return trainer.run()

    def show_past(self, events: list[Any], grad_accum: int) -> None:
        """The continued run's history up to its checkpoint: the chart and counters pick up where it was."""
        from gpt_tui.engine.events import EvalEvent, StepEvent

        app = self.app
        state = app.progress.state
        app.progress.grad_accum = grad_accum  # the run's own, which its epochs are counted in
        app.history.clear()
        fold_events(app.progress, app.history, [e for e in events if isinstance(e, (StepEvent, EvalEvent))])
        app.progress.state = state
        app.training_pane.refresh_progress()
        app.chart.redraw_if_changed(force=True)

    def trainer_ready(self, trainer: TrainerControl) -> None:
        app = self.app
        app.trainer = trainer
        app.model_source.use_trainer(trainer)
        app.progress.run_dir = str(trainer.run_dir)
        app.training_pane.refresh_progress()
        app.update_repl_status()

    # ----- a run's end -----
    def run_done(self, event: Any) -> None:
        """A DoneEvent from the trainer: say so; a stopped run is what F5 continues next."""
        app = self.app
        if event.reason == "finished":
            app.notify(f"Training finished at step {event.step}; checkpoint saved.", timeout=5)
        else:
            why = f" ({event.stop_reason})" if getattr(event, "stop_reason", None) else ""  # e.g. early stop
            app.notify(f"Training stopped at step {event.step}{why}; checkpoint saved. {app.train_key} continues this run.", timeout=5)
            if app.progress.run_dir:
                app.resume_from = app.progress.run_dir
        if event.checkpoint:
            app.weight_actions.checkpoint_saved(event.checkpoint, quiet=True)

    def worker_changed(self, worker: Worker[Any]) -> None:
        """The training worker ended: a failure gets its dialog, and a failed run that saved can be continued."""
        app = self.app
        if worker is not app._training_worker or worker.state not in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            return
        app.drain_events()
        progress = app.progress
        if worker.state == WorkerState.ERROR and isinstance(worker.error, UnconfirmedCorpus):
            self._confirm_corpus(worker.error.corpus)
        elif worker.state == WorkerState.ERROR:
            error = worker.error
            if progress.state != "failed":
                progress.state = "failed"
                progress.message = str(error)
            if progress.run_dir and has_checkpoint(progress.run_dir):
                app.resume_from = progress.run_dir
            app.training_pane.refresh_progress()
            app.show_error(error, "Training stopped")
        elif worker.state == WorkerState.CANCELLED and progress.active:
            progress.state = "stopped"
            app.training_pane.refresh_progress()

    def _confirm_corpus(self, corpus: str) -> None:
        """A copied or shared run names its corpus: train on that file only once the user says so."""
        plan = self._last_plan
        self.app.progress.state = "stopped"
        self.app.training_pane.refresh_progress()

        def answered(yes: bool | None) -> None:
            if yes:
                self.start(TrainPlan(plan.kind, plan.source, {**plan.overrides, "data": split_values(corpus)}))

        question = (f"This run was trained on {visible(corpus)}, but it was not trained in this folder (it was copied "
                    "or shared), so that file was not read. Continue the run on it?")
        self.app.push_screen(ConfirmDialog(question, yes="Train on it", title="Read this corpus?"), answered)

    # ----- a run from disk -----
    def open_run(self, run_dir: str) -> None:
        """Show a run's curves and talk to its newest checkpoint; F5 continues it if it can (``--run-dir``)."""
        folder = expand_user(run_dir)
        if not folder.is_dir():
            self.app.show_error(UserError(f"Run directory {run_dir} does not exist; `gpt-tui runs` lists the runs."), "Cannot open run")
            return
        self.app.resume_from = str(folder)  # until its files are read: F5 pressed at once continues it
        pending = self.app.model_source.begin_loading()  # a prompt typed at once waits for the run's checkpoint
        self.app.update_repl_status()
        self.app.run_worker(lambda: self._read_then_show(folder, False, pending), thread=True, group="files", exit_on_error=False)

    def offer_last_run(self) -> None:
        """On launch: bring back the newest run if it stopped before its end, read after the first frame."""
        self.app.run_worker(self._find_last_run, thread=True, group="last-run", exit_on_error=False)

    def _find_last_run(self) -> None:
        from gpt_tui.engine.runs import list_runs

        try:
            runs = list_runs()
        except Exception:  # a damaged run folder must not cost the app its start
            return
        if runs and runs[0].status in OFFERED_STATES and runs[0].latest_checkpoint is not None:
            self._read_then_show(runs[0].path, True, self.app.model_source.begin_loading())

    def _read_then_show(self, folder: Path, offer: bool, pending: threading.Event) -> None:
        try:
            saved = read_saved_run(folder)
        except BaseException:
            self.app.model_source.finish_loading(pending, None)  # nothing comes: a waiting prompt goes on
            raise
        self.app.post_message(SavedRunRead(saved, offer, pending))

    def _nothing_to_load(self, pending: threading.Event | None) -> None:
        if pending is not None:
            self.app.model_source.finish_loading(pending, None)
            self.app.update_repl_status()

    def show_saved_run(self, saved: SavedRun, offer: bool, pending: threading.Event | None = None) -> None:
        """Show a run read from disk; ``pending`` (begun before reading it) ends with its checkpoint's load."""
        app, progress = self.app, self.app.progress
        if progress.active or offer and (progress.state != "idle" or progress.run_dir or app.resume_from):
            self._nothing_to_load(pending)
            return  # the user has already started something else (an attached run resets the state too)
        fold_events(progress, app.history, saved.events)
        progress.run_dir = str(saved.path)
        progress.state = saved.state if saved.state in ("finished", "failed") else "stopped"
        app.resume_from = str(saved.path) if progress.state != "finished" and saved.checkpoint_step is not None else None
        app.training_pane.refresh_progress()
        app.chart.redraw_if_changed(force=True)
        if saved.checkpoint_step is not None:
            app.weight_actions.load(str(saved.path), pending)
        else:
            self._nothing_to_load(pending)
        if offer:
            app.repl.note(self._offer_text(saved))

    def _offer_text(self, saved: SavedRun) -> Text:
        how = {"stale": "was cut off (its process is gone)", "failed": "failed"}.get(saved.state, "stopped")
        text = Text()
        text.append(f"Your last run, {saved.path.name}, {how} at step {saved.checkpoint_step}. ", style="bold")
        text.append(f"{self.app.train_key} continues it from there; Train: new run ({self.new_run_key}) starts a fresh one. ")
        text.append(f"The REPL talks to its newest checkpoint ({display_path(saved.path)}).")
        return text

