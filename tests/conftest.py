"""Every test gets its own user directories, so nothing touches the real ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


PASSED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    """Remember whether the test itself passed, for the clean-up below."""
    report = yield
    if report.when == "call":
        item.stash[PASSED] = report.passed
    return report


def _empty(folder: Path) -> None:
    """Delete what a test wrote but keep the folder, so a later test never gets the same path again."""
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def isolated_user_dirs(request: pytest.FixtureRequest, tmp_path_factory, monkeypatch):
    """Own user directories per test; what a passed test wrote (runs, checkpoints) is deleted, or the suite needs gigabytes."""
    root = tmp_path_factory.mktemp("user")
    for name in ("DATA", "CACHE", "CONFIG"):
        monkeypatch.setenv(f"GPT_TUI_{name}_DIR", str(root / name.lower()))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(root / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(root / "xdg-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(root / "xdg-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    test_folder = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield root
    if request.node.stash.get(PASSED, False):
        for folder in (root, test_folder):
            if folder is not None and folder.is_dir():
                _empty(folder)


@pytest.fixture
def anyio_backend():
    """The async pilot tests (``@pytest.mark.anyio``) run on asyncio, Textual's event loop."""
    return "asyncio"


@pytest.fixture
def fast_tui_settings(isolated_user_dirs):
    """A settings.toml that makes the app's training and replies quick and repeatable in tests."""
    from dataclasses import replace

    from gpt_tui.tui.config import Settings, save_settings

    settings = Settings()
    settings = replace(
        settings,
        training=replace(settings.training, context_length=32, batch_size=2, eval_freq=5, eval_iter=1,
                         max_steps=400, warmup_steps=0, sample_tokens=0, precision="fp32", device="cpu"),
        sampling=replace(settings.sampling, temperature=0.0, max_new_tokens=12, seed=7),
    )
    save_settings(settings)
    return settings


@pytest.fixture
def corpus_and_init(tmp_path):
    """A short corpus file and the checkpoint of a one-layer model to start runs from: runs that take seconds."""
    import torch

    from gpt_tui.engine.checkpoint import save_checkpoint
    from gpt_tui.engine.model import GPTConfig, GPTModel
    from textgen import sample_text

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(sample_text(1500, seed=5), encoding="utf-8")
    torch.manual_seed(0)
    model = GPTModel(GPTConfig(context_length=16, emb_dim=16, n_layers=1, n_heads=2, drop_rate=0.0, tie_weights=True))
    init = tmp_path / "init.safetensors"
    save_checkpoint(init, model)
    return corpus, init


@pytest.fixture
def forward_dtypes(monkeypatch):
    """The autocast dtype each forward pass ran under (None: plain fp32); a calibration that measures fails the test."""
    import torch

    from gpt_tui.engine import calibration as cal
    from gpt_tui.engine.model import GPTModel

    seen: list = []
    forward = GPTModel.forward

    def recording(self, *args, **kwargs):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return forward(self, *args, **kwargs)

    def no_measure() -> cal.Calibration:
        raise AssertionError("the calibration measured instead of reading the crafted cache")

    monkeypatch.setattr(GPTModel, "forward", recording)
    monkeypatch.setattr(cal, "measure", no_measure)
    monkeypatch.setattr(cal, "_memo", {})  # nothing remembered from an earlier test's cache
    return seen
