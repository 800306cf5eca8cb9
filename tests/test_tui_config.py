"""The app's plain-Python parts: settings, slash commands, history, themes, chart data, progress."""

from __future__ import annotations

import math

import pytest

from gpt_tui import paths
from gpt_tui.engine.events import CheckpointEvent, DoneEvent, ErrorEvent, EvalEvent, StartEvent, StepEvent
from gpt_tui.errors import UserError
from gpt_tui.tui.chart_data import LossHistory, downsample, step_ticks
from gpt_tui.tui.config import (
    MODEL_PRESETS,
    SamplingSettings,
    Settings,
    describe_sampling,
    field_spec,
    load_settings,
    parse_value,
    save_settings,
    settings_path,
    train_config_kwargs,
)
from gpt_tui.tui.event_buffer import EventBuffer
from gpt_tui.tui.history import PromptHistory
from gpt_tui.tui.progress import TrainingProgress, format_count, format_duration
from gpt_tui.tui.slash import run_slash
from gpt_tui.tui.themes import load_theme_file, load_themes, shipped_theme_dir, theme_from_dict


# ----- settings -----
def test_presets_offered_match_the_engine():
    from gpt_tui.engine.model import PRESETS

    assert list(MODEL_PRESETS) == list(PRESETS)


def test_training_settings_build_a_valid_train_config():
    from gpt_tui.engine.trainer import TrainConfig

    config = TrainConfig(**train_config_kwargs(Settings().training))
    config.validate()
    assert config.data is None and config.model == "tiny"


def test_sampling_settings_build_a_valid_sampling_config():
    from gpt_tui.engine.generation import SamplingConfig
    from gpt_tui.tui.config import sampling_config_kwargs

    SamplingConfig(**sampling_config_kwargs(SamplingSettings())).validate(50257)


@pytest.mark.parametrize(
    "section, name, text, expected",
    [
        ("training", "lr", "4e-4", 4e-4),
        ("training", "batch_size", " 16 ", 16),
        ("training", "max_steps", "off", None),
        ("training", "max_steps", "", None),
        ("sampling", "top_p", "0.95", 0.95),
        ("sampling", "top_k", "None", None),
        ("training", "start_context", "  keep my spaces", "  keep my spaces"),
        ("training", "model", "mini", "mini"),
    ],
)
def test_parse_value_accepts(section, name, text, expected):
    assert parse_value(field_spec(section, name), text) == expected


@pytest.mark.parametrize(
    "section, name, text, message",
    [
        ("training", "lr", "fast", "Learning rate must be a number"),
        ("training", "lr", "0", "Learning rate must be > 0"),
        ("training", "lr", "nan", "finite"),
        ("training", "batch_size", "2.5", "whole number"),
        ("training", "batch_size", "0", ">= 1"),
        ("training", "batch_size", "off", "whole number"),
        ("training", "train_ratio", "1", "< 1"),
        ("training", "context_length", "4096", "<= 1024"),
        ("training", "model", "gpt5", "one of tiny"),
        ("training", "data", "/no/such/file.txt", "does not exist"),
        ("training", "device", "tpu", "Unknown device .tpu.; use auto"),
        ("sampling", "temperature", "-1", ">= 0"),
        ("sampling", "top_p", "1.5", "<= 1"),
    ],
)
def test_parse_value_refuses_with_a_reason(section, name, text, message):
    with pytest.raises(UserError, match=message):
        parse_value(field_spec(section, name), text)


def test_settings_round_trip_through_toml():
    settings = Settings(theme="phosphor", keys={"train.toggle": "ctrl+t"})
    settings = settings.with_value("training", "start_context", 'He said "hi"\n\tand left \\ ')
    settings = settings.with_value("sampling", "top_k", None)
    settings = settings.with_value("training", "lr", 3e-4)
    save_settings(settings)
    loaded, problems = load_settings()
    assert problems == []
    assert loaded == settings


