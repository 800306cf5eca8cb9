"""One exception type for every problem the user can fix.

The CLI prints its message as one line and exits non-zero; the app shows it
in a dialog. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A problem with the user's input, files or machine, with a message that says what to do."""


class Notice(UserWarning):
    """Something the user should hear that does not stop the work (a damaged cache entry, rebuilt).

    Raised with ``warnings.warn``, so the engine says it without knowing who
    listens; the CLI prints it as one ``gpt-tui: note:`` line.
    """


class UnconfirmedCorpus(UserError):
    """A checkpoint from elsewhere names ``corpus`` as its training text: read only once the user says so.

    The CLI asks for --data; the app asks in a dialog and continues with it.
    """

    def __init__(self, message: str, corpus: str) -> None:
        super().__init__(message)
        self.corpus = corpus


class AlreadyExistsError(UserError):
    """Refused because it would replace ``path``: the app asks and tries again, the CLI wants --force."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path
