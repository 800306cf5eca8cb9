"""How to pick each next token: the settings of a generation call and their limits.

Torch-free, so the app's settings form and the CLI parser can build and check
a ``SamplingConfig`` without loading the model stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from gpt_tui.engine.options import NO_FLAG, Rule, check_all, check_rules, option
from gpt_tui.errors import UserError

MAX_NEW_TOKENS = 100_000
MAX_BEAMS = 64


QUANTIZE_CHOICES = ("none", "int8")
MAX_SEED = 2**63 - 1
GPT2_VOCAB = 50257  # the form's bound for top-k; a model's own vocabulary bounds it in validate


@dataclass(frozen=True)
class SamplingConfig:
    """How to pick each next token; ``validate`` checks it against a model's vocabulary.

    Each field declares its option once (gpt_tui.engine.options); the app's
    defaults differ where the REPL samples while a script wants greedy text.
    """

    max_new_tokens: int = option(
        50, int, minimum=1, maximum=MAX_NEW_TOKENS, app_default=60, label="Max new tokens",
        slash="max", slash_order=4, slash_help=("/max N", "most new tokens per reply"),
        refusal=f"max_new_tokens must be a whole number from 1 to {MAX_NEW_TOKENS}, got {{value!r}}.",
    )
    temperature: float = option(  # 0 = greedy
        0.0, float, "0 is greedy", minimum=0, app_default=0.8, label="Temperature", form_help="0 is greedy",
        slash="temp", slash_order=1, slash_help=("/temp X", "temperature; 0 is greedy"),
        refusal="temperature must be 0 (greedy) or a positive number, got {value!r}.",
    )
    top_k: int | None = option(
        None, int, optional=True, minimum=1, maximum=GPT2_VOCAB, app_default=40, label="Top-k",
        form_help="off: every token", slash="topk", slash_order=2, slash_help=("/topk N|off", "keep the N most likely tokens"),
        refusal="top_k must be a whole number from 1 to the vocabulary size {maximum}, got {value!r}; "
        "leave it unset to keep every token.",
    )
    top_p: float | None = option(
        None, float, optional=True, above=0, maximum=1.0, label="Top-p", form_help="off: every token", example="0.9",
        slash="topp", slash_order=3, slash_help=("/topp P|off", "keep the smallest set of tokens with probability mass P"),
        refusal="top_p must be in (0, 1], got {value!r}; 1 (or unset) keeps every token.",
    )
    eos_id: int | None = option(None, int, optional=True, flag=NO_FLAG)  # `generate --eos`; checked in validate
    stop_strings: tuple[str, ...] = field(default=())  # `generate --stop`, repeatable
    seed: int | None = option(
        None, int, optional=True, minimum=0, maximum=MAX_SEED, label="Seed", form_help="off: a new seed per reply",
        slash="seed", slash_order=5, slash_help=("/seed N|off", "fixed seed for reproducible replies; off: a new one each time"),
        refusal="seed must be a whole number from 0 to 2**63 - 1, got {value!r}.",
    )
    num_beams: int = option(
        1, int, minimum=1, maximum=MAX_BEAMS, label="Beams", form_help="more than 1 needs temperature 0",
        slash="beams", slash_order=6, slash_help=("/beams N", "beam search with N beams (needs /temp 0)"),
        refusal=f"num_beams must be a whole number from 1 to {MAX_BEAMS}, got {{value!r}}; 1 means no beam search.",
    )
    length_penalty: float = option(
        1.0, float, refusal="length_penalty must be a finite number, got {value!r}.",
    )
    quantize: str = option(  # int8: weight-only int8 copy of the model for decoding (gpt_tui.engine.quantize)
        "none", str, "decode with int8 weights (none: the model's own weights)", choices=QUANTIZE_CHOICES,
        label="Quantize", form_help="int8: about half the bytes per token of bf16",
        slash="quant", slash_order=7, slash_help=("/quant none|int8", "decode with int8 weights"),
    )

    def __post_init__(self) -> None:
        # A bare string would otherwise become a tuple of single characters.
        stops = self.stop_strings
        if isinstance(stops, str):
            stops = (stops,)
        object.__setattr__(self, "stop_strings", tuple(stops))

    def with_(self, **changes: Any) -> "SamplingConfig":
        return replace(self, **changes)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def validate(self, vocab_size: int) -> None:
        """Raise UserError naming the first setting that cannot work."""
        e = self.eos_id
        if e is not None and (not _is_int(e) or not 0 <= e < vocab_size):
            raise UserError(f"eos_id must be a token id from 0 to {vocab_size - 1}, got {e!r}.")
        check_all(self, {"top_k": vocab_size})
        for stop in self.stop_strings:
            if not isinstance(stop, str) or not stop:
                raise UserError(f"Stop strings must be non-empty text, got {stop!r}; remove the empty entry.")
        check_rules(self, SAMPLING_RULES)


def _beams_need_greedy(config: Any) -> str | None:
    if config.num_beams > 1 and config.temperature > 0:
        return (
            "Beam search is deterministic and does not sample: set temperature to 0 to use "
            f"{config.num_beams} beams, or set num_beams to 1 to sample."
        )
    return None


# Rules that tie two options together; the app phrases them with its labels.
SAMPLING_RULES: tuple[Rule, ...] = (
    Rule(("num_beams", "temperature"), _beams_need_greedy,
         "Beam search needs temperature 0: set Beams to 1 to sample, or Temperature to 0.",
         {"num_beams": "Beam search does not sample: set /temp 0 first, then /beams.",
          "temperature": "Beam search is on and does not sample: set /beams 1 first to use a temperature."}),
)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
