"""The corpus being tokenized, on one updating line of a terminal's stderr: files, MB/s, tokens, ETA.

Only a terminal gets it (a log file would fill with carriage returns), and
only when some part is really tokenized: a corpus read back from the cache
says nothing, as before.
"""

from __future__ import annotations

import sys
from typing import TextIO

from gpt_tui.cli import console
from gpt_tui.engine.events import TokenizeProgress


class TokenizeLine:
    """Call with each TokenizeProgress; the last one (``done``) ends the line."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr

    @property
    def active(self) -> bool:
        try:
            return self._stream.isatty()
        except (AttributeError, ValueError):
            return False

    def __call__(self, progress: TokenizeProgress) -> None:
        if not progress.bytes_total or not self.active:
            return
        end = "\n" if progress.done else ""
        console.write(self._stream, f"\r{progress.line()}\033[K{end}")
