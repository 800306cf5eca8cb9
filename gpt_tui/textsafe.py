"""Text from a model, a file name or a file, made safe to print or draw.

Such text can hold terminal escapes: OSC 0 retitles the window, OSC 52 writes
the clipboard, CSI sequences clear the screen or recolour it, and bidi
overrides make a line read differently from what it holds. Every control and
format character is written out as a visible escape (``\\x1b``, ``\\u202e``),
one character at a time, so a sequence split across the chunks of a streamed
reply is neutralised just the same: no state is carried from one chunk to the
next. Torch-free and Textual-free: the CLI, the engine's callers and the app
all use it.
"""

from __future__ import annotations

import unicodedata

SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
UNSAFE_CATEGORIES = ("Cc", "Cf", "Cs", "Zl", "Zp")  # controls, format (bidi), lone surrogates, line separators
PROSE_KEEPS = frozenset("\n\t\u200c\u200d")  # layout a reply needs, and the joiners that build emoji and scripts


def _escape(ch: str) -> str:
    code = ord(ch)
    return SHORT_ESCAPES.get(ch) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def _unsafe(ch: str) -> bool:
    return unicodedata.category(ch) in UNSAFE_CATEGORIES


def visible(text: object) -> str:
    """``text`` on one line, every control and format character (tabs and newlines too) written as an escape.

    For names and values: a file or run name, a path, a word read from a file.
    """
    return "".join(_escape(ch) if _unsafe(ch) else ch for ch in str(text))


def printable(text: object) -> str:
    """``text`` as prose: newlines, tabs and CR LF line ends kept, every other control or format character escaped.

    For a model's reply or sample and for messages that quote a file. A CR
    that does not end a line would move the cursor back over what was shown,
    so it is escaped; one at the very end of a chunk is too (the LF after it
    may only come with the next chunk, and a visible ``\\r`` is the safe side).
    """
    s = str(text)
    out = []
    for i, ch in enumerate(s):
        if ch == "\r" and s[i + 1: i + 2] == "\n":
            out.append(ch)
        elif ch in PROSE_KEEPS or not _unsafe(ch):
            out.append(ch)
        else:
            out.append(_escape(ch))
    return "".join(out)
