"""Weights the user acts on: save now (F8), load, import and delete in the Checkpoints panel.

Reading and writing files runs on worker threads; each worker posts what it
did (gpt_tui.tui.messages: CheckpointSaved, WeightsLoaded, ReplaceAsked) and
the app's handlers call back here on the UI thread to update the panels.
Every load of weights into the REPL (F3 load or import, a run opened with
--run-dir, the relaunch offer) goes through ``_run_load``: it tells the model source
weights are on their way (``begin_loading``), so a prompt typed before they
arrive is answered by them, and ends that wait however the load ends.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

from gpt_tui.errors import UserError
from gpt_tui.textsafe import visible
from gpt_tui.tui.checkpoints import CheckpointsPanel
from gpt_tui.tui.dialogs import ConfirmDialog
from gpt_tui.tui.messages import CheckpointSaved, ReplaceAsked, WeightsLoaded
from gpt_tui.tui.model_source import LoadedModel, display_path, load_model_file
from gpt_tui.tui.progress import format_count


class WeightActions:
    """The app's save, load, import and delete of weights."""

    def __init__(self, app: Any) -> None:
        self.app = app  # the GptTuiApp: its trainer, progress, model source and panels
        self._load_lock = threading.Lock()  # one load at a time, so two quick loads end in the order asked

    def _run(self, work: Any) -> None:
        self.app.run_worker(work, thread=True, group="files", exit_on_error=False)

    # ----- on the UI thread -----
    def requested(self, message: CheckpointsPanel.Requested) -> None:
        """A button or key in the Checkpoints panel."""
        app = self.app
        if message.action == "save":
            self.save_now()
        elif message.action == "load" and message.target:
            app.training_control.weights_picked = True  # F5 now asks what to train from them
            self.say(f"Loading {display_path(message.target)}…")
            self.load(message.target)
        elif message.action == "delete" and message.target:
            target = message.target

            def confirmed(answer: bool | None) -> None:
                if answer:
                    self.delete(target)

            question = "Delete this checkpoint? This cannot be undone."
            app.push_screen(ConfirmDialog(question, yes="Delete", title="Delete checkpoint", path=display_path(target)), confirmed)
        elif message.action == "import" and message.target:
            app.training_control.weights_picked = True
            self.say(f"Importing {message.target}…")
            self.import_weights(message.target)

    def panels(self) -> list[CheckpointsPanel]:
        found: list[CheckpointsPanel] = []
        for screen in self.app.screen_stack:
            found.extend(screen.query(CheckpointsPanel))
        return found

    def say(self, text: str, error: bool = False) -> None:
        for panel in self.panels():
            panel.say(text, error)

    def save_now(self) -> None:
        """F8: a checkpoint of the live run after its step, of a paused run now, or of the REPL's model."""
        app = self.app
        trainer, state = app.trainer, app.progress.state
        if trainer is not None and state in ("running", "preparing"):
            trainer.request_checkpoint()
            self.say("A checkpoint will be saved after the current step.")
            app.notify("Saving a checkpoint after this step…", timeout=3)
        elif trainer is not None and state == "paused":
            self._run(trainer.save)  # the training thread is parked between steps, so this is consistent
        elif app.progress.checkpoint and app.model_source.kind == "training":
            self.say(f"This run is already saved: {display_path(app.progress.checkpoint)}.")
            app.notify("Already saved at the end of the run.", timeout=3)
        else:
            app.notify(f"No training run to save; saving the REPL's model ({app.model_source.describe()})…", timeout=3)
            self._run(self._save_repl_model)

    def checkpoint_saved(self, path: str, quiet: bool = False, untrained_label: str = "") -> None:
        for panel in self.panels():
            panel.reload(select=path)
            panel.say(f"Saved {display_path(path)}.")
        if untrained_label:  # F8 with nothing trained: the file holds random weights, which is rarely what was meant
            self.app.notify(
                f"Saved the {untrained_label} model to {visible(display_path(path))}, but it has never been trained "
                f"(step 0): its weights are random. Train first ({self.app.train_key}) or load a checkpoint (F3).",
                severity="warning", timeout=10,
            )
        elif not quiet:
            self.app.notify(f"Checkpoint saved: {visible(Path(path).name)}", timeout=4)

    def weights_loaded(self, loaded: LoadedModel | None) -> None:
        """A load ended (the model source already uses the weights); None: it failed, its worker says why."""
        app = self.app
        app.update_repl_status()
        if loaded is None:
            return
        params = format_count(sum(p.numel() for p in loaded.model.parameters()))
        app.repl.note(f"Now talking to {loaded.label} ({params} parameters).")
        self.say(f"Loaded {loaded.label}; the REPL uses it now.")
        app.notify(f"Loaded {visible(Path(loaded.path).name)}", timeout=3)  # a file name

    def load(self, source: str, pending: threading.Event | None = None) -> None:
        """Load weights for the REPL on a worker; replies asked for meanwhile wait for them.

        ``pending``: the model source's wait, when the caller began it earlier (a run being read).
        """
        device = self.app.settings.training.device
        self._run_load(lambda: load_model_file(source, device), pending)

    def import_weights(self, source: str, overwrite: bool = False) -> None:
        device = self.app.settings.training.device
        self._run_load(lambda: self._import(source, overwrite, device))

    def _run_load(self, load: Callable[[], LoadedModel | None], pending: threading.Event | None = None) -> None:
        pending = pending or self.app.model_source.begin_loading()
        self.app.update_repl_status()
        self._run(lambda: self._load(load, pending))

    def ask_to_replace(self, source: str, existing: Path) -> None:
        """An import would replace a model of the same name: only on the user's yes."""
        def confirmed(answer: bool | None) -> None:
            if answer:
                self.import_weights(source, overwrite=True)
            else:
                self.say(f"Kept {display_path(existing)}; nothing was imported.")

        question = f"{display_path(existing)} exists. Replace it with {source}?"
        self.app.push_screen(ConfirmDialog(question, yes="Replace", title="Replace model"), confirmed)

    def delete(self, target: str) -> None:
        from gpt_tui.tui.checkpoint_files import delete_checkpoint

        try:
            delete_checkpoint(Path(target))
        except UserError as exc:
            self.say(str(exc), error=True)
            return
        for panel in self.panels():
            panel.reload()
            panel.say(f"Deleted {display_path(target)}.")

    # ----- on worker threads -----
    def _load(self, load: Callable[[], LoadedModel | None], pending: threading.Event) -> None:
        """Run ``load``; whatever happens, the REPL then uses what it got and waiting replies go on.

        An error still propagates, so the app reports it (the worker's error dialog).
        """
        loaded: LoadedModel | None = None
        try:
            with self._load_lock:
                loaded = load()
        finally:
            self.app.model_source.finish_loading(pending, loaded)
            self.app.post_message(WeightsLoaded(loaded))

    def _save_repl_model(self) -> None:
        from gpt_tui import paths
        from gpt_tui.engine.checkpoint import save_checkpoint

        source = self.app.model_source
        model, label = source.acquire()
        untrained = source.kind == "fresh"  # after acquire: weights being loaded are waited for
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name = f"saved-{model.config.n_layers}l{model.config.emb_dim}d-{stamp}.safetensors"
        path = save_checkpoint(paths.models_dir() / name, model, meta={"saved_from": label})
        self.app.post_message(CheckpointSaved(str(path), untrained_label=label if untrained else ""))

    def _import(self, source: str, overwrite: bool, device: str) -> LoadedModel | None:
        from gpt_tui.engine.weights import import_weights
        from gpt_tui.errors import AlreadyExistsError

        app = self.app
        try:
            path = import_weights(source, overwrite=overwrite)
        except AlreadyExistsError as exc:
            app.post_message(ReplaceAsked(source, exc.path))
            return None
        app.post_message(CheckpointSaved(str(path)))
        return load_model_file(str(path), device)
