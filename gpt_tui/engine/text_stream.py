"""From a stream of token ids to text: whole UTF-8 characters, stop strings, and speed figures.

Stop strings are text, so they are honoured here and not by the token streams.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpt_tui.engine.sampling_config import SamplingConfig
from gpt_tui.engine.tokenizer import get_tokenizer

if TYPE_CHECKING:  # only for hints: the text layer itself never touches a tensor's data
    import torch


@dataclass
class GenerationStats:
    """Filled in by :func:`stream_text` while it runs, for a status line."""

    prompt_tokens: int = 0
    new_tokens: int = 0
    time_to_first_token_s: float | None = None
    elapsed_s: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        """New tokens per second over the whole call, prefill included."""
        return self.new_tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        """Tokens per second after the first one: the steady decoding speed."""
        if self.time_to_first_token_s is None or self.new_tokens < 2:
            return 0.0
        span = self.elapsed_s - self.time_to_first_token_s
        return (self.new_tokens - 1) / span if span > 0 else 0.0


class StopStringFilter:
    """Passes text through, holding back any tail that could still grow into a stop string."""

    def __init__(self, stop_strings: tuple[str, ...]) -> None:
        self.stop_strings = stop_strings
        self.held = ""

    def push(self, text: str) -> tuple[str, bool]:
        """Text safe to show now, and whether a stop string was reached."""
        buffer = self.held + text
        hits = [i for i in (buffer.find(stop) for stop in self.stop_strings) if i >= 0]
        if hits:
            self.held = ""
            return buffer[: min(hits)], True
        keep = 0
        for stop in self.stop_strings:
            for size in range(min(len(stop) - 1, len(buffer)), keep, -1):
                if buffer.endswith(stop[:size]):
                    keep = size
                    break
        cut = len(buffer) - keep
        self.held = buffer[cut:]
        return buffer[:cut], False

    def flush(self, text: str = "") -> str:
        shown, _ = self.push(text)
        shown += self.held
        self.held = ""
        return shown


def text_pieces(
    tokens: Iterator[torch.Tensor], sampling: SamplingConfig, stats: GenerationStats | None
) -> Iterator[str]:
    """Whole characters of a batch-of-one token stream, up to eos or a stop string (neither shown).

    Bytes of a character split across tokens are held until it is complete;
    ``stats``, when given, is filled in as tokens arrive. Closing the pieces
    once they have started closes ``tokens`` too (how a UI cancels).
    """
    tokenizer = get_tokenizer()
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
    stopper = StopStringFilter(sampling.stop_strings)
    started = time.perf_counter()
    try:
        for step in tokens:
            token = int(step[0])
            if stats is not None:
                now = time.perf_counter() - started
                if stats.time_to_first_token_s is None:
                    stats.time_to_first_token_s = now
                stats.new_tokens += 1
                stats.elapsed_s = now
            if sampling.eos_id is not None and token == sampling.eos_id:
                break
            try:
                piece_bytes = tokenizer.decode_single_token_bytes(token)
            except KeyError:  # an id past the tokenizer's table (a padded vocabulary)
                continue
            piece, stopped = stopper.push(utf8.decode(piece_bytes))
            if piece:
                yield piece
            if stopped:
                return
        tail = stopper.flush(utf8.decode(b"", final=True))
        if tail:
            yield tail
    finally:
        tokens.close()  # type: ignore[attr-defined]
        if stats is not None:
            stats.elapsed_s = time.perf_counter() - started
