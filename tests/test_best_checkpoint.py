"""The best checkpoint (``checkpoints/best.safetensors``, ``RUN@best``) and ``--early-stop``.

The validation losses the keeper sees are scripted (``script_val_losses``), so
which evaluation is the best, and when a run stops early, is known in advance;
the weights, the pruning and the resume are a real run's.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from pilot import new_app, screen_text, wait_until
from gpt_tui import paths
from gpt_tui.engine import events as ev
from gpt_tui.engine.best_checkpoint import BestKeeper, best_reference, read_best
from gpt_tui.engine.checkpoint import list_checkpoints, load_checkpoint, resolve_checkpoint_path
from gpt_tui.engine.checkpoint_names import BEST_NAME, best_checkpoint_path
from gpt_tui.engine.runs import read_run, read_status
from gpt_tui.engine.train_progress import TrainProgress
from gpt_tui.engine.trainer import Trainer, TrainConfig, resume_config
from gpt_tui.errors import UserError

PROMPT = "Every effort moves"


@pytest.fixture(autouse=True)
def one_thread():
    """These runs are tiny: one thread is faster than several fighting over a busy machine's cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def script_val_losses(monkeypatch, losses: dict[int, float], default: float = 9.0) -> None:
    """The validation loss the keeper counts at each step is ``losses[step]`` (``default`` elsewhere)."""
    real = BestKeeper.evaluated

    def scripted(self, progress, val_loss, stop):
        return real(self, progress, losses.get(progress.step, default), stop)

    monkeypatch.setattr(BestKeeper, "evaluated", scripted)


def small_config(corpus: Path, run_dir: Path, **changes) -> TrainConfig:
    base = dict(
        data=str(corpus), context_length=16, batch_size=2, max_steps=16, eval_freq=1, eval_iter=1, lr=5e-3,
        warmup_steps=0, sample_tokens=0, device="cpu", precision="fp32", run_dir=str(run_dir), checkpoint_minutes=0,
    )
    base.update(changes)
    return TrainConfig(**base)


def train(config: TrainConfig, on_event=None, **kwargs) -> ev.DoneEvent:
    return Trainer(config, on_event, **kwargs).run()


def same_weights(a: Path, b: Path) -> bool:
    left, right = load_checkpoint(a).model_state, load_checkpoint(b).model_state
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def step_losses(run_dir: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if r["type"] == "step"}


# ----- the keeper and the counters, on a controlled sequence -----
def test_improvement_is_strictly_lower_and_early_stop_waits_for_n_evaluations(tmp_path):
    keeper = BestKeeper(tmp_path, patience=3)
    progress = TrainProgress()
    stops: list[tuple[int, str]] = []
    for step, loss in enumerate([5.0, 4.0, 3.0, 3.5, 3.0, float("nan"), 2.9, 3.1, 3.2, 3.3, 3.4]):
        progress.step = step
        keeper.evaluated(progress, loss, lambda why, step=step: stops.append((step, why)))
        if step == 6:
            assert keeper.pending == 6 and progress.evals_since_best == 0
    # 3.0 again at step 4 is no improvement, nor is NaN; 2.9 at step 6 is, so the count starts over there
    assert progress.best_step == 6 and progress.best_val_loss == 2.9
    assert [s for s, _ in stops] == [5, 9, 10]
    assert stops[0][1] == "early stop: no val improvement in 3 evaluations (best 3.000 at step 2)"
    again = TrainProgress.from_state(progress.to_state({}))
    assert (again.best_step, again.best_val_loss, again.evals_since_best) == (6, 2.9, 4)


def test_the_keeper_writes_only_the_pending_step_and_only_on_the_main_process(tmp_path):
    written: list[Path] = []
    main, other = BestKeeper(tmp_path, None), BestKeeper(tmp_path, None, is_main=False)
    progress = {main: TrainProgress(step=4), other: TrainProgress(step=4)}
    for keeper in (main, other):
        keeper.evaluated(progress[keeper], 1.0, lambda why: None)
        keeper.settle(5, written.append)  # the weights changed already: too late, nothing is written
        assert written == [] and keeper.pending is None
        keeper.evaluated(progress[keeper], 0.9, lambda why: None)
    other.settle(4, written.append)
    main.settle(4, written.append)
    assert written == [best_checkpoint_path(tmp_path)]


def test_a_run_resumed_from_before_its_best_keeps_the_lower_best_file(tmp_path):
    from safetensors.torch import save_file

    path = best_checkpoint_path(tmp_path)
    path.parent.mkdir(parents=True)
    state = {"train_state": {"best_step": 40, "best_val_loss": 1.0}}  # written later in a path the resume abandons
    save_file({"x": torch.zeros(1)}, str(path), metadata={"gpt_tui": json.dumps(state)})
    keeper, progress = BestKeeper(tmp_path, None), TrainProgress(step=20)
    keeper.evaluated(progress, 2.0, lambda why: None)  # the resumed run's own best so far: no file replaced
    assert keeper.pending is None and progress.best_val_loss == 2.0
    progress.step = 25
    keeper.evaluated(progress, 0.5, lambda why: None)  # lower than the file's: this one is kept
    assert keeper.pending == 25


