"""The REPL's slash commands: parse a line, return the new sampling settings or an action.

Values go through the same parser as the settings panel, so ``/temp -1``
is refused with the same message as typing -1 into the Temperature box.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gpt_tui.errors import UserError
from gpt_tui.tui.config import SamplingSettings, describe_sampling, field_spec, format_value, parse_value

# command -> sampling field it sets
SETTERS: dict[str, str] = {
    "temp": "temperature",
    "topk": "top_k",
    "topp": "top_p",
    "max": "max_new_tokens",
    "seed": "seed",
    "beams": "num_beams",
}
ACTIONS = ("clear", "help")

HELP_LINES: tuple[tuple[str, str], ...] = (
    ("/temp X", "temperature; 0 is greedy"),
    ("/topk N|off", "keep the N most likely tokens"),
    ("/topp P|off", "keep the smallest set of tokens with probability mass P"),
    ("/max N", "most new tokens per reply"),
    ("/seed N|off", "fixed seed for reproducible replies; off: a new one each time"),
    ("/beams N", "beam search with N beams (needs /temp 0)"),
    ("/clear", "clear the conversation log"),
    ("/help", "this list"),
)


@dataclass(frozen=True)
class SlashResult:
    sampling: SamplingSettings
    message: str
    action: str | None = None  # "clear" or "help"


def is_slash(line: str) -> bool:
    return line.lstrip().startswith("/")


def run_slash(line: str, sampling: SamplingSettings) -> SlashResult:
    """Apply one slash command to ``sampling``; raises UserError for an unknown command or bad value."""
    parts = line.strip()[1:].split(maxsplit=1)
    if not parts:
        raise UserError("Type a command after the slash, e.g. /temp 0.7; /help lists them.")
    command = parts[0].lower()
    argument = parts[1].strip() if len(parts) > 1 else None
    if command in ACTIONS:
        if argument:
            raise UserError(f"/{command} takes no value.")
        return SlashResult(sampling, "", action=command)
    name = SETTERS.get(command)
    if name is None:
        known = ", ".join(f"/{c}" for c in list(SETTERS) + list(ACTIONS))
        raise UserError(f"Unknown command /{command}; use one of {known}.")
    spec = field_spec("sampling", name)
    if argument is None:
        return SlashResult(sampling, f"{spec.label} is {format_value(getattr(sampling, name))}.")
    value = parse_value(spec, argument)
    updated = replace(sampling, **{name: value})
    if updated.num_beams > 1 and updated.temperature > 0:
        if name == "num_beams":
            raise UserError("Beam search does not sample: set /temp 0 first, then /beams.")
        raise UserError("Beam search is on and does not sample: set /beams 1 first to use a temperature.")
    return SlashResult(updated, f"{spec.label} set to {format_value(value)} — {describe_sampling(updated)}")
