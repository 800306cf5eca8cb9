"""What the app's workers report: the handlers of their messages (gpt_tui.tui.messages), on the UI thread.

The app class mixes this in; each handler hands the result to the part of the
app that owns it (training_control, weight_actions, the REPL's status line).
"""

from __future__ import annotations

from typing import Any, Callable

import warnings

from gpt_tui.errors import Notice
from gpt_tui.textsafe import visible
from gpt_tui.tui import messages


def notices_to(app: Any) -> Callable[[], None]:
    """Route engine Notices, from whichever thread warns, to the app as NoticeRaised messages.

    Printed to stderr they would land under the app's screen, unseen, or
    garble it; other warnings keep Python's own handling.
    """
    show = warnings.showwarning

    def show_notice(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, Notice):
            app.post_message(messages.NoticeRaised(str(message)))
        else:
            show(message, category, *args, **kwargs)

    filters = warnings.filters[:]
    warnings.simplefilter("always", Notice)
    warnings.showwarning = show_notice

    def restore() -> None:
        warnings.showwarning = show
        warnings.filters[:] = filters

    return restore


class WorkerResultHandlers:
    """Mixed into GptTuiApp, whose controllers these call."""

    devices: list[str]
    training_control: Any
    weight_actions: Any
    chart_export: Any

    def on_devices_found(self, message: messages.DevicesFound) -> None:
        self.devices = message.devices

    def on_checkpoint_saved(self, message: messages.CheckpointSaved) -> None:
        self.weight_actions.checkpoint_saved(message.path, message.quiet, message.untrained_label)

    def on_weights_loaded(self, message: messages.WeightsLoaded) -> None:
        self.weight_actions.weights_loaded(message.loaded)

    def on_replace_asked(self, message: messages.ReplaceAsked) -> None:
        self.weight_actions.ask_to_replace(message.source, message.existing)

    def on_trainer_ready(self, message: messages.TrainerReady) -> None:
        self.training_control.trainer_ready(message.trainer)
        message.handled.set()

    def on_run_history_read(self, message: messages.RunHistoryRead) -> None:
        self.training_control.show_past(message.events, message.grad_accum)

    def on_saved_run_read(self, message: messages.SavedRunRead) -> None:
        self.training_control.show_saved_run(message.saved, message.offer, message.pending)

    def on_run_weights_loaded(self, message: messages.RunWeightsLoaded) -> None:
        self.update_repl_status()
        if message.found is not None:
            message.weights.announce(*message.found)

    def on_notice_raised(self, message: messages.NoticeRaised) -> None:
        self.notify(visible(message.text), severity="warning", timeout=10)  # type: ignore[attr-defined]

    def on_export_written(self, message: messages.ExportWritten) -> None:
        self.chart_export.written(message)
