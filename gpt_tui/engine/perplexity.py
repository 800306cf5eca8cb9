"""Perplexity from a mean cross-entropy loss, without torch.

``gpt-tui eval`` prints it and the app's chart draws it; both need the same
number where they overlap, so it is computed in one place.
"""

from __future__ import annotations

import math


def perplexity(loss: float, cap: float | None = None) -> float:
    """exp(loss): inf where that overflows, NaN for NaN.

    ``cap`` clips the loss first, for a chart that must keep a diverged run's
    curve drawable.
    """
    if cap is not None and loss > cap:
        loss = cap
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf
