"""Every option is declared once and reaches every place it can be set, with the same limits everywhere.

Walks each TrainConfig and SamplingConfig option: its flag parses to the value,
a value set through the command line survives ``--detach`` and the app's
background run, and the app's settings form and the engine accept and refuse
the same boundary values. Plus the options that were lost on the way to a
background run (``--compile``, the AdamW betas), through a real detached run.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gpt_tui.cli import build_parser
from gpt_tui.cli.detach import _train_argv
from gpt_tui.cli.train import _train_overrides
from gpt_tui.engine.options import Option, options_of
from gpt_tui.engine.runs import CONFIG_FILE, read_run
from gpt_tui.engine.sampling_config import SamplingConfig
from gpt_tui.engine.train_options import TrainConfig
from gpt_tui.errors import UserError
from gpt_tui.tui.attach import background_train_args
from gpt_tui.tui.config import (
    SamplingSettings,
    TrainingSettings,
    check_sampling,
    check_training,
    field_spec,
    parse_value,
    sampling_config_kwargs,
    train_config_kwargs,
)
from gpt_tui.tui.slash import SETTERS, run_slash

ROOT = Path(__file__).resolve().parents[1]
TRAIN_OPTIONS = options_of(TrainConfig)
SAMPLING_OPTIONS = options_of(SamplingConfig)
LAUNCHER_SETS = ("run_dir", "run_id")  # a detached run gets its own folder and id from the launcher
FREE_TEXT = ("data", "start_context")  # a corpus the form checks exists (the engine, when it reads it); any prompt
SPECIAL = {"device": "cpu", "model": "mini", "data": ("corpus.txt", "books/"), "run_dir": "/tmp/some-run", "run_id": "abc123"}


def _other_value(opt: Option, default: Any) -> Any:
    """A valid value unlike the default, from the declaration alone, so a new option is covered without edits."""
    if opt.name in SPECIAL:
        return SPECIAL[opt.name]
    if opt.repeatable:  # two values: each is its own flag, and all of them arrive
        return ("some text", "more text")
    if opt.kind is bool:
        return not default
    if opt.choices:
        return next(c for c in opt.choices if c != default)
    if opt.kind is str:
        return "some text"
    low = opt.minimum if opt.minimum is not None else (opt.above if opt.above is not None else 0)
    high = opt.maximum if opt.maximum is not None else (opt.below if opt.below is not None else low + 10)
    if opt.kind is int:
        value = int(low) + 1 if default != int(low) + 1 else int(low) + 2
        assert value <= high, opt.name
        return value
    value = low + (high - low) * 0.37  # a float no default happens to be
    return value


def _default(config: type, name: str) -> Any:
    return getattr(config(), name)


@pytest.mark.parametrize("opt", TRAIN_OPTIONS, ids=lambda o: o.name)
def test_each_training_option_is_a_flag_that_survives_detach_and_the_app(opt: Option) -> None:
    value = _other_value(opt, _default(TrainConfig, opt.name))
    flag = opt.cli_flag
    assert flag is not None, f"{opt.name} cannot be set from the command line"
    argv = [flag] if opt.kind is bool else [f"{flag}={one}" for one in (value if opt.repeatable else (value,))]
    args = build_parser().parse_args(["train", *argv])
    from_cli = TrainConfig(**_train_overrides(args))
    assert getattr(from_cli, opt.name) == value  # (a) reachable from the CLI

    detached = _train_argv(args)
    if opt.name in LAUNCHER_SETS:
        assert not any(a.startswith(flag) for a in detached)
    else:
        again = TrainConfig(**_train_overrides(build_parser().parse_args(["train", *detached])))
        assert again == from_cli  # (b) survives --detach

    if opt.label is not None:
        in_box = "; ".join(value) if opt.repeatable else value  # the form's one box holds them all
        settings = replace(TrainingSettings(), **{opt.name: in_box})
        background = background_train_args(settings)
        in_app = TrainConfig(**train_config_kwargs(settings))
        again = TrainConfig(**_train_overrides(build_parser().parse_args(["train", *background])))
        assert getattr(again, opt.name) == value and again == in_app  # (b) survives the app's background run


@pytest.mark.parametrize("opt", [o for o in SAMPLING_OPTIONS if o.cli_flag], ids=lambda o: o.name)
def test_each_sampling_option_is_a_generate_flag(opt: Option) -> None:
    value = _other_value(opt, _default(SamplingConfig, opt.name))
    args = build_parser().parse_args(["generate", "--model", "tiny", "--prompt", "x", f"{opt.cli_flag}={value}"])
    assert getattr(args, opt.name) == value


def test_only_eos_and_stops_are_not_plain_generate_flags() -> None:
    assert [o.name for o in SAMPLING_OPTIONS if not o.cli_flag] == ["eos_id"]  # --eos: a switch, not a token id


def _boundaries(opt: Option) -> list[Any]:
    """Values on and just past each end of the declared range, the choices and a wrong one."""
    if opt.kind is str:
        return [] if opt.name in FREE_TEXT else [*opt.choices, *opt.form_choices, SPECIAL.get(opt.name, "auto"), "nope"]
    step = 1 if opt.kind is int else 1e-9
    values: list[Any] = [0, 1, -1, 2, 1e6 if opt.kind is float else 10**6]
    for edge in (opt.minimum, opt.maximum, opt.above, opt.below):
        if edge is not None:
            values += [edge - step, edge, edge + step] if opt.kind is float else [int(edge) - 1, int(edge), int(edge) + 1]
    if opt.kind is float:
        values += [0.5, 1.5, 2.0, math.inf, math.nan]  # lr 2.0: the form once refused what the engine took
    if opt.optional:
        values.append(None)
    return values


def _engine_accepts(config: type, kwargs: dict[str, Any]) -> bool:
    try:
        made = config(**kwargs)
        made.validate(50257) if config is SamplingConfig else made.validate()
    except UserError:
        return False
    return True


def _app_accepts(section: str, opt: Option, value: Any, settings: Any, check: Any) -> bool:
    try:
        parsed = parse_value(field_spec(section, opt.name), "off" if value is None else value)
        check(replace(settings, **{opt.name: parsed}))
    except UserError:
        return False
    return True


@pytest.mark.parametrize(
    "section,opt",
    [("training", o) for o in TRAIN_OPTIONS if o.label] + [("sampling", o) for o in SAMPLING_OPTIONS if o.label],
    ids=lambda x: x.name if isinstance(x, Option) else x,
)
def test_app_and_engine_accept_and_refuse_the_same_values(section: str, opt: Option) -> None:
    config, settings, check, kwargs = (
        (TrainConfig, TrainingSettings(), check_training, train_config_kwargs)
        if section == "training"
        else (SamplingConfig, SamplingSettings(temperature=0.0), check_sampling, sampling_config_kwargs)
    )
    values = _boundaries(opt)
    assert values or opt.name in FREE_TEXT, opt.name
    for value in values:
        engine = _engine_accepts(config, kwargs(replace(settings, **{opt.name: value})))
        app = _app_accepts(section, opt, value, settings, check)
        assert app == engine, f"{section}.{opt.name} = {value!r}: the app {'takes' if app else 'refuses'} it, the engine not"


def test_the_form_takes_any_learning_rate_the_engine_takes() -> None:
    assert parse_value(field_spec("training", "lr"), "2") == 2.0
    TrainConfig(lr=2.0).validate()


def test_the_betas_are_flags_and_form_fields() -> None:
    args = build_parser().parse_args(["train", "--beta1", "0.8", "--beta2", "0.95"])
    assert (TrainConfig(**_train_overrides(args)).beta1, TrainConfig(**_train_overrides(args)).beta2) == (0.8, 0.95)
    assert parse_value(field_spec("training", "beta2"), "0.95") == 0.95
    with pytest.raises(UserError, match="Adam beta1 must be >= 0 and < 1"):
        parse_value(field_spec("training", "beta1"), "1")


def test_beam_rule_reads_the_same_from_the_form_the_engine_and_a_slash_command() -> None:
    with pytest.raises(UserError, match="Beam search needs temperature 0"):
        check_sampling(SamplingSettings(num_beams=2, temperature=0.5))
    with pytest.raises(UserError, match="set temperature to 0 to use 2 beams"):
        SamplingConfig(num_beams=2, temperature=0.5).validate(50257)
    with pytest.raises(UserError, match="/temp 0 first"):
        run_slash("/beams 2", SamplingSettings(temperature=0.5))
    assert set(SETTERS.values()) == {o.name for o in SAMPLING_OPTIONS if o.slash}


# -- a real background run gets the flags -------------------------------------------------------------


def _gpt_tui(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "gpt_tui", *args], capture_output=True, text=True, env=env,
        stdin=subprocess.DEVNULL, timeout=timeout,
    )


def _wait(predicate: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_detached_run_gets_compile_and_beta1(corpus_and_init, tmp_path) -> None:
    """One background run for both (each start costs seconds): the child's own config.json is the proof."""
    corpus, init = corpus_and_init
    run_dir = tmp_path / "bg"
    launched = _gpt_tui(
        "train", "--detach", "--compile", "--beta1", "0.8", "--init-from", str(init), "--data", str(corpus), "--context-length", "16",
        "--batch-size", "2", "--max-steps", "100000", "--eval-freq", "1000", "--eval-iter", "1",
        "--sample-tokens", "0", "--device", "cpu", "--precision", "fp32", "--run-dir", str(run_dir),
    )
    assert launched.returncode == 0, launched.stderr
    try:
        _wait(lambda: (run_dir / CONFIG_FILE).exists())
        written = json.loads((run_dir / CONFIG_FILE).read_text())
        assert (written["compile"], written["beta1"]) == (True, 0.8)
    finally:
        if read_run(run_dir).status in ("running", "starting"):
            _gpt_tui("stop", str(run_dir))
        _wait(lambda: read_run(run_dir).status not in ("running", "starting"), timeout=170)
