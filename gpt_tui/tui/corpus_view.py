"""The line under the Corpus field that says what the chosen sources hold: parts, documents, tokens, cache.

Working it out reads every file once (to look it up in the token cache) and
may load a dataset, so it runs in a worker thread, a moment after typing
stops; an answer for sources typed since is dropped.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from gpt_tui.engine.options import split_values
from gpt_tui.textsafe import visible

SETTLE_S = 0.4  # typing pauses this long before the corpus is looked at


def sources_label(text: Any) -> str:
    """A short name for the sources in the Corpus box: the one file's name, or the first and a count; "" for none."""
    sources = split_values(text) if isinstance(text, str) else tuple(text or ())
    if not sources:
        return ""
    first = sources[0].rstrip("/").rpartition("/")[2] or sources[0]
    return first if len(sources) == 1 else f"{first} +{len(sources) - 1} more"


class CorpusView(Static):
    """What the sources typed in the Corpus field hold, worked out off the UI thread."""

    DEFAULT_CSS = """
    CorpusView { color: $text-muted; height: auto; padding-left: 22; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self.asked: str | None = None  # the sources the shown (or pending) answer is for
        self._timer: Any = None

    def look_at(self, text: str) -> None:
        """Summarize ``text`` (the Corpus box's value) once typing settles."""
        if text == self.asked:
            return
        self.asked = text
        if self._timer is not None:
            self._timer.stop()
        self.update(Text("looking at the corpus…"))
        self._timer = self.set_timer(SETTLE_S, lambda: self._start(text))

    def _start(self, text: str) -> None:
        ratio = getattr(getattr(self.app, "settings", None), "training", None)
        ratio = getattr(ratio, "train_ratio", 0.9)  # the saved one: the split a Start would make
        self.run_worker(lambda: self._work(text, ratio), thread=True, group="corpus-view", exclusive=True,
                        exit_on_error=False)

    def _work(self, text: str, train_ratio: float) -> None:
        from gpt_tui.engine.corpus_summary import summary_line  # reads files: never on the UI thread

        line = summary_line(split_values(text) or None, train_ratio=train_ratio)
        self.app.call_from_thread(self._show, text, line)

    def _show(self, text: str, line: str) -> None:
        if text == self.asked:
            self.update(Text(visible(line)))
