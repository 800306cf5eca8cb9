"""One declaration per option: its type, default, range, help, flag, app field and slash command.

A config dataclass (TrainConfig, SamplingConfig) declares each field with
:func:`option`; the command-line parser, the argument list a background run
is started with, the app's settings form and TOML file, the slash commands
and validation are all read from that one declaration, so an option added
there reaches every one of them and is checked the same way everywhere.
Torch-free and Textual-free: the CLI's ``--help`` and the app's first frame use it.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable

from gpt_tui.errors import UserError

NO_FLAG = ""  # an option with no command-line flag of its own
SAME = "<the engine's default>"  # app_default when the app starts from the engine's default


@dataclass(frozen=True)
class Option:
    """What one config field accepts and where the user can set it."""

    kind: type  # int, float, str or bool
    help: str = ""
    optional: bool = False  # None is a value ("off")
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None  # strictly greater than
    below: float | None = None  # strictly less than
    choices: tuple[str, ...] = ()
    repeatable: bool = False  # several values, a tuple of ``kind`` (the flag given once per value; a lone one still reads)
    check: Callable[[Any], None] | None = None  # a rule a range cannot say (e.g. a device name)
    flag: str | None = None  # None: "--" + the name with dashes; NO_FLAG: none
    hidden: bool = False  # a flag the tool sets for itself (argparse.SUPPRESS)
    off_flag: str | None = None  # how the command line spells None, where it has a word for it
    label: str | None = None  # None: not in the app's settings form
    form_help: str = ""
    form_choices: tuple[str, ...] = ()  # the form offers these (choices apply everywhere)
    app_default: Any = SAME  # where the app starts from another value than the engine
    placeholder: str = ""
    example: str = ""  # a good value, quoted when a typed one is no number ("" : the default serves)
    slash: str | None = None  # the REPL command that sets it
    slash_help: tuple[str, str] | None = None  # (usage, what it does) for /help
    slash_order: int = 0  # where /help lists it
    refusal: str | None = None  # the engine's wording of a bad value, with {name} and {value}
    name: str = ""  # filled in from the field

    @property
    def cli_flag(self) -> str | None:
        if self.flag == NO_FLAG:
            return None
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def dashed(self) -> str:
        return self.name.replace("_", "-")


def option(default: Any, kind: type, help: str = "", **declared: Any) -> Any:
    """A dataclass field that carries its Option (read back with :func:`options_of`)."""
    return field(default=default, metadata={"option": Option(kind, help, **declared)})


def options_of(config: type) -> tuple[Option, ...]:
    """The options of a config dataclass, in field order, each knowing its name."""
    out = []
    for f in fields(config):
        declared = f.metadata.get("option")
        if declared is not None:
            object.__setattr__(declared, "name", f.name)
            out.append(declared)
    return tuple(out)


def default_of(config: type, name: str) -> Any:
    return next(f.default for f in fields(config) if f.name == name)


def _g(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"  # a whole number in full: 2**63 - 1, not 9.2e+18


def describe_range(opt: Option, maximum: float | None = None) -> str:
    """The range in symbols, as the settings form says it: ``>= 1 and <= 64``."""
    top = opt.maximum if maximum is None else maximum
    parts = []
    if opt.minimum is not None:
        parts.append(f">= {_g(opt.minimum)}")
    if opt.above is not None:
        parts.append(f"> {_g(opt.above)}")
    if top is not None:
        parts.append(f"<= {_g(top)}")
    if opt.below is not None:
        parts.append(f"< {_g(opt.below)}")
    return " and ".join(parts)


def _describe_in_words(opt: Option) -> str:
    """The range in words, as the engine says it: ``must be greater than 0``."""
    low, high = opt.minimum, opt.maximum
    if opt.above is not None and opt.below is not None:
        return f"must lie strictly between {_g(opt.above)} and {_g(opt.below)}"
    if low is not None and opt.below is not None:
        return f"must lie in [{_g(low)}, {_g(opt.below)})"
    if low is not None and high is not None:
        return f"must be from {_g(low)} to {_g(high)}"
    if opt.above == 0 or (low == 1 and opt.kind is int):
        return "must be greater than 0"
    if low == 0:
        return "cannot be negative"
    return f"must be {describe_range(opt)}"


def in_range(opt: Option, value: Any, maximum: float | None = None) -> bool:
    """Whether a number lies in the option's range (NaN and infinities never do)."""
    top = opt.maximum if maximum is None else maximum
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return not (
        (opt.minimum is not None and value < opt.minimum)
        or (top is not None and value > top)
        or (opt.above is not None and value <= opt.above)
        or (opt.below is not None and value >= opt.below)
    )


def values_of(value: Any) -> tuple[Any, ...]:
    """A repeatable option's values: None is none, a lone value (as older configs stored it) is one."""
    if value is None:
        return ()
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


VALUE_SEPARATORS = ";\n"  # how one text box (the app's form, its TOML file) holds a repeatable option's values


def split_values(text: str) -> tuple[str, ...]:
    """The values one text box holds for a repeatable option: separated by ";" or new lines, blanks dropped."""
    for separator in VALUE_SEPARATORS[1:]:
        text = text.replace(separator, VALUE_SEPARATORS[0])
    return tuple(part.strip() for part in text.split(VALUE_SEPARATORS[0]) if part.strip())