# ----- a real run -----
def test_the_best_checkpoint_survives_pruning_of_ten_later_checkpoints(corpus_and_init, tmp_path, monkeypatch):
    corpus, init = corpus_and_init
    # evaluated before training, then after updates 1, 3, ..., 15 (the book's schedule with eval_freq 2)
    script_val_losses(monkeypatch, {0: 5.0, 1: 2.0} | {s: 2.5 + 0.01 * s for s in range(3, 15, 2)} | {15: 2.01})
    run = tmp_path / "run"
    kept = tmp_path / "step-1-copy.safetensors"

    def copy_step_one(event):
        if isinstance(event, ev.CheckpointEvent) and event.step == 1:
            shutil.copy(event.path, kept)
            assert os.stat(best_checkpoint_path(run)).st_ino == os.stat(event.path).st_ino  # a link, not a second write

    done = train(small_config(corpus, run, max_steps=15, eval_freq=2, checkpoint_every=1), copy_step_one, init_from=str(init))
    assert done.step == 15 and kept.is_file()  # saved at every step; steps 2 to 12 pruned after the best at 1
    assert [p.name for p in list_checkpoints(run)] == [f"step-{s:08d}.safetensors" for s in (13, 14, 15)]
    best = best_checkpoint_path(run)
    assert best.is_file() and same_weights(best, kept)
    state = load_checkpoint(best).train_state
    assert (state["step"], state["best_step"], state["best_val_loss"]) == (1, 1, 2.0)
    assert read_best(run) == read_run(run).best_checkpoint
    assert read_best(run).step == 1 and read_best(run).val_loss == 2.0
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]  # no temporary file left


def test_a_best_between_saves_holds_the_weights_of_its_step(corpus_and_init, tmp_path, monkeypatch):
    """No step checkpoint at the best evaluation: its weights are written before the next step changes them."""
    corpus, init = corpus_and_init
    script_val_losses(monkeypatch, {0: 5.0, 1: 4.0, 3: 3.0, 5: 3.5, 7: 3.2, 10: 3.9})  # 10: the final evaluation
    run = tmp_path / "run"
    train(small_config(corpus, run, max_steps=10, eval_freq=2), init_from=str(init))
    reference = tmp_path / "reference"  # the same run, ended at step 3: its final checkpoint is step 3's weights
    train(small_config(corpus, reference, max_steps=3, eval_freq=2), init_from=str(init))
    assert [p.name for p in list_checkpoints(run)] == ["step-00000010.safetensors"]
    assert read_best(run).step == 3 and same_weights(best_checkpoint_path(run), list_checkpoints(reference)[-1])
    assert not same_weights(best_checkpoint_path(run), list_checkpoints(run)[-1])


