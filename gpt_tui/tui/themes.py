"""Themes as TOML files: the ones shipped in ``themes/`` and a user's own in the config dir.

A theme file holds the colours Textual's ``Theme`` takes, an optional
``[variables]`` table of design tokens and a ``[chart]`` table of line
colours. A file that cannot be read becomes a message, never an exception,
so one broken file cannot keep the app from starting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from textual.color import Color, ColorParseError
from textual.theme import Theme

from gpt_tui import paths
from gpt_tui.errors import UserError
from gpt_tui.tui.chart_data import THEMED_CHART_KEYS

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    tomllib = None  # type: ignore[assignment]

THEME_SUFFIX = ".toml"
COLOR_KEYS = ("primary", "secondary", "accent", "warning", "error", "success", "foreground", "background", "surface", "panel", "boost")
CHART_KEYS = THEMED_CHART_KEYS
CHART_VARIABLE_PREFIX = "chart-"
_KNOWN_KEYS = set(COLOR_KEYS) | {"name", "dark", "variables", "chart", "luminosity_spread", "text_alpha"}


@dataclass
class ThemeCatalog:
    """Every theme found, and a message for every file that was refused."""

    themes: dict[str, Theme] = field(default_factory=dict)
    sources: dict[str, Path] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def shipped_theme_dir() -> Path:
    """The package's themes: installed as ``gpt_tui.themes``, or ``themes/`` next to a source checkout."""
    try:
        found = resources.files("gpt_tui.themes")
        path = Path(str(found))
        if path.is_dir():
            return path
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[2] / "themes"


def user_theme_dir() -> Path:
    return paths.config_dir() / "themes"


def _color(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise UserError(f"{where} must be a colour such as \"#1e90ff\", got {value!r}.")
    try:
        Color.parse(value)
    except ColorParseError:
        raise UserError(f"{where} is not a colour Textual understands: {value!r} (use \"#rrggbb\" or a colour name).") from None
    return value


def theme_from_dict(data: dict[str, Any], source: str) -> Theme:
    """A Theme from a parsed theme file; raises UserError naming the file and the bad entry."""
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"{source}: a theme needs name = \"...\".")
    name = name.strip()
    unknown = sorted(set(data) - _KNOWN_KEYS)
    if unknown:
        raise UserError(f"{source}: unknown key(s) {', '.join(unknown)}; a theme takes {', '.join(COLOR_KEYS)}, dark, [variables] and [chart].")
    if "primary" not in data:
        raise UserError(f"{source}: a theme needs at least primary = \"#rrggbb\".")
    colors = {key: _color(data[key], f"{source}: {key}") for key in COLOR_KEYS if key in data}
    dark = data.get("dark", True)
    if not isinstance(dark, bool):
        raise UserError(f"{source}: dark must be true or false, got {dark!r}.")
    variables_table = data.get("variables", {})
    if not isinstance(variables_table, dict) or not all(isinstance(v, str) for v in variables_table.values()):
        raise UserError(f"{source}: [variables] must map names to text values.")
    variables = {str(k): v for k, v in variables_table.items()}
    chart = data.get("chart", {})
    if not isinstance(chart, dict):
        raise UserError(f"{source}: [chart] must be a table of train, val and lr colours.")
    for key, value in chart.items():
        if key not in CHART_KEYS:
            raise UserError(f"{source}: [chart] takes {', '.join(CHART_KEYS)}, not {key!r}.")
        variables[CHART_VARIABLE_PREFIX + key] = _color(value, f"{source}: chart.{key}")
    extra: dict[str, float] = {}
    for key in ("luminosity_spread", "text_alpha"):
        if key in data:
            value = data[key]
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
                raise UserError(f"{source}: {key} must be a number from 0 to 1, got {value!r}.")
            extra[key] = float(value)
    theme = Theme(name=name, dark=dark, variables=variables, **colors, **extra)
    try:
        theme.to_color_system()
    except Exception as exc:  # a colour combination Textual cannot build a palette from
        raise UserError(f"{source}: Textual cannot build a palette from it ({exc}).") from None
    return theme


def load_theme_file(path: Path) -> Theme:
    if tomllib is None:  # pragma: no cover
        raise UserError("Theme files need Python 3.11 (tomllib).")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"Cannot read theme {path.name}: {exc}.") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"Theme {path.name} is not valid TOML: {exc}.") from None
    return theme_from_dict(data, path.name)


def _theme_files(folder: Path) -> Iterable[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.suffix == THEME_SUFFIX and p.is_file())
    except OSError:
        return []


def load_themes(shipped: Path | None = None, user: Path | None = None) -> ThemeCatalog:
    """Shipped themes first, then the user's (a user theme with a shipped name replaces it)."""
    catalog = ThemeCatalog()
    for folder, is_user in ((shipped or shipped_theme_dir(), False), (user or user_theme_dir(), True)):
        for path in _theme_files(folder):
            try:
                theme = load_theme_file(path)
            except UserError as exc:
                where = "your theme" if is_user else "shipped theme"
                catalog.problems.append(f"Skipped {where}: {exc}")
                continue
            catalog.themes[theme.name] = theme
            catalog.sources[theme.name] = path
    return catalog


def chart_color(variables: dict[str, str], key: str, fallback: tuple[int, int, int]) -> tuple[int, int, int]:
    """A chart line colour as the RGB triple plotext takes."""
    value = variables.get(CHART_VARIABLE_PREFIX + key)
    if value:
        try:
            return Color.parse(value).rgb
        except ColorParseError:
            pass
    return fallback