def test_a_bad_settings_file_keeps_good_values_and_reports_the_bad(tmp_path):
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('[training]\nlr = "quick"\nbatch_size = 32\nwhat = 1\n[sampling]\ntemperature = -3\n')
    loaded, problems = load_settings()
    assert loaded.training.batch_size == 32
    assert loaded.training.lr == Settings().training.lr
    assert loaded.sampling.temperature == Settings().sampling.temperature
    joined = " ".join(problems)
    assert "training.lr" in joined and "sampling.temperature" in joined and "training.what" in joined


def test_broken_toml_gives_defaults_and_is_kept_aside_on_save():
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[training\nlr = ")
    loaded, problems = load_settings()
    assert loaded == Settings() and "not valid TOML" in problems[0]
    save_settings(loaded)
    assert (path.parent / "settings.toml.broken").read_text() == "[training\nlr = "
    assert load_settings() == (Settings(), [])


def test_an_inconsistent_file_resets_only_its_section():
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[training]\nlr = 1e-4\nmin_lr = 1e-3\n[sampling]\nmax_new_tokens = 9\n")
    loaded, problems = load_settings()
    assert loaded.training == Settings().training and loaded.sampling.max_new_tokens == 9
    assert "Min learning rate" in problems[0]


def test_inconsistent_pair_is_refused():
    from gpt_tui.tui.config import check_consistency

    with pytest.raises(UserError, match="Min learning rate"):
        check_consistency(Settings().with_value("training", "min_lr", 0.5))
    with pytest.raises(UserError, match="Beam search needs temperature 0"):
        check_consistency(Settings().with_value("sampling", "num_beams", 4))


def test_describe_sampling_shows_what_is_in_force():
    assert describe_sampling(SamplingSettings(temperature=0.0, max_new_tokens=9, seed=None)) == "greedy · max 9 · seed off"
    text = describe_sampling(SamplingSettings(temperature=0.7, top_k=None, top_p=0.9, seed=5))
    assert text == "temp 0.7 · top-k off · top-p 0.9 · max 60 · seed 5"


# ----- slash commands -----
def test_slash_commands_set_sampling_values():
    s = SamplingSettings()
    for line in ("/temp 0", "/beams 3", "/topk off", "/topp 0.5", "/max 7", "/seed 11"):
        s = run_slash(line, s).sampling
    assert s == SamplingSettings(max_new_tokens=7, temperature=0.0, top_k=None, top_p=0.5, seed=11, num_beams=3)
    assert run_slash("/temp", s).message == "Temperature is 0."
    assert run_slash("/clear", s).action == "clear"
    assert run_slash("/HELP", s).action == "help"


@pytest.mark.parametrize(
    "line, message",
    [("/temp hot", "must be a number"), ("/beams 2", "/temp 0 first"), ("/nope", "Unknown command /nope"), ("/", "after the slash"), ("/clear all", "takes no value")],
)
def test_slash_commands_refuse_bad_input(line, message):
    with pytest.raises(UserError, match=message):
        run_slash(line, SamplingSettings())


# ----- history -----
def test_history_walks_like_a_shell_and_survives_a_restart(tmp_path):
    path = tmp_path / "history.txt"
    history = PromptHistory(path)
    for entry in ("one", "two\nlines", "two\nlines", "three"):
        history.add(entry)
    again = PromptHistory(path)
    assert again.entries == ["one", "two\nlines", "three"]
    assert again.previous("draft") == "three"
    assert again.previous("") == "two\nlines"
    assert again.previous("") == "one"
    assert again.previous("") is None
    assert again.next() == "two\nlines"
    assert again.next() == "three"
    assert again.next() == "draft"
    assert again.next() is None


def test_history_is_capped(tmp_path):
    history = PromptHistory(tmp_path / "h.txt", limit=3)
    for i in range(10):
        history.add(f"p{i}")
    assert PromptHistory(tmp_path / "h.txt", limit=3).entries == ["p7", "p8", "p9"]


# ----- themes -----
def test_shipped_themes_load_cleanly():
    catalog = load_themes(shipped=shipped_theme_dir(), user=paths.config_dir() / "themes")
    assert catalog.problems == []
    assert {"gpt-tui-dark", "gpt-tui-light", "phosphor"} <= set(catalog.themes)
    for theme in catalog.themes.values():
        assert {"chart-train", "chart-val", "chart-lr"} <= set(theme.variables)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"primary": "#000000"}, "needs name"),
        ({"name": "x"}, "at least primary"),
        ({"name": "x", "primary": "blurple"}, "not a colour"),
        ({"name": "x", "primary": "#123456", "dark": "yes"}, "true or false"),
        ({"name": "x", "primary": "#123456", "colour": "#fff"}, "unknown key"),
        ({"name": "x", "primary": "#123456", "chart": {"loss": "#fff"}}, r"\[chart\] takes"),
    ],
)
def test_bad_theme_data_is_refused_with_the_file_named(data, message):
    with pytest.raises(UserError, match=message) as info:
        theme_from_dict(data, "mine.toml")
    assert "mine.toml" in str(info.value)


