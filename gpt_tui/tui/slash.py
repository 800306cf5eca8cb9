"""The REPL's slash commands: parse a line, return the new sampling settings or an action.

Values go through the same parser as the settings panel, so ``/temp -1``
is refused with the same message as typing -1 into the Temperature box.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gpt_tui.engine.options import options_of
from gpt_tui.engine.sampling_config import SAMPLING_RULES, SamplingConfig
from gpt_tui.errors import UserError
from gpt_tui.tui.config import SamplingSettings, describe_sampling, field_spec, format_value, parse_value

_SETTING = tuple(sorted((opt for opt in options_of(SamplingConfig) if opt.slash), key=lambda opt: opt.slash_order))
# command -> sampling field it sets
SETTERS: dict[str, str] = {opt.slash: opt.name for opt in _SETTING if opt.slash}
ACTIONS = ("clear", "help")

HELP_LINES: tuple[tuple[str, str], ...] = tuple(opt.slash_help for opt in _SETTING if opt.slash_help) + (
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
    for rule in SAMPLING_RULES:
        problem = rule.message(updated)
        if problem is not None:
            raise UserError(rule.says_after.get(name, problem))
    return SlashResult(updated, f"{spec.label} set to {format_value(value)} — {describe_sampling(updated)}")
