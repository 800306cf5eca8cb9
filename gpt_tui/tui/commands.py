"""The app's entries in the command palette, and the key list the help screen (F1) shows."""

from __future__ import annotations

from typing import Any, Iterable

from textual.app import SystemCommand
from textual.binding import Binding


def app_commands(app: Any) -> Iterable[SystemCommand]:
    """The palette's gpt-tui commands, after Textual's own (``app`` is the GptTuiApp they act on)."""
    yield SystemCommand("Train: start / pause / resume", "Start training, or pause and resume it (F5)", app.action_train_toggle)
    yield SystemCommand("Train: stop", "Stop training and save a checkpoint (F6)", app.action_train_stop)
    yield SystemCommand("Train: new run", "A fresh run with the settings in F2; F5 continues the last one", app.action_train_new)
    yield SystemCommand("Train: in the background", "A process that keeps training after you quit; shown here live", app.action_train_background)
    yield SystemCommand("Chart: switch", "Loss, perplexity, learning rate (F7)", app.action_chart_mode)
    yield SystemCommand("Chart: smoothed train line", "Show or hide the moving average over faint raw steps (F10)", app.action_chart_smoothing)
    yield SystemCommand("Chart: export PNG", "The chart as shown, into the run directory (F9)", app.action_export_chart)
    yield SystemCommand("Metrics: export CSV", "metrics.jsonl as a table, into the run directory", app.action_export_metrics)
    yield SystemCommand("Checkpoint: save now", "Save the current weights (F8)", app.action_save_checkpoint)
    yield SystemCommand("Checkpoints", "List, load, delete, import GPT-2 weights (F3)", app.action_checkpoints)
    yield SystemCommand("Runs", "Every run: open or attach, resume, compare, delete (F4)", app.action_runs)
    yield SystemCommand("Settings", "Device, model, hyperparameters, sampling (F2)", app.action_settings)
    yield SystemCommand("Copy last reply", "To the clipboard through the terminal (Ctrl+Y)", app.action_copy_reply)
    yield SystemCommand("Clear conversation", "Empty the REPL log (Ctrl+L)", app.action_clear_log)
    yield SystemCommand("Help", "Keys, commands and how to start (F1)", app.action_help)


def key_help(app: Any) -> list[tuple[str, str]]:
    """The app's own bindings as currently mapped (the keymap in settings.toml can change them)."""
    rows: list[tuple[str, str]] = []
    seen: set[str] = set()
    for active in app.screen.active_bindings.values():
        binding = active.binding
        if active.node is not app or binding.action in seen or not binding.description:
            continue
        if binding.action == "command_palette":
            continue  # listed below with a clearer name
        seen.add(binding.action)
        rows.append((app.get_key_display(binding), f"{binding.description}  [{binding.id}]" if binding.id else binding.description))
    rows.append((app.get_key_display(Binding(app.COMMAND_PALETTE_BINDING, "")), "Command palette: every action, and Theme to switch themes"))
    return rows