def test_user_theme_overrides_and_broken_files_become_messages(tmp_path):
    user = tmp_path / "themes"
    user.mkdir()
    (user / "phosphor.toml").write_text('name = "phosphor"\nprimary = "#ff0000"\n')
    (user / "bad.toml").write_text("name = ")
    (user / "notes.txt").write_text("ignored")
    catalog = load_themes(shipped=shipped_theme_dir(), user=user)
    assert catalog.themes["phosphor"].primary == "#ff0000"
    assert len(catalog.problems) == 1 and "bad.toml" in catalog.problems[0]
    with pytest.raises(UserError, match="not valid TOML"):
        load_theme_file(user / "bad.toml")


# ----- chart data -----
def test_downsample_bounds_points_and_keeps_extremes():
    xs = list(range(10_000))
    ys = [math.sin(i / 50) for i in xs]
    ys[1234] = 9.0
    ys[8765] = -9.0
    out_x, out_y = downsample(xs, ys, 200)
    assert len(out_x) <= 200
    assert 9.0 in out_y and -9.0 in out_y
    assert out_x == sorted(out_x)
    assert downsample([1, 2], [3, 4], 200) == ([1, 2], [3, 4])


def test_step_ticks_are_whole_round_numbers():
    assert step_ticks(0, 5) == [0]
    assert step_ticks(12, 5) == [0, 5, 10]
    assert step_ticks(4880, 6) == [0, 1000, 2000, 3000, 4000]
    assert step_ticks(3, 8) == [0, 1, 2, 3]
    for last in (7, 99, 1234, 100_000):
        ticks = step_ticks(last, 6)
        assert 2 <= len(ticks) <= 6 and ticks[-1] <= last


def test_history_series_per_mode():
    history = LossHistory()
    history.add(EvalEvent(step=0, epoch=1, tokens_seen=0, train_loss=10.9, val_loss=10.95))
    for step in range(1, 6):
        history.add(StepEvent(step, 1, step * 8, 10.0 - step, 1e-3 * step, 1.0, 100.0, 0.1 * step, 5))
    history.add(EvalEvent(step=5, epoch=1, tokens_seen=40, train_loss=5.1, val_loss=float("nan")))
    assert history.add(CheckpointEvent(step=5, path="x")) is False
    train, val = history.series("loss", 100)
    assert train.xs == [0, 1, 2, 3, 4, 5] and train.ys[0] == 10.9
    assert val.xs == [0]  # a NaN validation loss is not plotted
    ppl = history.series("perplexity", 100)[0]
    assert ppl.ys[-1] == pytest.approx(math.exp(5.0))
    (lr,) = history.series("lr", 100)
    assert lr.ys == pytest.approx([1e-3, 2e-3, 3e-3, 4e-3, 5e-3])
    diverged = LossHistory()
    diverged.add(StepEvent(1, 1, 8, 1000.0, 1e-3, 1.0, 100.0, 0.1, 5))
    assert diverged.series("perplexity", 100)[0].ys == pytest.approx([math.exp(20.0)])  # clipped, still drawable


