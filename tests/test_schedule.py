import math

import pytest

from gpt_tui.engine.schedule import lr_at


def test_warmup_is_linear():
    kw = dict(lr=1e-3, min_lr=1e-4, warmup_steps=10, total_steps=110)
    assert lr_at(0, **kw) == pytest.approx(1e-4)
    assert lr_at(4, **kw) == pytest.approx(5e-4)
    assert lr_at(9, **kw) == pytest.approx(1e-3)


def test_cosine_decay_to_floor():
    kw = dict(lr=1e-3, min_lr=1e-4, warmup_steps=10, total_steps=110)
    assert lr_at(10, **kw) == pytest.approx(1e-3)
    # halfway through the decay the cosine is at its midpoint
    assert lr_at(60, **kw) == pytest.approx((1e-3 + 1e-4) / 2)
    assert lr_at(35, **kw) == pytest.approx(1e-4 + 0.5 * 9e-4 * (1 + math.cos(math.pi * 0.25)))
    assert lr_at(110, **kw) == pytest.approx(1e-4)
    assert lr_at(500, **kw) == pytest.approx(1e-4)
    values = [lr_at(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_constant_when_floor_equals_peak():
    assert {lr_at(s, lr=4e-4, min_lr=4e-4, warmup_steps=0, total_steps=90) for s in range(0, 100)} == {4e-4}
