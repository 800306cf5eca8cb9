"""Bad input, everywhere: one clear line saying what was wrong and what to do, nothing lost, nothing crashed.

Each CLI case runs ``gpt-tui`` in this process and checks: exit status 2, a
single ``gpt-tui: error:`` line on stderr (no traceback) naming the problem
and the fix, every file of an existing run unchanged, and the CLI still
working for the next command. The app's inputs (settings file, theme files,
slash commands) are checked the same way, and Hypothesis throws random values
at the sampling settings, the slash commands and the settings parser: the only
exception allowed is UserError.
"""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpt_tui.cli import main
from gpt_tui.engine import runlock
from gpt_tui.engine.checkpoint import latest_checkpoint, save_checkpoint
from gpt_tui.engine.generation import SamplingConfig
from gpt_tui.engine.model import GPTConfig, GPTModel
from gpt_tui.engine.trainer import Trainer, TrainConfig
from gpt_tui.errors import UserError
from textgen import sample_text

SMALL = GPTConfig(context_length=16, emb_dim=16, n_layers=1, n_heads=2, drop_rate=0.0, tie_weights=True)


@dataclass
class World:
    root: Path
    corpus: Path
    init: Path  # weights only
    run: Path  # a run with a full checkpoint

    def fingerprint(self) -> dict[str, str]:
        return {
            str(p.relative_to(self.root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(self.root.rglob("*")) if p.is_file()
        }


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("world")
    corpus = root / "corpus.txt"
    corpus.write_text(sample_text(1500, seed=2), encoding="utf-8")
    torch.manual_seed(0)
    init = root / "init.safetensors"
    save_checkpoint(init, GPTModel(SMALL))
    run = root / "run"
    config = TrainConfig(
        data=str(corpus), context_length=16, batch_size=2, max_steps=2, eval_freq=2, eval_iter=1,
        sample_tokens=0, device="cpu", precision="fp32", run_dir=str(run),
    )
    Trainer(config, init_from=str(init)).run()
    return World(root, corpus, init, run)


@pytest.fixture
def pristine(world):
    """The world's files as they were: checked after each case, so a failure never costs a run anything."""
    before = world.fingerprint()
    yield world
    assert world.fingerprint() == before


def _file(tmp: Path, name: str, data: bytes) -> str:
    path = tmp / name
    path.write_bytes(data)
    return str(path)


def _truncated(w: World, tmp: Path) -> str:
    data = latest_checkpoint(w.run).read_bytes()
    return _file(tmp, "truncated.safetensors", data[: len(data) // 2])


def _wrong_shapes(w: World, tmp: Path) -> str:
    """A checkpoint whose header promises 16-wide weights but holds 32-wide ones."""
    import json

    from safetensors.torch import save_file

    model = GPTModel(SMALL.with_(emb_dim=32))
    tensors = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items() if k != "head.weight"}
    header = {"format": "gpt-tui-checkpoint", "version": 1, "kind": "model", "config": SMALL.to_dict(), "train_state": {}, "meta": {}}
    path = tmp / "wrong-shape.safetensors"
    save_file(tensors, str(path), metadata={"gpt_tui": json.dumps(header)})
    return str(path)


class _RunsCode:
    """Unpickling this would run a shell command (it never is: weights are loaded with weights_only=True)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _malicious_pickle(w: World, tmp: Path) -> str:
    path = tmp / "evil.pt"
    torch.save({"tok_emb.weight": _RunsCode(tmp / "pwned")}, path)
    return str(path)


def _plain_pickle(w: World, tmp: Path) -> str:
    return _file(tmp, "evil.bin", pickle.dumps(_RunsCode(tmp / "pwned"), protocol=2))


_HELD_LOCKS: list[runlock.RunLock] = []


def _locked_run(w: World, tmp: Path, monkeypatch) -> str:
    run = tmp / "locked"
    run.mkdir()
    _HELD_LOCKS.append(runlock.acquire(run))  # as a live trainer in another process holds it
    monkeypatch.setattr(runlock, "ACQUIRE_PATIENCE_S", 0.05)
    return str(run)


def _full_disk(monkeypatch) -> None:
    from gpt_tui.engine import checkpoint

    def no_space(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint, "save_file", no_space)  # the writer every checkpoint save calls


def _read_only_metrics(monkeypatch) -> None:
    def read_only(self, event):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(Trainer, "_write_metric", read_only)


def _gpu_out_of_memory(monkeypatch) -> None:
    import gpt_tui.engine.generation as generation

    def out_of_memory(*_args, **_kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(generation, "stream_text", out_of_memory)


def _no_cuda(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _data_dir_under_a_file(tmp: Path, monkeypatch) -> None:
    blocker = tmp / "not-a-dir"
    blocker.write_text("a file where a folder should be")
    monkeypatch.setenv("GPT_TUI_DATA_DIR", str(blocker / "data"))


def _cache_dir_under_a_file(tmp: Path, monkeypatch) -> None:
    blocker = tmp / "cache-file"
    blocker.write_text("x")
    monkeypatch.setenv("GPT_TUI_CACHE_DIR", str(blocker / "cache"))


def _copy_run(w: World, tmp: Path) -> str:
    import shutil

    target = tmp / "copy"
    shutil.copytree(w.run, target)
    return str(target)


def _train(w: World, *extra: str) -> list[str]:
    data = [] if "--data" in extra else ["--data", str(w.corpus)]  # --data repeats: a case's own replaces the default
    return [
        "train", *data, "--context-length", "16", "--batch-size", "2", "--max-steps", "2",
        "--eval-iter", "1", "--sample-tokens", "0", "--device", "cpu", "--precision", "fp32", "--quiet", *extra,
    ]


def _gen(w: World, *extra: str) -> list[str]:
    return ["generate", "--checkpoint", str(w.run), "--prompt", "The painter", "--max-new-tokens", "3", *extra]


# id -> (build argv from (world, tmp_path, monkeypatch), what the one line must say)
CASES: dict[str, tuple[Callable[[World, Path, Any], list[str]], str]] = {
    # --- checkpoints and weights ---
    "corrupt-checkpoint": (lambda w, t, m: ["generate", "--checkpoint", _file(t, "junk.safetensors", os.urandom(4096)), "--prompt", "x"],
                           r"junk\.safetensors (is corrupt|is not a format gpt-tui reads)"),
    "truncated-checkpoint": (lambda w, t, m: ["generate", "--checkpoint", _truncated(w, t), "--prompt", "x"],
                             r"corrupt or truncated.*(copy it again|earlier checkpoint)"),
    "truncated-checkpoint-resume": (lambda w, t, m: ["train", "--resume", _truncated(w, t)], r"corrupt or truncated"),
    "empty-checkpoint": (lambda w, t, m: ["generate", "--checkpoint", _file(t, "empty.safetensors", b""), "--prompt", "x"],
                         r"corrupt|truncated|empty|not a format"),
    "wrong-shape-weights": (lambda w, t, m: ["generate", "--checkpoint", _wrong_shapes(w, t), "--prompt", "x"],
                            r"(does not (fit|match)|shape).*"),
    "malicious-pickle": (lambda w, t, m: ["generate", "--checkpoint", _malicious_pickle(w, t), "--prompt", "x"],
                         r"evil\.pt"),
    "malicious-plain-pickle": (lambda w, t, m: ["generate", "--checkpoint", _plain_pickle(w, t), "--prompt", "x"],
                               r"evil\.bin"),
    "missing-checkpoint": (lambda w, t, m: ["generate", "--checkpoint", str(t / "nope.safetensors"), "--prompt", "x"],
                           r"nope\.safetensors does not exist"),
    "run-without-checkpoints": (lambda w, t, m: ["train", "--resume", str(t)], r"No usable checkpoint in .*train first"),
    "resume-weights-only": (lambda w, t, m: ["train", "--resume", str(w.init)], r"weights only.*--init-from"),
    "eval-missing-checkpoint": (lambda w, t, m: ["eval", "--checkpoint", str(t / "gone")], r"gone does not exist"),
    # --- the corpus ---
    "non-utf8-corpus": (lambda w, t, m: _train(w, "--data", _file(t, "latin1.txt", "caf\xe9 ".encode("latin-1") * 400)),
                        r"not UTF-8 text: invalid byte 0xe9 at byte offset 3.*iconv"),
    "empty-corpus": (lambda w, t, m: _train(w, "--data", _file(t, "empty.txt", b"")), r"empty\.txt is empty.*give a file with text"),
    "whitespace-corpus": (lambda w, t, m: _train(w, "--data", _file(t, "blank.txt", b" \n\t\n" * 50)), r"blank\.txt is empty or only whitespace"),
    "corpus-shorter-than-context": (lambda w, t, m: _train(w, "--data", _file(t, "short.txt", b"Just a few words here.")),
                                    r"split has \d+ tokens but needs at least 17.*smaller\s+--context-length"),
    "corpus-missing": (lambda w, t, m: _train(w, "--data", str(t / "nowhere.txt")), r"Corpus file not found: .*nowhere\.txt"),
    "corpus-is-an-empty-directory": (lambda w, t, m: _train(w, "--data", str(t)), r"holds no files matching \*\.txt or \*\.md or \*\.text; add text files, or choose others with --glob"),
    "corpus-in-unknown-home": (lambda w, t, m: _train(w, "--data", "~no-such-user-here/corpus.txt"),
                               r"Corpus file not found: ~no-such-user-here/corpus\.txt\. Check the path"),
    # --- the model and the training settings ---
    "context-beyond-gpt2": (lambda w, t, m: _train(w, "--context-length", "4096"), r"context_length 4096 is outside 1\.\.1024"),
    "context-beyond-the-model": (lambda w, t, m: _train(w, "--init-from", str(w.init), "--context-length", "64"),
                                 r"context-length 64 is longer than the model's 16 positions; use --context-length 16 or less"),
    "eval-context-beyond-the-model": (lambda w, t, m: ["eval", "--checkpoint", str(w.run), "--context-length", "64"],
                                      r"--context-length 64 is longer than the model's 16 positions"),
    "unknown-preset": (lambda w, t, m: _train(w, "--model", "gpt5"), r"Unknown model preset 'gpt5'; choose one of"),
    "zero-batch": (lambda w, t, m: _train(w, "--batch-size", "0"), r"batch-size must be greater than 0"),
    "negative-lr": (lambda w, t, m: _train(w, "--lr", "-0.1"), r"lr must be greater than 0"),
    "train-ratio-above-one": (lambda w, t, m: _train(w, "--train-ratio", "1.5"), r"train-ratio must lie strictly between 0 and 1"),
    # --- sampling ---
    "negative-temperature": (lambda w, t, m: _gen(w, "--temperature", "-0.5"), r"temperature must be 0 \(greedy\) or a positive number"),
    "top-k-zero": (lambda w, t, m: _gen(w, "--temperature", "1", "--top-k", "0"), r"top_k must be a whole number from 1 to the vocabulary size 50257"),
    "top-k-beyond-vocab": (lambda w, t, m: _gen(w, "--temperature", "1", "--top-k", "60000"), r"top_k .* got 60000; leave it unset"),
    "top-p-zero": (lambda w, t, m: _gen(w, "--temperature", "1", "--top-p", "0"), r"top_p must be in \(0, 1\], got 0\.0"),
    "top-p-above-one": (lambda w, t, m: _gen(w, "--temperature", "1", "--top-p", "1.5"), r"top_p must be in \(0, 1\], got 1\.5"),
    "absurd-max-new-tokens": (lambda w, t, m: _gen(w, "--max-new-tokens", str(10**9)), r"max_new_tokens must be a whole number from 1 to 100000"),
    "zero-max-new-tokens": (lambda w, t, m: _gen(w, "--max-new-tokens", "0"), r"max_new_tokens must be a whole number from 1"),
    "empty-prompt": (lambda w, t, m: ["generate", "--checkpoint", str(w.run), "--prompt", ""], r"The prompt is empty; type some text"),
    "blank-prompt": (lambda w, t, m: ["generate", "--checkpoint", str(w.run), "--prompt", "   \n"], r"The prompt is empty"),
    "beams-with-temperature": (lambda w, t, m: _gen(w, "--num-beams", "3", "--temperature", "0.8"), r"set temperature to 0 to use 3 beams"),
    # --- devices ---
    "unknown-device": (lambda w, t, m: _train(w, "--device", "tpu"), r"Unknown device 'tpu'; use auto, cpu, cuda, cuda:N or mps"),
    "unknown-device-generate": (lambda w, t, m: _gen(w, "--device", "quantum"), r"Unknown device 'quantum'"),
    "cuda-without-a-gpu": (lambda w, t, m: (_no_cuda(m), _train(w, "--device", "cuda"))[1],
                           r"no usable CUDA GPU; use --device cpu or auto"),
    "gpu-out-of-memory": (lambda w, t, m: (_gpu_out_of_memory(m), _gen(w))[1],
                          r"the GPU ran out of memory; use a smaller model, batch or context, or --device cpu"),
    # --- where files go ---
    "data-dir-under-a-file": (lambda w, t, m: (_data_dir_under_a_file(t, m), _train(w))[1],
                              r"Cannot write the run directory .*pick another with --run-dir"),
    "cache-dir-under-a-file": (lambda w, t, m: (_cache_dir_under_a_file(t, m), _train(w))[1],
                               r"Cannot write the token cache .*GPT_TUI_CACHE_DIR"),
    "full-disk-on-save": (lambda w, t, m: (_full_disk(m), _train(w, "--resume", _copy_run(w, t), "--max-steps", "4", "--checkpoint-every", "1"))[1],
                          r"Could not save checkpoint .*No space left on device.*previous checkpoint is unchanged"),
    "read-only-run-dir": (lambda w, t, m: (_read_only_metrics(m), _train(w, "--resume", _copy_run(w, t), "--max-steps", "4"))[1],
                          r"Cannot write to the run directory .*Read-only file system.*last saved checkpoint is intact"),
    "locked-run-dir": (lambda w, t, m: _train(w, "--init-from", str(w.init), "--run-dir", _locked_run(w, t, m)),
                       r"in use by a live training run \(process \d+\); wait for it to finish, stop it with `gpt-tui stop"),
    # --- runs ---
    "attach-unknown-run": (lambda w, t, m: ["attach", "no-such-run"], r"No run called 'no-such-run'; `gpt-tui runs` lists them"),
    "stop-a-finished-run": (lambda w, t, m: ["stop", str(w.run)], r"is not running \(its status is finished\)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_one_clear_line_and_loses_nothing(case, pristine, tmp_path, monkeypatch, capsys):
    world = pristine
    build, expected = CASES[case]
    argv = build(world, tmp_path, monkeypatch)
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (out, err)
    assert len(lines) == 1 and lines[0].startswith("gpt-tui: error: "), err
    assert re.search(expected, lines[0]), lines[0]
    assert "Traceback" not in out + err
    assert not (tmp_path / "pwned").exists()  # nothing from a pickle ever ran
    while _HELD_LOCKS:
        _HELD_LOCKS.pop().release()
    # the CLI is still good: the next command works
    monkeypatch.undo()
    assert main(["generate", "--checkpoint", str(world.run), "--prompt", "Every effort", "--max-new-tokens", "2"]) == 0


def test_failed_resume_keeps_the_checkpoint_and_says_failed(world, tmp_path, monkeypatch, capsys):
    """A full disk on the first save: the run is marked failed, its newest checkpoint is the one it had."""
    from gpt_tui.engine.runs import read_run

    run = Path(_copy_run(world, tmp_path))
    newest = latest_checkpoint(run)
    digest = hashlib.sha256(newest.read_bytes()).hexdigest()
    _full_disk(monkeypatch)
    assert main(_train(world, "--resume", str(run), "--max-steps", "4", "--checkpoint-every", "1")) == 2
    assert latest_checkpoint(run) == newest and hashlib.sha256(newest.read_bytes()).hexdigest() == digest
    assert not list((run / "checkpoints").glob("*.tmp"))
    assert read_run(run).status == "failed"
    assert "No space left on device" in capsys.readouterr().err


def test_prompt_longer_than_the_context_is_noted_and_still_answered(world, capsys):
    prompt = "the painter looked at the picture " * 20  # far more than 16 tokens
    assert main(["generate", "--checkpoint", str(world.run), "--prompt", prompt, "--max-new-tokens", "3"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(prompt) and len(out) > len(prompt)
    assert re.fullmatch(
        r"gpt-tui: note: the prompt is \d+ tokens but this model reads at most 16; it continues from the last 16\. "
        r"Shorten the prompt to keep its start in view\.\n", err
    )


def test_out_of_memory_is_caught_memory_freed_and_the_checkpoint_kept(world, tmp_path, monkeypatch):
    """A CUDA OOM (raised here on the CPU) becomes a UserError; the trainer drops its optimizer state."""
    from gpt_tui.engine.runs import read_run

    run = Path(_copy_run(world, tmp_path))
    newest = latest_checkpoint(run)
    real = Trainer._make_optimizer

    def failing_optimizer(self, model, device):
        optimizer = real(self, model, device)
        original_step = optimizer.step

        def step(*args, **kwargs):
            if self.step >= 3:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return original_step(*args, **kwargs)

        optimizer.step = step
        return optimizer

    monkeypatch.setattr(Trainer, "_make_optimizer", failing_optimizer)
    trainer = Trainer(TrainConfig(**{**_config(world, run), "max_steps": 6}), resume=str(run))
    with pytest.raises(UserError, match="ran out of memory; use a smaller --batch-size or --context-length, or --grad-accum"):
        trainer.run()
    assert trainer.optimizer is None
    assert all(p.grad is None for p in trainer.model.parameters())
    assert latest_checkpoint(run) == newest
    assert read_run(run).status == "failed"
    assert runlock.holder(run) is None


def test_weights_that_are_not_finite_are_never_saved(world, tmp_path, monkeypatch):
    """A step can leave inf weights behind a finite loss; the next save refuses, the last good checkpoint stays."""
    from gpt_tui.engine.checkpoint import list_checkpoints, load_checkpoint
    from gpt_tui.engine.runs import read_run

    run = tmp_path / "diverging"
    real = Trainer._make_optimizer

    def poisoning_optimizer(self, model, device):
        optimizer = real(self, model, device)
        original_step = optimizer.step

        def step(*args, **kwargs):
            result = original_step(*args, **kwargs)
            if self.step == 2:  # the third update blows a weight up; its loss was computed before
                with torch.no_grad():
                    model.ln_f.weight[0] = float("inf")
            return result

        optimizer.step = step
        return optimizer

    monkeypatch.setattr(Trainer, "_make_optimizer", poisoning_optimizer)
    config = TrainConfig(**{**_config(world, run), "max_steps": 6, "checkpoint_every": 1, "eval_freq": 100})
    with pytest.raises(UserError, match="became NaN or infinite by step 3; they were not saved.*Lower --lr"):
        Trainer(config, init_from=str(world.init)).run()
    saved = list_checkpoints(run)
    assert [p.name for p in saved] == ["step-00000001.safetensors", "step-00000002.safetensors"]
    assert all(torch.isfinite(t).all() for t in load_checkpoint(saved[-1]).model_state.values())
    assert read_run(run).status == "failed"


def _config(world: World, run: Path) -> dict[str, Any]:
    return dict(
        data=str(world.corpus), context_length=16, batch_size=2, max_steps=2, eval_freq=2, eval_iter=1,
        sample_tokens=0, device="cpu", precision="fp32", run_dir=str(run),
    )


# ----- the app's inputs: settings file, theme files, slash commands -----
def _settings_problems(tmp: Path, text: str | bytes) -> list[str]:
    from gpt_tui.tui.config import load_settings

    path = tmp / "settings.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    _settings, problems = load_settings(path)
    return problems


def _theme_problems(tmp: Path, text: str) -> list[str]:
    from gpt_tui.tui.themes import load_themes

    folder = tmp / "themes"
    folder.mkdir(exist_ok=True)
    (folder / "mine.toml").write_text(text, encoding="utf-8")
    empty = tmp / "no-shipped"
    empty.mkdir(exist_ok=True)
    return load_themes(shipped=empty, user=folder).problems


def _slash_error(line: str) -> list[str]:
    from gpt_tui.tui.config import SamplingSettings
    from gpt_tui.tui.slash import run_slash

    try:
        run_slash(line, SamplingSettings())
    except UserError as exc:
        return [str(exc)]
    return []


APP_CASES: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "settings-not-toml": (lambda t: _settings_problems(t, "[training\nbatch_size = = 4"), r"settings\.toml is not valid TOML .*using the defaults"),
    "settings-bad-value": (lambda t: _settings_problems(t, "[sampling]\ntemperature = -1\n"), r"sampling\.temperature: Temperature must be >= 0.*Using the default 0\.8"),
    "settings-wrong-type": (lambda t: _settings_problems(t, "[training]\nbatch_size = \"many\"\n"), r"training\.batch_size: Batch size must be a whole number.*Using the default"),
    "settings-not-utf8": (lambda t: _settings_problems(t, b"[app]\ntheme = '\xff'\n"), r"Cannot read settings\.toml.*using the defaults"),
    "theme-not-toml": (lambda t: _theme_problems(t, "name = 'x'\nprimary = "), r"Skipped your theme: Theme mine\.toml is not valid TOML"),
    "theme-bad-colour": (lambda t: _theme_problems(t, "name = 'x'\nprimary = 'not-a-colour'\n"), r"mine\.toml: primary is not a colour Textual understands.*#rrggbb"),
    "theme-no-name": (lambda t: _theme_problems(t, "primary = '#112233'\n"), r"mine\.toml: a theme needs name ="),
    "slash-negative-temperature": (lambda t: _slash_error("/temp -1"), r"Temperature must be >= 0"),
    "slash-top-k-zero": (lambda t: _slash_error("/topk 0"), r"Top-k must be >= 1"),
    "slash-unknown": (lambda t: _slash_error("/warp 9"), r"Unknown command /warp; use one of"),
}


@pytest.mark.parametrize("case", list(APP_CASES))
def test_bad_app_input_gets_one_clear_message(case, tmp_path):
    build, expected = APP_CASES[case]
    problems = build(tmp_path)
    assert len(problems) == 1, problems
    assert re.search(expected, problems[0]), problems[0]
    assert "\n" not in problems[0].strip()


# ----- fuzzing: only UserError may come out -----
text_values = st.one_of(
    st.text(max_size=12),
    st.text(max_size=8).map(lambda s: "~" + s),  # ~user paths, which pathlib cannot always expand
    st.text(alphabet=string.digits + "-+.eE_xnaif ", max_size=10),
    st.sampled_from(["nan", "inf", "-inf", "1e309", "off", "none", "0", "-0", "1_000", "0x10", "  7 "]),
)
any_values = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-10**20, max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True), text_values,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    max_new_tokens=any_values, temperature=any_values, top_k=any_values, top_p=any_values,
    seed=any_values, num_beams=any_values, length_penalty=any_values, eos_id=any_values,
)
def test_fuzz_sampling_config_only_raises_user_error(**values):
    try:
        SamplingConfig(**values).validate(50257)
    except UserError as exc:
        assert str(exc) and "\n" not in str(exc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.text(max_size=30).map(lambda s: "/" + s),
    st.tuples(st.sampled_from(["temp", "topk", "topp", "max", "seed", "beams", "clear", "help", "TEMP", ""]), text_values)
    .map(lambda pair: f"/{pair[0]} {pair[1]}"),
))
def test_fuzz_slash_commands_only_raise_user_error(line):
    from gpt_tui.tui.config import SamplingSettings, Settings, check_consistency
    from gpt_tui.tui.slash import run_slash

    try:
        result = run_slash(line, SamplingSettings())
    except UserError as exc:
        assert str(exc)
        return
    check_consistency(Settings(sampling=result.sampling))  # whatever a command accepts is a usable setting


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(__import__("gpt_tui.tui.config", fromlist=["ALL_FIELDS"]).ALL_FIELDS)), any_values)
def test_fuzz_settings_values_only_raise_user_error(key, raw):
    from gpt_tui.tui.config import ALL_FIELDS, parse_value

    spec = ALL_FIELDS[key]
    try:
        value = parse_value(spec, raw)
    except UserError as exc:
        assert str(exc)
        return
    if value is not None and spec.kind is not str:
        assert isinstance(value, spec.kind) and not isinstance(value, bool)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(
    st.sampled_from(["app", "training", "sampling", "keys", "other"]),
    st.one_of(any_values, st.dictionaries(st.text(max_size=15), any_values.filter(lambda v: v is not None), max_size=4)),
    max_size=4,
))
def test_fuzz_whole_settings_files_never_raise(data):
    from gpt_tui.tui.config import settings_from_dict

    settings_obj, problems = settings_from_dict(data)
    assert all(isinstance(p, str) and p for p in problems)
    assert settings_obj.sampling.max_new_tokens >= 1


@pytest.fixture(scope="module")
def tiny_model():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small answers faster on one thread, above all on a busy machine
    torch.manual_seed(0)
    yield GPTModel(SMALL).eval()
    torch.set_num_threads(threads)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "\n\n", "<|endoftext|>", "<|endoftext|>" * 3, "\x00\x01", "\ud7ff\U0001f600", "é" * 30]),
))
def test_fuzz_repl_prompts_only_raise_user_error(tiny_model, prompt):
    """Whatever is typed at the REPL (that is not a slash command) is answered or refused with a UserError."""
    from gpt_tui.engine.generation import stream_text

    try:
        pieces = list(stream_text(tiny_model, prompt, SamplingConfig(max_new_tokens=2, temperature=1.0, top_k=5, seed=1)))
    except UserError as exc:
        assert "prompt is empty" in str(exc)
        assert not prompt.strip()
        return
    assert all(isinstance(piece, str) for piece in pieces)
