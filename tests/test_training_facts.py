"""The training pane names the model it trains and gives each loss as a perplexity too, at 80x24."""

from __future__ import annotations

import math
import re

import pytest

from pilot import new_app, press_while_busy, screen_text, wait_until
from gpt_tui.engine.presets import PRESET_SIZES

SUFFIX = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9}


def _shown_perplexity(text: str, label: str) -> float | None:
    found = re.search(rf"\b{label}\s+[\d.]+ \(([\d.]+)([kMG]?)\)", text)
    return None if found is None else float(found.group(1)) * SUFFIX[found.group(2)]


@pytest.mark.anyio
@pytest.mark.slow
async def test_the_pane_shows_the_model_shape_device_and_perplexities_at_80x24(fast_tui_settings):
    app = new_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f5")
        await wait_until(pilot, lambda: app.progress.step >= 2 and app.progress.val_loss is not None, what="steps and an evaluation")
        await press_while_busy(pilot, "f6")
        await wait_until(pilot, lambda: not app.progress.active, timeout=60, what="the stop")
        app.training_pane.refresh_progress()
        await pilot.pause()
        text = screen_text(app)
        tiny = PRESET_SIZES["tiny"]
        shape = f"{tiny['n_layers']}L {tiny['n_heads']}H {tiny['emb_dim']}d ctx{fast_tui_settings.training.context_length}"
        assert shape in text, text
        params = app.progress.num_parameters
        assert params > 0 and f"{shape} {params / 1e6:.1f}M" in text, text
        assert "Training on cpu" in text, text  # the device, on the pane's border
        for label, loss in (("loss", app.progress.loss), ("val", app.progress.val_loss)):
            shown = _shown_perplexity(text, label)
            assert shown is not None, f"no perplexity beside {label}: {text}"
            assert shown == pytest.approx(math.exp(loss), rel=0.05), (label, loss, shown)
