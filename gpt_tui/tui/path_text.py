"""A file path drawn on lines of its own, broken after a separator rather than in the middle of a name.

Rich wraps text at spaces and folds a long word wherever the line ends, which
cuts a path like ``runs/…/step-00000120.safetensors`` mid-name. Here a path is
packed onto lines at its "/" (or "\\") boundaries for the width the widget has
now; only a single name longer than the whole line is folded.
"""

from __future__ import annotations

import re

from rich.text import Text
from textual.geometry import Size
from textual.widget import Widget

from gpt_tui.textsafe import visible

_PARTS = re.compile(r"[^/\\]*[/\\]|[^/\\]+")  # each name with the separator that ends it


def wrap_path(path: str, width: int) -> list[str]:
    """``path`` as lines of at most ``width`` characters, broken after separators where it can be."""
    width = max(1, width)
    lines: list[str] = []
    line = ""
    for part in _PARTS.findall(path):
        if len(line) + len(part) <= width:
            line += part
            continue
        if line:
            lines.append(line)
        while len(part) > width:  # one name wider than the line: folded, the only way it fits
            lines.append(part[:width])
            part = part[width:]
        line = part
    if line or not lines:
        lines.append(line)
    return lines


class PathText(Widget):
    """A path (shown with control characters made visible), wrapped on its separators."""

    DEFAULT_CSS = "PathText { height: auto; }"

    def __init__(self, path: str, *, style: str = "bold", id: str | None = None) -> None:
        super().__init__(id=id)
        self.path = visible(path)
        self.path_style = style

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return len(self.path)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(wrap_path(self.path, width))

    def render(self) -> Text:
        lines = wrap_path(self.path, self.content_size.width or len(self.path))
        return Text("\n".join(lines), style=self.path_style, no_wrap=True, overflow="crop")
