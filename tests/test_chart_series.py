"""Chart curves, their colours and titles, and perplexity: each has one owner."""

from __future__ import annotations

import math

import pytest

from gpt_tui.engine.events import EvalEvent, StepEvent
from gpt_tui.engine.perplexity import perplexity
from gpt_tui.tui import themes
from gpt_tui.tui.attach import CombinedHistory
from gpt_tui.tui.chart_data import CHART_MODES, CURVES, MAX_LOSS_FOR_PERPLEXITY, MODE_TITLES, LossHistory, mode_title


def _history(losses: list[float]) -> LossHistory:
    history = LossHistory()
    history.add(EvalEvent(step=0, epoch=1, tokens_seen=0, train_loss=losses[0], val_loss=losses[0]))
    for step, loss in enumerate(losses, start=1):
        history.add(StepEvent(step, 1, step * 8, loss, 1e-3 * step, 1.0, 100.0, 0.1 * step, 5))
    history.add(EvalEvent(step=len(losses), epoch=1, tokens_seen=8, train_loss=losses[-1], val_loss=losses[-1]))
    return history


@pytest.mark.parametrize("mode", CHART_MODES)
def test_every_curve_of_another_run_has_a_compare_colour(mode):
    combined = CombinedHistory(_history([4.0, 3.0]))
    combined.others.append(("other", _history([5.0, 4.5])))
    series = combined.series(mode, 100)
    own = [s for s in series if not s.label.startswith("other ")]
    theirs = [s for s in series if s.label.startswith("other ")]
    assert own and len(theirs) == len(own)
    for mine, other in zip(own, theirs):
        assert other.label == f"other {mine.label}"
        assert other.color == mine.curve.compare_color and other.color != mine.color
        # what the chart draws with when the theme names no colour for the curve
        assert themes.chart_color({}, other.color.key, other.color.fallback) == other.color.fallback


def test_every_curve_kind_carries_both_colours_and_themes_set_the_own_ones():
    assert {curve.label for curve in CURVES} == {"train", "val", "lr"}
    for curve in CURVES:
        assert curve.color.key != curve.compare_color.key
        assert len(curve.color.fallback) == len(curve.compare_color.fallback) == 3
    assert set(themes.CHART_KEYS) == {curve.color.key for curve in CURVES}


def test_each_chart_mode_has_one_title():
    assert set(MODE_TITLES) == set(CHART_MODES)
    assert mode_title("loss") == "Loss"
    assert mode_title("perplexity") == "Perplexity (log scale)"  # the only logarithmic axis


@pytest.mark.parametrize("loss", [0.0, 0.5, 3.25, 10.9, 19.5, MAX_LOSS_FOR_PERPLEXITY])
def test_the_chart_and_gpt_tui_eval_agree_on_perplexity(loss):
    from gpt_tui.engine import loss as engine_loss

    drawn = LossHistory()
    drawn.add(StepEvent(1, 1, 8, loss, 1e-3, 1.0, 100.0, 0.1, 5))
    (ppl,) = drawn.series("perplexity", 100)[0].ys
    assert ppl == pytest.approx(engine_loss.perplexity(loss), rel=1e-12)
    assert ppl == pytest.approx(math.exp(loss), rel=1e-12)


def test_perplexity_past_the_chart_cap():
    assert perplexity(1000.0) == math.inf  # what `gpt-tui eval` prints: no OverflowError
    assert perplexity(1000.0, cap=MAX_LOSS_FOR_PERPLEXITY) == pytest.approx(math.exp(MAX_LOSS_FOR_PERPLEXITY))
    assert math.isnan(perplexity(math.nan)) and math.isnan(perplexity(math.nan, cap=1.0))
    assert perplexity(math.inf, cap=2.0) == pytest.approx(math.exp(2.0))
