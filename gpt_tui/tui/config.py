"""The app's settings: a typed model, per-field validation, and a TOML file in the user config dir.

Kept free of Textual and torch so the rules can be tested on their own and
the settings panel, the REPL's slash commands and the loader share them.
Every value goes through :func:`parse_value`, whether it came from the file
or from an input box, so a bad value is refused the same way everywhere.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

from gpt_tui import paths
from gpt_tui.errors import UserError

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    tomllib = None  # type: ignore[assignment]

SETTINGS_FILE = "settings.toml"
DEFAULT_THEME = "gpt-tui-dark"
# Kept in step with gpt_tui.engine.model.PRESETS (a test checks it); listed here
# so the app can offer the choice without importing torch.
MODEL_PRESETS = ("tiny", "mini", "gpt2-small", "gpt2-medium", "gpt2-large", "gpt2-xl")
OFF_WORDS = ("", "off", "none")


@dataclass(frozen=True)
class TrainingSettings:
    """What Start trains. The defaults make the tiny model's loss fall within seconds on a laptop CPU."""

    device: str = "auto"
    model: str = "tiny"
    data: str = ""  # empty: the built-in corpus
    context_length: int | None = 64
    batch_size: int = 4
    epochs: int = 10
    max_steps: int | None = None
    lr: float = 1e-3
    min_lr: float | None = 1e-4
    warmup_steps: int = 10
    weight_decay: float = 0.1
    grad_clip: float | None = 1.0
    grad_accum: int = 1
    eval_freq: int = 10
    eval_iter: int = 2
    train_ratio: float = 0.9
    start_context: str = "Every effort moves you"
    sample_tokens: int = 30
    seed: int = 123
    checkpoint_every: int = 0
    precision: str = "auto"


@dataclass(frozen=True)
class SamplingSettings:
    """How the REPL picks tokens; slash commands change the copy in force, the panel the saved default."""

    max_new_tokens: int = 60
    temperature: float = 0.8
    top_k: int | None = 40
    top_p: float | None = None
    seed: int | None = None
    num_beams: int = 1


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

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"


def _check_corpus(value: str) -> None:
    if not value or value.startswith("builtin:"):
        return
    file = paths.expand_user(value)
    if not file.is_file():
        raise UserError(f"corpus file {value!r} does not exist; give a UTF-8 text file, or leave it empty for the built-in corpus.")


def _check_device(value: str) -> None:
    name = value.strip().lower()
    if name in ("auto", "cpu", "cuda", "mps") or (name.startswith("cuda:") and name[5:].isdigit()):
        return
    raise UserError(f"device {value!r} is not one of auto, cpu, cuda, cuda:N, mps.")


TRAINING_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("training", "device", "Device", str, check=_check_device, help="auto picks cuda, then mps, then cpu"),
    FieldSpec("training", "model", "Model preset", str, choices=MODEL_PRESETS),
    FieldSpec("training", "data", "Corpus file", str, check=_check_corpus, help="a UTF-8 text file; empty: built-in Python docs", placeholder="built-in: python-docs"),
    FieldSpec("training", "context_length", "Context length", int, optional=True, minimum=2, maximum=1024, help="tokens per window; off: the preset's"),
    FieldSpec("training", "batch_size", "Batch size", int, minimum=1, maximum=4096),
    FieldSpec("training", "epochs", "Epochs", int, minimum=1, maximum=100_000),
    FieldSpec("training", "max_steps", "Max steps", int, optional=True, minimum=1, help="overrides epochs; off: run all epochs"),
    FieldSpec("training", "lr", "Learning rate", float, above=0, maximum=1.0),
    FieldSpec("training", "min_lr", "Min learning rate", float, optional=True, minimum=0, maximum=1.0, help="cosine decay floor; off: constant lr"),
    FieldSpec("training", "warmup_steps", "Warmup steps", int, minimum=0),
    FieldSpec("training", "weight_decay", "Weight decay", float, minimum=0, maximum=10.0),
    FieldSpec("training", "grad_clip", "Gradient clip", float, optional=True, minimum=0, help="max global norm; off: no clipping"),
    FieldSpec("training", "grad_accum", "Grad accumulation", int, minimum=1, maximum=1024),
    FieldSpec("training", "eval_freq", "Eval every (steps)", int, minimum=1),
    FieldSpec("training", "eval_iter", "Eval batches", int, minimum=1, maximum=10_000),
    FieldSpec("training", "train_ratio", "Train ratio", float, above=0, below=1),
    FieldSpec("training", "start_context", "Start context", str, help="prompt for the sample after each epoch"),
    FieldSpec("training", "sample_tokens", "Sample tokens", int, minimum=0, maximum=10_000),
    FieldSpec("training", "seed", "Seed", int, minimum=0, maximum=2**63 - 1),
    FieldSpec("training", "checkpoint_every", "Checkpoint every", int, minimum=0, help="steps; 0: only at the end"),
    FieldSpec("training", "precision", "Precision", str, choices=("auto", "fp32", "bf16"), help="auto: bf16 where the hardware is fast at it"),
)

