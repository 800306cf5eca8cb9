"""The one line a run prints before it starts: its recipe and the settings where gpt-tui and the book differ.

A reader comparing a log with the book's needs to see, at the top of it,
whether the run clips, how it decays, how it splits the text and how often
it evaluates; torch-free, so it costs the CLI nothing before the run starts.
"""

from __future__ import annotations

from gpt_tui.engine.train_options import TrainConfig


def _g(value: float | None, off: str) -> str:
    return off if not value else f"{value:g}"


def recipe_line(config: TrainConfig) -> str:
    """``Recipe gpt-tui: AdamW lr 0.0004, ...``: the values this run trains with."""
    if config.recipe == "book":
        return (
            f"Recipe book (the chapter-5 notebook's run): AdamW lr {config.lr:g}, weight decay {config.weight_decay:g} "
            f"on all parameters, no clipping, no warmup or decay; text split by characters at {config.train_ratio:g}; "
            f"evaluated every {config.eval_freq or 5} steps over {config.eval_iter or 5} batches; seed {config.seed}."
        )
    decay = "constant lr" if config.min_lr is None else f"cosine decay to {config.min_lr:g}"
    return (
        f"Recipe gpt-tui: AdamW lr {config.lr:g}, weight decay {config.weight_decay:g} on 2-D weights only, "
        f"gradient clip {_g(config.grad_clip, 'off')}, warmup {config.warmup_steps} steps, {decay}; "
        f"tokens split at {config.train_ratio:g}; evaluated "
        f"{f'every {config.eval_freq} steps' if config.eval_freq else 'at an interval that follows its cost'} over "
        f"{f'{config.eval_iter} batches' if config.eval_iter else 'the whole split (or a sample of a large one)'}; "
        f"seed {config.seed} (--recipe book: the chapter-5 notebook exactly)."
    )
