"""The training pane's model facts: its shape and device in one line, and perplexity beside a loss.

A loss of 3.2 means little to a reader of the book until it reads as a
perplexity of about 25 ("as unsure as a choice among 25 tokens"), and a run's
numbers mean little without the size of the model making them. Both have to
fit a 40-column pane, so each comes in a compact form.
"""

from __future__ import annotations

import math

from gpt_tui.engine.perplexity import perplexity
from gpt_tui.tui.progress import TrainingProgress, format_count, format_loss

CELL = 10  # the widest value that keeps a space before the next label in the pane's stats rows


def format_perplexity(loss: float | None) -> str:
    """A perplexity in at most four characters: 9.9, 33, 331, 22k, 4M."""
    if loss is None or math.isnan(loss):
        return "-"
    value = perplexity(loss)
    if not math.isfinite(value):
        return "inf"
    if value < 10:
        return f"{value:.1f}"
    if value < 1000:
        return f"{value:.0f}"
    for limit, suffix in ((1e3, "k"), (1e6, "M"), (1e9, "G")):
        if value / limit < 999.5:
            return f"{value / limit:.0f}{suffix}"
    return "huge"


def loss_with_perplexity(loss: float | None) -> str:
    """``3.500 (33)``: a loss and its perplexity in one stats cell, the loss shortened until both fit."""
    if loss is None or math.isnan(loss):
        return format_loss(loss)
    ppl = format_perplexity(loss)
    text = f"{format_loss(loss)} ({ppl})"
    digits = 2
    while len(text) > CELL and digits >= 0 and math.isfinite(loss):
        text = f"{loss:.{digits}f} ({ppl})"
        digits -= 1
    return text


def _count(n: int) -> str:
    """Parameters in at most four characters: 13.3M, 124M, 1.6G."""
    if 1e8 <= n < 1e9:
        return f"{n / 1e6:.0f}M"
    return format_count(n)


def shape_text(progress: TrainingProgress) -> str:
    """The model's layers, heads, width, context and parameters, compact enough for the narrow pane
    beside the run's state (``2L 4H 128d ctx128 13.3M``); empty before a run reports them."""
    p = progress
    if not p.n_layers:
        return ""
    params = _count(p.num_parameters) if p.num_parameters else "?"
    return f"{p.n_layers}L {p.n_heads}H {p.emb_dim}d ctx{p.context_length} {params}"


def pane_title(progress: TrainingProgress) -> str:
    """The training pane's border title: the device on its top border, where even 60 columns have room."""
    return f"Training on {progress.device}" if progress.device else "Training"
