"""The app's settings: parsing a value typed or read from TOML, and the TOML file in the user config dir.

The fields, their defaults, ranges and cross-field rules are the engine's
option declarations (gpt_tui.engine.options on TrainConfig and SamplingConfig);
the form's field tables and the settings classes here are views of them, so
the app refuses exactly what the engine refuses. Kept free of Textual and torch.
Every value goes through :func:`parse_value`, whether it came from the file
or from an input box, so a bad value is refused the same way everywhere.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields, make_dataclass, replace
from pathlib import Path
from typing import Any, Callable

from gpt_tui import fileio, paths
from gpt_tui.engine.corpus_parts import check_sources_named
from gpt_tui.engine.options import SAME, Option, Rule, default_of, describe_range, in_range, options_of, split_values
from gpt_tui.engine.presets import PRESET_NAMES
from gpt_tui.engine.sampling_config import SAMPLING_RULES, SamplingConfig
from gpt_tui.engine.train_options import TRAIN_RULES, TrainConfig
from gpt_tui.errors import UserError

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    tomllib = None  # type: ignore[assignment]

SETTINGS_FILE = "settings.toml"
DEFAULT_THEME = "gpt-tui-dark"
MODEL_PRESETS = PRESET_NAMES  # the engine's table, torch-free
OFF_WORDS = ("", "off", "none", "auto")  # "auto": what an option chooses by itself when not set


# The engine's defaults, read once: the app's Start and `gpt-tui train` give the same run.
ENGINE_DEFAULTS = TrainConfig()


def _app_default(opt: Option, config: type) -> Any:
    if opt.app_default is not SAME:
        return opt.app_default
    default = default_of(config, opt.name)
    return "" if default is None and opt.kind is str else default  # an empty box: the engine's None


def _settings_class(name: str, config: type, doc: str) -> type:
    """A frozen dataclass of the options of ``config`` that the settings form shows, in declaration order."""
    shown = [opt for opt in options_of(config) if opt.label is not None]
    cls = make_dataclass(
        name, [(opt.name, Any, field(default=_app_default(opt, config))) for opt in shown], frozen=True
    )
    cls.__module__ = __name__
    cls.__doc__ = doc
    return cls


# What Start trains. Every default is TrainConfig's, so the app and the command line agree.
TrainingSettings = _settings_class("TrainingSettings", TrainConfig, "What Start trains; every default is TrainConfig's.")
# How the REPL picks tokens; slash commands change the copy in force, the panel the saved default.
SamplingSettings = _settings_class("SamplingSettings", SamplingConfig, "How the REPL picks tokens.")


@dataclass(frozen=True)
class Settings:
    theme: str = DEFAULT_THEME
    training: TrainingSettings = field(default_factory=TrainingSettings)
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    keys: dict[str, str] = field(default_factory=dict)  # binding id -> keys, Textual's keymap

    def with_value(self, section: str, name: str, value: Any) -> "Settings":
        """A copy with one field changed (the value must already be parsed)."""
        if section == "app":
            return replace(self, **{name: value})
        group = getattr(self, section)
        return replace(self, **{section: replace(group, **{name: value})})


@dataclass(frozen=True)
class FieldSpec:
    """One setting: how to label, parse and check it."""

    section: str  # "training", "sampling" or "app"
    name: str
    label: str
    kind: type  # int, float or str
    optional: bool = False  # empty / "off" means None
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None  # strictly greater than
    below: float | None = None  # strictly less than
    choices: tuple[str, ...] = ()
    help: str = ""
    check: Callable[[Any], None] | None = None
    placeholder: str = ""
    option: Option | None = None  # the engine's declaration it shows
    example: str = ""  # quoted when a typed value is no number: the option's own, or its default

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"


# Checks only the app makes, before a run starts (the engine finds a missing corpus when it reads it).
_FORM_CHECKS: dict[str, Callable[[Any], None]] = {"data": lambda value: check_sources_named(split_values(value))}


def _field_spec(section: str, opt: Option, default: Any = None) -> FieldSpec:
    """The form's view of one option: its range and choices are the option's own."""
    return FieldSpec(
        section, opt.name, opt.label or opt.name, opt.kind,
        optional=opt.optional and opt.kind is not str,  # text: an empty box is the "off" value
        minimum=opt.minimum, maximum=opt.maximum, above=opt.above, below=opt.below,
        choices=opt.form_choices or opt.choices, help=opt.form_help,
        check=_FORM_CHECKS.get(opt.name, opt.check), placeholder=opt.placeholder, option=opt,
        # A refused number quotes a value that fits this option: its declared example, else its default.
        example=opt.example or (f"{default:g}" if type(default) is float else str(default) if type(default) is int else ""),
    )


def _form(section: str, config: type) -> tuple[FieldSpec, ...]:
    return tuple(_field_spec(section, opt, _app_default(opt, config)) for opt in options_of(config) if opt.label is not None)


TRAINING_FIELDS: tuple[FieldSpec, ...] = _form("training", TrainConfig)
SAMPLING_FIELDS: tuple[FieldSpec, ...] = _form("sampling", SamplingConfig)

APP_FIELDS: tuple[FieldSpec, ...] = (FieldSpec("app", "theme", "Theme", str),)

ALL_FIELDS: dict[str, FieldSpec] = {spec.key: spec for spec in TRAINING_FIELDS + SAMPLING_FIELDS + APP_FIELDS}
_REPEATABLE = frozenset(spec.name for spec in ALL_FIELDS.values() if spec.option is not None and spec.option.repeatable)


def field_spec(section: str, name: str) -> FieldSpec:
    try:
        return ALL_FIELDS[f"{section}.{name}"]
    except KeyError:
        raise UserError(f"Unknown setting {section}.{name}.") from None


def parse_value(spec: FieldSpec, raw: Any) -> Any:
    """The typed value of ``raw`` (text from an input box, or a TOML value) or a UserError saying why not."""
    label = spec.label
    if spec.option is not None and spec.option.repeatable and isinstance(raw, (list, tuple)):
        raw = "; ".join(str(one) for one in raw)  # a TOML list: the box's text
    if isinstance(raw, str):
        text = raw.strip() if spec.kind is not str else raw
        if spec.optional and text.strip().lower() in OFF_WORDS:
            return None
    else:
        text = raw
    if spec.kind is str:
        if not isinstance(text, str):
            raise UserError(f"{label} must be text, got {raw!r}.")
        value: Any = text.strip() if spec.name != "start_context" else text
        if spec.choices and value not in spec.choices:
            raise UserError(f"{label} must be one of {', '.join(spec.choices)}; got {value!r}.")
        if spec.check is not None:
            spec.check(value)
        return value
    if spec.kind is int:
        if isinstance(text, bool) or isinstance(text, float) and not float(text).is_integer():
            raise UserError(f"{label} must be a whole number, got {raw!r}.")
        try:
            value = int(text)
        except (TypeError, ValueError):
            hint = " or off" if spec.optional else ""
            raise UserError(f"{label} must be a whole number{hint}, got {raw!r}.") from None
    else:
        if isinstance(text, bool):
            raise UserError(f"{label} must be a number, got {raw!r}.")
        try:
            value = float(text)
        except (TypeError, ValueError):
            hint = " or off" if spec.optional else ""
            example = f" (e.g. {spec.example})" if spec.example else ""
            raise UserError(f"{label} must be a number{hint}{example}, got {raw!r}.") from None
        if not math.isfinite(value):
            raise UserError(f"{label} must be a finite number, got {raw!r}.")
    if not in_range(spec.option or spec, value):
        raise UserError(f"{label} must be {describe_range(spec.option or spec)}, got {raw!r}.")
    if spec.check is not None:
        spec.check(value)
    return value


def format_value(value: Any) -> str:
    """How a value reads in an input box: the inverse of :func:`parse_value`."""
    if value is None:
        return "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _check_rules(values: Any, rules: tuple[Rule, ...]) -> None:
    for rule in rules:
        problem = rule.message(values)
        if problem is not None:
            raise UserError(problem)


def check_training(training: Any) -> None:
    """The engine's rules that tie training fields together, in the form's words; raises UserError naming both."""
    _check_rules(training, TRAIN_RULES)


def check_sampling(sampling: Any) -> None:
    _check_rules(sampling, SAMPLING_RULES)


def check_consistency(settings: Settings) -> None:
    check_training(settings.training)
    check_sampling(settings.sampling)


def settings_path() -> Path:
    return paths.config_dir() / SETTINGS_FILE


def _load_section(cls: type, spec_by_name: dict[str, FieldSpec], table: Any, section: str, problems: list[str]) -> Any:
    defaults = cls()
    if not isinstance(table, dict):
        problems.append(f"[{section}] must be a table; using the defaults.")
        return defaults
    values: dict[str, Any] = {}
    for name, raw in table.items():
        spec = spec_by_name.get(name)
        if spec is None:
            problems.append(f"Unknown setting {section}.{name} ignored.")
            continue
        try:
            values[name] = parse_value(spec, raw)
        except UserError as exc:
            problems.append(f"{section}.{name}: {exc} Using the default {format_value(getattr(defaults, name))}.")
    return replace(defaults, **values)


def settings_from_dict(data: dict[str, Any]) -> tuple[Settings, list[str]]:
    """Settings from parsed TOML; a bad field keeps its default and adds a message, nothing raises."""
    problems: list[str] = []
    app = data.get("app", {})
    theme = DEFAULT_THEME
    if isinstance(app, dict) and isinstance(app.get("theme"), str) and app["theme"].strip():
        theme = app["theme"].strip()
    training = _load_section(
        TrainingSettings, {s.name: s for s in TRAINING_FIELDS}, data.get("training", {}), "training", problems
    )
    sampling = _load_section(
        SamplingSettings, {s.name: s for s in SAMPLING_FIELDS}, data.get("sampling", {}), "sampling", problems
    )
    keys_table = data.get("keys", {})
    keys: dict[str, str] = {}
    if isinstance(keys_table, dict):
        for binding_id, key in keys_table.items():
            if isinstance(key, str) and key.strip():
                keys[str(binding_id)] = key.strip()
            else:
                problems.append(f"keys.{binding_id} must be a key name such as 'f5' or 'ctrl+t'.")
    try:
        check_training(training)
    except UserError as exc:
        problems.append(f"{exc} Using the default training settings.")
        training = TrainingSettings()
    try:
        check_sampling(sampling)
    except UserError as exc:
        problems.append(f"{exc} Using the default sampling settings.")
        sampling = SamplingSettings()
    return Settings(theme=theme, training=training, sampling=sampling, keys=keys), problems


def load_settings(path: Path | None = None) -> tuple[Settings, list[str]]:
    """The saved settings and a list of problems found; a missing or broken file gives the defaults."""
    path = path or settings_path()
    if not path.exists():
        return Settings(), []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return Settings(), [f"Cannot read {path.name}: {exc}; using the defaults."]
    if tomllib is None:  # pragma: no cover
        return Settings(), ["Reading settings needs Python 3.11 (tomllib); using the defaults."]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return Settings(), [f"{path.name} is not valid TOML ({exc}); using the defaults. It is kept as {path.name}.broken when settings are next saved."]
    return settings_from_dict(data)


def _toml_value(value: Any) -> str:
    if value is None:
        return '"off"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    out = ['"']
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_key(key: str) -> str:
    if key and all(ch.isalnum() or ch in "-_" for ch in key):
        return key
    return _toml_value(key)


def settings_to_toml(settings: Settings) -> str:
    lines = ["# gpt-tui settings; edit here or in the app's settings panel (F2).", "", "[app]", f"theme = {_toml_value(settings.theme)}"]
    for section, group in (("training", settings.training), ("sampling", settings.sampling)):
        lines += ["", f"[{section}]"]
        for f in fields(group):
            lines.append(f"{f.name} = {_toml_value(getattr(group, f.name))}")
    if settings.keys:
        lines += ["", "[keys]"]
        for binding_id, key in sorted(settings.keys.items()):
            lines.append(f"{_toml_key(binding_id)} = {_toml_value(key)}")
    return "\n".join(lines) + "\n"


def save_settings(settings: Settings, path: Path | None = None) -> Path:
    """Write atomically; a file that did not parse is first kept as ``settings.toml.broken``."""
    path = path or settings_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and tomllib is not None:
            try:
                tomllib.loads(path.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError):
                os.replace(path, path.with_name(path.name + ".broken"))
        fileio.atomic_write_text(path, settings_to_toml(settings))
    except OSError as exc:
        raise UserError(f"Cannot save settings to {path}: {exc.strerror or exc}; check the config directory's permissions.") from None
    return path


def _config_kwargs(group: Any) -> dict[str, Any]:
    """Each setting by its name; an empty text box is the engine's None (e.g. the built-in corpus)."""
    kwargs = {f.name: getattr(group, f.name) for f in fields(group)}
    kwargs = {name: (None if value == "" and default_of(type(group), name) == "" else value) for name, value in kwargs.items()}
    for name in _REPEATABLE & kwargs.keys():  # one box holds several values: the engine takes them as a tuple
        if isinstance(kwargs[name], str):
            kwargs[name] = split_values(kwargs[name]) or None
    return kwargs


def train_config_kwargs(training: Any) -> dict[str, Any]:
    """Keyword arguments for the engine's TrainConfig (built where torch may be imported)."""
    return _config_kwargs(training)


def sampling_config_kwargs(sampling: Any) -> dict[str, Any]:
    """Keyword arguments for the engine's SamplingConfig."""
    return _config_kwargs(sampling)


def describe_sampling(sampling: SamplingSettings) -> str:
    """One line for the REPL's status bar."""
    parts = ["greedy" if sampling.temperature == 0 else f"temp {sampling.temperature:g}"]
    if sampling.temperature > 0:
        parts.append(f"top-k {format_value(sampling.top_k)}")
        parts.append(f"top-p {format_value(sampling.top_p)}")
    if sampling.num_beams > 1:
        parts.append(f"beams {sampling.num_beams}")
    parts.append(f"max {sampling.max_new_tokens}")
    parts.append(f"seed {format_value(sampling.seed)}")
    if sampling.quantize != "none":
        parts.append(f"{sampling.quantize} weights")
    return " · ".join(parts)