SAMPLING_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("sampling", "max_new_tokens", "Max new tokens", int, minimum=1, maximum=100_000),
    FieldSpec("sampling", "temperature", "Temperature", float, minimum=0, maximum=100.0, help="0 is greedy"),
    FieldSpec("sampling", "top_k", "Top-k", int, optional=True, minimum=1, maximum=50257, help="off: every token"),
    FieldSpec("sampling", "top_p", "Top-p", float, optional=True, above=0, maximum=1.0, help="off: every token"),
    FieldSpec("sampling", "seed", "Seed", int, optional=True, minimum=0, maximum=2**63 - 1, help="off: a new seed per reply"),
    FieldSpec("sampling", "num_beams", "Beams", int, minimum=1, maximum=64, help="more than 1 needs temperature 0"),
)

APP_FIELDS: tuple[FieldSpec, ...] = (FieldSpec("app", "theme", "Theme", str),)

ALL_FIELDS: dict[str, FieldSpec] = {spec.key: spec for spec in TRAINING_FIELDS + SAMPLING_FIELDS + APP_FIELDS}


def field_spec(section: str, name: str) -> FieldSpec:
    try:
        return ALL_FIELDS[f"{section}.{name}"]
    except KeyError:
        raise UserError(f"Unknown setting {section}.{name}.") from None


def _describe_range(spec: FieldSpec) -> str:
    parts = []
    if spec.minimum is not None:
        parts.append(f">= {spec.minimum:g}")
    if spec.above is not None:
        parts.append(f"> {spec.above:g}")
    if spec.maximum is not None:
        parts.append(f"<= {spec.maximum:g}")
    if spec.below is not None:
        parts.append(f"< {spec.below:g}")
    return " and ".join(parts)


def parse_value(spec: FieldSpec, raw: Any) -> Any:
    """The typed value of ``raw`` (text from an input box, or a TOML value) or a UserError saying why not."""
    label = spec.label
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
            raise UserError(f"{label} must be a number{hint} (e.g. 4e-4), got {raw!r}.") from None
        if not math.isfinite(value):
            raise UserError(f"{label} must be a finite number, got {raw!r}.")
    bad = (
        (spec.minimum is not None and value < spec.minimum)
        or (spec.maximum is not None and value > spec.maximum)
        or (spec.above is not None and value <= spec.above)
        or (spec.below is not None and value >= spec.below)
    )
    if bad:
        raise UserError(f"{label} must be {_describe_range(spec)}, got {raw!r}.")
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


def check_training(training: TrainingSettings) -> None:
    """Rules that tie two training fields together; raises UserError naming both."""
    if training.min_lr is not None and training.min_lr > training.lr:
        raise UserError(f"Min learning rate ({training.min_lr:g}) must not exceed the learning rate ({training.lr:g}).")


def check_sampling(sampling: SamplingSettings) -> None:
    if sampling.num_beams > 1 and sampling.temperature > 0:
        raise UserError("Beam search needs temperature 0: set Beams to 1 to sample, or Temperature to 0.")


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
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(settings_to_toml(settings))
        os.replace(tmp, path)
    except OSError as exc:
        raise UserError(f"Cannot save settings to {path}: {exc.strerror or exc}; check the config directory's permissions.") from None
    return path


def train_config_kwargs(training: TrainingSettings) -> dict[str, Any]:
    """Keyword arguments for the engine's TrainConfig (built where torch may be imported)."""
    return {
        "data": training.data or None,
        "model": training.model,
        "context_length": training.context_length,
        "batch_size": training.batch_size,
        "epochs": training.epochs,
        "max_steps": training.max_steps,
        "lr": training.lr,
        "min_lr": training.min_lr,
        "warmup_steps": training.warmup_steps,
        "weight_decay": training.weight_decay,
        "grad_clip": training.grad_clip,
        "grad_accum": training.grad_accum,
        "eval_freq": training.eval_freq,
        "eval_iter": training.eval_iter,
        "train_ratio": training.train_ratio,
        "start_context": training.start_context,
        "sample_tokens": training.sample_tokens,
        "seed": training.seed,
        "device": training.device,
        "checkpoint_every": training.checkpoint_every,
        "precision": training.precision,
    }


def sampling_config_kwargs(sampling: SamplingSettings) -> dict[str, Any]:
    """Keyword arguments for the engine's SamplingConfig."""
    return {
        "max_new_tokens": sampling.max_new_tokens,
        "temperature": sampling.temperature,
        "top_k": sampling.top_k,
        "top_p": sampling.top_p,
        "seed": sampling.seed,
        "num_beams": sampling.num_beams,
    }


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
    return " · ".join(parts)
