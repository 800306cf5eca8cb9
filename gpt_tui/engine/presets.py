"""The named model sizes, as plain data, so that a form or a parser can list them without torch.

Each preset gives the fields of ``model.GPTConfig`` that differ from its
defaults (GPT-2's vocabulary and 1024-token context, dropout 0.1, no q/k/v
bias, untied head). The four GPT-2 sizes use the book's from-scratch
settings; imported OpenAI weights set bias and tying from the files.
"""

from __future__ import annotations

from gpt_tui.errors import UserError

MAX_CONTEXT = 1024  # rows of GPT-2's position table

PRESET_SIZES: dict[str, dict[str, int | float]] = {
    "tiny": {"context_length": 128, "emb_dim": 128, "n_layers": 2, "n_heads": 4, "drop_rate": 0.0},
    "mini": {"context_length": 256, "emb_dim": 256, "n_layers": 4, "n_heads": 4, "drop_rate": 0.1},
    "gpt2-small": {"emb_dim": 768, "n_layers": 12, "n_heads": 12},
    "gpt2-medium": {"emb_dim": 1024, "n_layers": 24, "n_heads": 16},
    "gpt2-large": {"emb_dim": 1280, "n_layers": 36, "n_heads": 20},
    "gpt2-xl": {"emb_dim": 1600, "n_layers": 48, "n_heads": 25},
}
PRESET_NAMES: tuple[str, ...] = tuple(PRESET_SIZES)
ALIASES: dict[str, str] = {
    "gpt2": "gpt2-small",
    "124M": "gpt2-small",
    "355M": "gpt2-medium",
    "774M": "gpt2-large",
    "1558M": "gpt2-xl",
}
DEFAULT_PRESET = "tiny"


def resolve_preset(name: str) -> str:
    """The preset's own name for ``name`` or one of its aliases; a UserError listing the choices otherwise."""
    key = ALIASES.get(name, name)
    if key not in PRESET_SIZES:
        choices = ", ".join(PRESET_NAMES + tuple(ALIASES))
        raise UserError(f"Unknown model preset {name!r}; choose one of: {choices}.")
    return key


def check_context_length(context_length: int) -> None:
    """Refuse a context longer than the position table a GPT-2 checkpoint can fill."""
    if not 1 <= context_length <= MAX_CONTEXT:
        raise UserError(
            f"context_length {context_length} is outside 1..{MAX_CONTEXT}, the most GPT-2's position table allows."
        )
