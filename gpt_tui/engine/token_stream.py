"""One token stream over many uint16 pieces: the cached parts of a corpus and the separators between them.

A corpus of thousands of files is thousands of memory-mapped token files; copying
them into one array would cost as much memory as the corpus. A ``TokenStream``
reads across them instead: a window inside one piece is a view of its memory
map, and only a window that crosses a boundary is copied (a few hundred ids).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


class TokenStream:
    """The concatenation of 1-D uint16 ``pieces``, read by token offset without joining them."""

    def __init__(self, pieces: Sequence[np.ndarray], *, _start: int = 0, _stop: int | None = None) -> None:
        self._pieces = [p for p in pieces if len(p)]
        for piece in self._pieces:
            if np.ndim(piece) != 1:
                raise ValueError(f"token pieces must be 1-D arrays, got shape {np.shape(piece)}")
        self._ends = np.cumsum([len(p) for p in self._pieces], dtype=np.int64)
        total = int(self._ends[-1]) if len(self._ends) else 0
        self._start = _start
        self._stop = total if _stop is None else _stop

    @classmethod
    def of(cls, tokens: "np.ndarray | TokenStream") -> "TokenStream":
        """``tokens`` as a stream (an array becomes a stream of one piece)."""
        return tokens if isinstance(tokens, TokenStream) else cls([np.asarray(tokens)])

    @property
    def pieces(self) -> int:
        return len(self._pieces)

    def __len__(self) -> int:
        return self._stop - self._start

    def _bounds(self, start: int, stop: int) -> tuple[int, int]:
        n = len(self)
        start, stop = max(0, min(start, n)), max(0, min(stop, n))
        return self._start + start, self._start + max(start, stop)

    def slice(self, start: int, stop: int) -> "TokenStream":
        """Tokens ``[start, stop)`` of this stream, as a stream over the same pieces (nothing copied)."""
        begin, end = self._bounds(start, stop)
        view = TokenStream.__new__(TokenStream)
        view._pieces, view._ends, view._start, view._stop = self._pieces, self._ends, begin, end
        return view

    def read(self, start: int, stop: int) -> np.ndarray:
        """Tokens ``[start, stop)``: a view when they lie in one piece, a copy when they cross pieces."""
        begin, end = self._bounds(start, stop)
        if begin == end:
            return np.empty(0, dtype=np.uint16)
        first = int(np.searchsorted(self._ends, begin, side="right"))
        offset = int(self._ends[first - 1]) if first else 0
        if end <= self._ends[first]:
            return self._pieces[first][begin - offset : end - offset]
        out = np.empty(end - begin, dtype=np.uint16)
        filled, index = 0, first
        while filled < len(out):
            piece_start = int(self._ends[index - 1]) if index else 0
            lo = begin + filled - piece_start
            chunk = self._pieces[index][lo : lo + len(out) - filled]
            out[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
            index += 1
        return out

    def gather(self, starts: np.ndarray, length: int) -> np.ndarray:
        """Rows of ``length`` tokens from each start, as one ``(len(starts), length)`` int64 array."""
        starts = np.asarray(starts, dtype=np.int64)
        if len(self._pieces) == 1:
            offsets = self._start + starts[:, None] + np.arange(length, dtype=np.int64)
            return np.asarray(self._pieces[0][offsets], dtype=np.int64)
        out = np.empty((len(starts), length), dtype=np.int64)
        for row, start in enumerate(starts.tolist()):
            out[row] = self.read(start, start + length)
        return out

    def as_array(self) -> np.ndarray:
        """The whole stream as one array: the memory map itself for a single piece; refused for several."""
        if len(self) == 0:
            return np.empty(0, dtype=np.uint16)
        if len(self._pieces) > 1:
            first = int(np.searchsorted(self._ends, self._start, side="right"))
            if self._stop <= self._ends[first]:
                return self.read(0, len(self))
            raise ValueError(
                f"this token stream spans {len(self._pieces)} token files; read it by window (read/slice), "
                "not as one array, so the corpus is never copied into memory whole"
            )
        whole = self._pieces[0]
        return whole if (self._start, self._stop) == (0, len(whole)) else whole[self._start : self._stop]

    def __repr__(self) -> str:
        return f"TokenStream({len(self):,} tokens in {len(self._pieces)} pieces)"