def test_run_at_best_works_wherever_a_checkpoint_is_named(corpus_and_init, monkeypatch, capsys):
    from gpt_tui.cli import main
    from gpt_tui.engine.weights import load_model

    corpus, init = corpus_and_init
    script_val_losses(monkeypatch, {0: 5.0, 1: 4.0, 3: 3.0, 5: 3.5, 7: 3.2})
    run = paths.runs_dir() / "alpha"
    train(small_config(corpus, run, max_steps=8, eval_freq=2), init_from=str(init))
    best = best_checkpoint_path(run)
    assert best_reference("alpha@best") == best == resolve_checkpoint_path(f"{run}@best")
    loaded = load_model("alpha@best").model
    expected = load_checkpoint(best).model_state
    assert all(torch.equal(loaded.state_dict()[k], expected[k]) for k in expected)

    capsys.readouterr()
    assert main(["generate", "--checkpoint", "alpha@best", "--prompt", PROMPT, "--temperature", "0",
                 "--max-new-tokens", "4", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith(PROMPT)
    assert main(["eval", "--checkpoint", "alpha@best", "--device", "cpu", "--batch-size", "2"]) == 0
    assert "val:" in capsys.readouterr().out
    assert main(["runs"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("alpha "))
    assert "@3" in line.split()

    # --resume takes it too (--init-from reads it as load_model does above): the resumed run goes on from step 3
    assert resume_config("alpha@best").max_steps == 8
    assert Trainer(resume_config(f"{run}@best", {"max_steps": 6}), resume=f"{run}@best").run().step == 6

    (paths.runs_dir() / "beta").mkdir()
    with pytest.raises(UserError, match="beta has no best checkpoint yet"):
        best_reference("beta@best")
    with pytest.raises(UserError, match="No run 'gamma'"):
        best_reference("gamma@best")
    assert main(["generate", "--checkpoint", "gamma@best", "--prompt", PROMPT]) == 2
    assert capsys.readouterr().err.count("\n") == 1


# ----- --early-stop -----
EARLY = {0: 5.0, 1: 4.0, 3: 3.0, 5: 3.5, 7: 3.2, 9: 3.1, 11: 2.0, 13: 2.5}  # eval_freq 2: after updates 1, 3, 5, ...


def test_early_stop_stops_at_the_right_evaluation_and_says_why(corpus_and_init, tmp_path, monkeypatch, capsys):
    from gpt_tui.cli import main

    corpus, init = corpus_and_init
    script_val_losses(monkeypatch, EARLY)
    run = tmp_path / "run"
    assert main(["train", "--data", str(corpus), "--init-from", str(init), "--context-length", "16", "--batch-size", "2",
                 "--max-steps", "20", "--eval-freq", "2", "--eval-iter", "1", "--sample-tokens", "0", "--device", "cpu",
                 "--precision", "fp32", "--run-dir", str(run), "--early-stop", "2", "--quiet"]) == 0
    why = "early stop: no val improvement in 2 evaluations (best 3.000 at step 3)"
    out = capsys.readouterr().out
    assert "Stopped at step 7 " in out and why in out
    status = read_status(run)
    assert (status["state"], status["step"], status["reason"]) == ("stopped", 7, why)
    assert load_checkpoint(list_checkpoints(run)[-1]).train_state["evals_since_best"] == 2
    assert read_best(run).step == 3


def test_early_stop_counts_on_across_a_resume_and_the_resumed_run_is_exact(corpus_and_init, tmp_path, monkeypatch):
    corpus, init = corpus_and_init
    script_val_losses(monkeypatch, EARLY)
    changes = dict(max_steps=14, eval_freq=2, early_stop=3, drop_rate=0.1)
    unbroken = tmp_path / "unbroken"
    done = train(small_config(corpus, unbroken, **changes), init_from=str(init))
    assert done.step == 9 and done.stop_reason.startswith("early stop: no val improvement in 3 evaluations")

    broken = tmp_path / "broken"
    holder: dict = {}

    def stop_at_six(event):  # one evaluation without improvement counted (step 5), two to go
        if isinstance(event, ev.StepEvent) and event.step == 6:
            holder["trainer"].request_stop()

    holder["trainer"] = Trainer(small_config(corpus, broken, **changes), stop_at_six, init_from=str(init))
    assert holder["trainer"].run().step == 6
    torch.manual_seed(999)  # a different process state must not matter
    resumed = Trainer(resume_config(str(broken)), resume=str(broken)).run()
    assert (resumed.step, resumed.stop_reason) == (9, done.stop_reason)
    assert step_losses(broken) == step_losses(unbroken)

    # the early-stopped run, continued without --early-stop, is the run that never had it
    full = tmp_path / "full"
    train(small_config(corpus, full, **{**changes, "early_stop": None}), init_from=str(init))
    assert Trainer(resume_config(str(broken), {"early_stop": None}), resume=str(broken)).run().step == 14
    assert step_losses(broken) == step_losses(full) and len(step_losses(full)) == 14
    assert read_best(broken).step == read_best(full).step == 11
    assert same_weights(best_checkpoint_path(broken), best_checkpoint_path(full))


# ----- the app -----
@pytest.mark.anyio
async def test_the_runs_and_checkpoints_screens_show_the_best_and_load_it(corpus_and_init, fast_tui_settings, monkeypatch):
    from gpt_tui.tui.runs_screen import RunsScreen
    from gpt_tui.tui.settings import SettingsScreen

    corpus, init = corpus_and_init
    script_val_losses(monkeypatch, {0: 5.0, 1: 4.0, 3: 3.0, 5: 3.5, 7: 3.2})
    run = paths.runs_dir() / "alpha"
    train(small_config(corpus, run, max_steps=8, eval_freq=2), init_from=str(init))
    best = best_checkpoint_path(run)
    app = new_app()
    async with app.run_test(size=(130, 40)) as pilot:
        await pilot.press("f4")
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loads > 0, what="the runs list")
        assert "@3" in screen_text(app)
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, RunsScreen), what="the Runs screen to close")
        await pilot.press("f3")
        await wait_until(pilot, lambda: isinstance(app.screen, SettingsScreen), what="checkpoints tab")
        panel = app.screen.checkpoints
        entry = next(e for e in panel.entries if e.path.name == BEST_NAME)
        assert entry.step == 3 and "best, val 3.000" in entry.label
        assert "best, val 3.000" in screen_text(app)
        panel.reload(select=str(best))
        await pilot.click("#ckpt-load")
        await wait_until(pilot, lambda: app.model_source.kind == "loaded", what="load")
        assert app.model_source.loaded.path == str(best)
