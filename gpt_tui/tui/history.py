"""The REPL's prompt history: up/down recall, kept in the config dir across launches."""

from __future__ import annotations

from pathlib import Path

from gpt_tui import fileio, paths

HISTORY_FILE = "history.txt"
MAX_ENTRIES = 500


def history_path() -> Path:
    return paths.config_dir() / HISTORY_FILE


def _escape(line: str) -> str:
    return line.replace("\\", "\\\\").replace("\n", "\\n")


def _unescape(line: str) -> str:
    out: list[str] = []
    chars = iter(line)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            out.append("\n" if nxt == "n" else nxt)
        else:
            out.append(ch)
    return "".join(out)


class PromptHistory:
    """Entries oldest first, and a cursor that walks them like a shell does.

    The cursor sits past the newest entry until the user presses up; what
    they had typed is kept as a draft and comes back when they walk past
    the newest entry again.
    """

    def __init__(self, path: Path | None = None, limit: int = MAX_ENTRIES) -> None:
        self.path = path
        self.limit = limit
        self.entries: list[str] = []
        self._cursor = 0
        self._draft = ""
        if path is not None:
            self.entries = self._read(path)[-limit:]
        self._cursor = len(self.entries)

    @staticmethod
    def _read(path: Path) -> list[str]:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        return [_unescape(line) for line in text.splitlines() if line.strip()]

    def add(self, entry: str) -> None:
        """Remember a submitted prompt (a repeat of the newest one is not stored twice)."""
        if entry.strip() and (not self.entries or self.entries[-1] != entry):
            self.entries.append(entry)
            del self.entries[: -self.limit]
            self.save()
        self._cursor = len(self.entries)
        self._draft = ""

    def previous(self, current: str) -> str | None:
        """The entry before the cursor, or None at the oldest."""
        if not self.entries or self._cursor == 0:
            return None
        if self._cursor == len(self.entries):
            self._draft = current
        self._cursor -= 1
        return self.entries[self._cursor]

    def next(self) -> str | None:
        """The entry after the cursor, the draft past the newest, or None when already there."""
        if self._cursor >= len(self.entries):
            return None
        self._cursor += 1
        if self._cursor == len(self.entries):
            return self._draft
        return self.entries[self._cursor]

    def save(self) -> None:
        """Best effort: a read-only config dir loses history, never the session."""
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fileio.atomic_write_text(self.path, "".join(_escape(e) + "\n" for e in self.entries))
        except OSError:
            pass