# ----- progress -----
def test_progress_follows_a_run():
    p = TrainingProgress()
    p.reset_for_start()
    assert p.state == "preparing" and p.active
    p.apply(StartEvent("/r/20261126-tiny", "cpu", 1000, 5000, 500, 100, 10, 200, 0))
    p.apply(EvalEvent(0, 1, 0, 10.9, 10.8))
    p.apply(StepEvent(50, 1, 400, 7.5, 4e-4, 1.0, 1000.0, 10.0, 200))
    assert p.state == "running" and p.run_name == "20261126-tiny"
    assert p.fraction == 0.25 and p.epochs_total == 2
    assert p.eta is None  # one step of this process: its time also paid for start-up
    p.apply(StepEvent(51, 1, 408, 7.4, 4e-4, 1.0, 1000.0, 10.2, 200))
    assert p.eta == pytest.approx(149 * 0.2)  # at the pace between steps (gpt_tui.engine.eta)
    p.apply(DoneEvent(60, 480, "stopped", "/r/c.safetensors", 12.0))
    assert p.state == "stopped" and not p.active and p.checkpoint == "/r/c.safetensors"
    p.apply(ErrorEvent(60, "boom"))
    assert p.state == "failed" and p.message == "boom"


def test_formatting_helpers():
    assert format_duration(None) == "--:--"
    assert format_duration(65) == "01:05"
    assert format_duration(3725) == "1:02:05"
    assert format_count(999) == "999"
    assert format_count(12_345) == "12.3k"
    assert format_count(4_200_000) == "4.2M"


def test_event_buffer_hands_over_everything_once():
    buffer = EventBuffer()
    for i in range(5):
        buffer.push(i)
    assert len(buffer) == 5
    assert buffer.drain() == [0, 1, 2, 3, 4]
    assert buffer.drain() == [] and buffer.pushed == 5


def test_delete_refuses_files_outside_the_data_dir(tmp_path):
    from gpt_tui.tui.checkpoint_files import delete_checkpoint, find_checkpoints

    outside = tmp_path / "precious.safetensors"
    outside.write_bytes(b"x")
    with pytest.raises(UserError, match="not a checkpoint in gpt-tui's data directory"):
        delete_checkpoint(outside)
    assert outside.exists()
    inside = paths.runs_dir() / "run-a" / "checkpoints" / "step-00000007.safetensors"
    inside.parent.mkdir(parents=True)
    inside.write_bytes(b"x")
    (inside.parent / ".step-00000008.safetensors.tmp").write_bytes(b"partial")
    (entry,) = find_checkpoints()
    assert entry.step == 7 and entry.source == "run-a" and entry.label == "runs/run-a/checkpoints/step-00000007.safetensors"
    delete_checkpoint(inside)
    assert find_checkpoints() == []


def test_replies_decode_on_one_thread_for_small_models_or_while_training():
    import torch

    from gpt_tui.engine.inference_session import reply_threads

    small = torch.nn.Linear(10, 10)
    large = torch.nn.Embedding(60_000, 1000)  # 60M parameters, never run
    assert reply_threads(small, training_active=False) == 1
    assert reply_threads(large, training_active=True) == 1
    assert reply_threads(large, training_active=False) is None


def test_model_source_prefers_the_latest_choice():
    from gpt_tui.tui.model_source import LoadedModel, ReplModelSource

    class FakeTrainer:
        model = object()
        step = 42

        def snapshot_model(self):
            return "snapshot"

    source = ReplModelSource(preset="tiny", seed=1, device="cpu")
    assert source.describe() == "untrained tiny"
    source.use_trainer(FakeTrainer())
    assert source.acquire() == ("snapshot", "training weights (step 42)")
    source.use_loaded(LoadedModel(model="weights", label="models/gpt2", path="/x"))
    assert source.acquire() == ("weights", "models/gpt2")
    source.use_trainer(FakeTrainer())
    assert source.acquire()[0] == "snapshot"
