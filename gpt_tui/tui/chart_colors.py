"""The chart's colours, derived from the active theme and kept readable on the chart's background.

A theme names colours for its widgets, not for thin braille lines: a light
theme's primary or warning colour can sit at 1.5:1 against its surface. Every
colour the chart draws (each curve, the tick labels) is therefore moved
towards black or white until it has at least ``MIN_CONTRAST`` against the
background, both as the terminal's true colour and as the nearest of the 256
colours a terminal without true colour shows (Rich's downgrade, which is what
the app's output goes through).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from rich.color import Color as RichColor
from rich.color import ColorSystem
from textual.color import Color, ColorParseError

from gpt_tui.tui.chart_data import LineColor
from gpt_tui.tui.themes import CHART_VARIABLE_PREFIX, chart_color

RGB = tuple[int, int, int]
MIN_CONTRAST = 3.0  # WCAG's minimum for graphical objects
# A curve drawn at full strength; a faint one (raw steps under the smoothed line) keeps only the minimum.
STRONG_CONTRAST = 4.5
STRONG_STEP = 1.0  # how much more contrast a smoothed line has than the faint points under it
FAINT_MARGIN = 0.3  # faint colours stay this far above the minimum, for rounding in the terminal
BACKGROUND_VARIABLE = "surface"  # what textual-plotext paints the canvas with
LABEL_VARIABLE = "foreground"
_THEME_COLORS = frozenset({"primary", "secondary", "accent", "warning", "error", "success", "foreground"})


def luminance(rgb: RGB) -> float:
    """WCAG relative luminance of an sRGB colour."""

    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: RGB, b: RGB) -> float:
    """WCAG contrast ratio, from 1 (same) to 21 (black on white)."""
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def in_256_colors(rgb: RGB) -> RGB:
    """The colour a 256-colour terminal shows for ``rgb``."""
    triplet = RichColor.from_rgb(*rgb).downgrade(ColorSystem.EIGHT_BIT).get_truecolor()
    return (triplet.red, triplet.green, triplet.blue)


def worst_contrast(color: RGB, background: RGB) -> float:
    """The lower of the true-colour and the 256-colour contrast."""
    return min(contrast(color, background), contrast(in_256_colors(color), in_256_colors(background)))


def _mix(a: RGB, b: RGB, share_of_b: float) -> RGB:
    return tuple(round(x + (y - x) * share_of_b) for x, y in zip(a, b))  # type: ignore[return-value]


@lru_cache(maxsize=512)
def readable(color: RGB, background: RGB, minimum: float = MIN_CONTRAST) -> RGB:
    """``color`` itself when it is readable on ``background``, else the least change towards black or white that is."""
    if worst_contrast(color, background) >= minimum:
        return color
    black, white = (0, 0, 0), (255, 255, 255)
    target = black if contrast(black, background) >= contrast(white, background) else white
    for step in range(1, 21):
        moved = _mix(color, target, step / 20)
        if worst_contrast(moved, background) >= minimum:
            return moved
    return target


@lru_cache(maxsize=512)
def faint(color: RGB, background: RGB) -> RGB:
    """``color`` mixed towards the background as far as it stays readable: points under a stronger line."""
    floor = MIN_CONTRAST + FAINT_MARGIN
    base = readable(color, background, floor)
    best = base
    for step in range(1, 20):
        mixed = _mix(base, background, step / 20)
        if worst_contrast(mixed, background) < floor:
            break
        best = mixed
    return best


def _variable(variables: dict[str, str], name: str) -> RGB | None:
    value = variables.get(name)
    if not value:
        return None
    try:
        return Color.parse(value).rgb
    except ColorParseError:
        return None


@dataclass(frozen=True)
class ChartPalette:
    """Every colour one chart frame is drawn with, for one theme."""

    background: RGB
    labels: RGB
    variables: tuple[tuple[str, str], ...]

    def line(self, color: LineColor, *, strength: str = "normal") -> RGB:
        """A curve's colour: the theme's ``[chart]`` entry, else the theme colour the curve follows, made readable.

        ``strength`` is "normal", "strong" (a smoothed line over faint points) or "faint".
        """
        variables = dict(self.variables)
        wanted = chart_color(variables, color.key, _variable(variables, color.theme_color) or color.fallback)
        if strength == "faint":
            return faint(wanted, self.background)
        if strength == "strong":  # clearly above the faint points drawn in the same hue
            floor = worst_contrast(faint(wanted, self.background), self.background) + STRONG_STEP
            return readable(wanted, self.background, max(STRONG_CONTRAST, floor))
        return readable(wanted, self.background, MIN_CONTRAST)


def chart_palette(variables: dict[str, str]) -> ChartPalette:
    """The chart's colours for a theme's variables (``App.theme_variables``)."""
    background = _variable(variables, BACKGROUND_VARIABLE) or (0, 0, 0)
    labels = readable(_variable(variables, LABEL_VARIABLE) or (255, 255, 255), background, STRONG_CONTRAST)
    kept = tuple(sorted((k, v) for k, v in variables.items() if k.startswith(CHART_VARIABLE_PREFIX) or k in _THEME_COLORS))
    return ChartPalette(background, labels, kept)