def check_option(opt: Option, value: Any, maximum: float | None = None) -> None:
    """The engine's check of one value: a UserError in the option's own words, or nothing."""
    if value is None and opt.optional:
        return
    if opt.repeatable:
        each = replace(opt, repeatable=False, check=None, optional=False)
        for one in values_of(value):
            check_option(each, one, maximum)
        if opt.check is not None:
            opt.check(values_of(value))
        return
    if opt.kind in (int, float):
        good = in_range(opt, value, maximum) and (opt.kind is float or isinstance(value, int))
    elif opt.kind is bool:
        good = isinstance(value, bool)
    else:
        good = isinstance(value, str) and (not opt.choices or value in opt.choices)
    if not good:
        if opt.refusal is None and isinstance(value, float) and not math.isfinite(value):  # not "cannot be negative"
            raise UserError(f"{opt.dashed} must be a finite number, got {value}.")
        if opt.refusal is not None:
            raise UserError(opt.refusal.format(name=opt.dashed, value=value, maximum=maximum))
        if opt.choices:
            raise UserError(f"{opt.dashed} must be {_or(opt.choices)}, got {value!r}.")
        raise UserError(f"{opt.dashed} {_describe_in_words(opt)}, got {value}.")
    if opt.check is not None:
        opt.check(value)


def _or(choices: tuple[str, ...]) -> str:
    return ", ".join(choices[:-1]) + " or " + choices[-1] if len(choices) > 1 else choices[0]


def check_all(config: Any, maximums: dict[str, float] | None = None) -> None:
    """Every option of ``config`` checked in field order; the first bad one raises."""
    for opt in options_of(type(config)):
        check_option(opt, getattr(config, opt.name), (maximums or {}).get(opt.name))


@dataclass(frozen=True)
class Rule:
    """A rule that ties options together: ``broken`` gives the engine's message, ``says`` the app's."""

    names: tuple[str, ...]
    broken: Callable[[Any], str | None]
    says: str  # formatted with the values by name
    says_after: dict[str, str] = field(default_factory=dict)  # a slash command's wording, by the field it just set

    def message(self, values: Any) -> str | None:
        """The app's wording when ``values`` (any object with the named attributes) breaks the rule."""
        if self.broken(values) is None:
            return None
        return self.says.format(**{name: getattr(values, name) for name in self.names})


def check_rules(config: Any, rules: tuple[Rule, ...]) -> None:
    for rule in rules:
        problem = rule.broken(config)
        if problem is not None:
            raise UserError(problem)


# -- the command line ---------------------------------------------------------------------------------


def _help_with_default(opt: Option, default: Any) -> str | None:
    """The help line with the schema's default, unless it already says it (the flags default to None, so argparse cannot)."""
    if not opt.help or "default" in opt.help:
        return opt.help or None
    if isinstance(default, bool) or default is None:
        shown = "on" if default else "off"
    else:
        shown = ", ".join(map(str, default)) if isinstance(default, tuple) else str(default)
    return f"{opt.help} (default: {shown})".replace("%", "%%")


def add_flags(parser: argparse.ArgumentParser, config: type, defaults: bool = False) -> None:
    """One flag per option; with ``defaults`` False each defaults to None, so "not given" can be told apart."""
    for opt in options_of(config):
        flag = opt.cli_flag
        if flag is None:
            continue
        help_text = argparse.SUPPRESS if opt.hidden else _help_with_default(opt, default_of(config, opt.name))
        default = default_of(config, opt.name) if defaults else None
        if opt.kind is bool:
            parser.add_argument(flag, dest=opt.name, action="store_true", default=default, help=help_text)
        elif opt.repeatable:
            parser.add_argument(flag, dest=opt.name, action="append", type=opt.kind, default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=opt.name, type=opt.kind, default=default, help=help_text)


def given_flags(args: argparse.Namespace, config: type, maximums: dict[str, float] | None = None) -> dict[str, Any]:
    """The options the user set on the command line, each checked (an absent flag is left out; its "off" word is None).

    Checked here, as parsed, so a bad value is refused before anything starts (a background run, a download).
    """
    values = {}
    for opt in options_of(config):
        value = getattr(args, opt.name, None)
        if opt.cli_flag is not None and value is not None and not (opt.kind is bool and not value):
            off = opt.off_flag is not None and value == opt.kind(opt.off_flag)  # e.g. --grad-clip 0
            values[opt.name] = None if off else tuple(value) if opt.repeatable else value
            check_option(opt, values[opt.name], (maximums or {}).get(opt.name))
    return values


def flags_for(values: dict[str, Any], config: type, skip: tuple[str, ...] = ()) -> list[str]:
    """The argument list that sets ``values`` again: ``--flag=value`` (a value starting with "-" stays a value)."""
    argv = []
    for opt in options_of(config):
        if opt.name not in values or opt.name in skip or opt.cli_flag is None:
            continue
        value = values[opt.name]
        if value is None:
            if opt.off_flag is not None:
                argv.append(f"{opt.cli_flag}={opt.off_flag}")
            continue
        if opt.kind is bool:
            if value:
                argv.append(opt.cli_flag)
            continue
        argv.extend(f"{opt.cli_flag}={one}" for one in (values_of(value) if opt.repeatable else (value,)))
    return argv
