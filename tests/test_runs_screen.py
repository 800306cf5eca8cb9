"""The Runs screen (F4) and the REPL on an attached run: listing, attaching, deleting, and replies from the run's weights."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pilot import HOLD_LOCK, new_app, screen_text, wait_until
from gpt_tui import paths
from gpt_tui.engine.events import StepEvent
from gpt_tui.engine.runs import WEIGHTS_FILE, read_status, request_control, write_status
from gpt_tui.engine.trainer import Trainer, TrainConfig
from gpt_tui.tui.app import GptTuiApp
from gpt_tui.tui.attach import ComparedRun, RunAttachment, attach_to
from gpt_tui.tui.dialogs import ConfirmDialog
from gpt_tui.tui.run_list import RunsReader, format_age, run_size, visible
from gpt_tui.tui.runs_screen import RunsScreen

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Every effort moves"


def stopped_run(corpus: Path, init: Path, run_dir: Path, stop_at: int = 3) -> Path:
    """A short run of a one-layer model, stopped (not finished) with a checkpoint at ``stop_at``."""
    import torch

    config = TrainConfig(
        data=str(corpus), context_length=16, batch_size=2, max_steps=20, eval_freq=2, eval_iter=1, lr=5e-3,
        warmup_steps=0, sample_tokens=0, device="cpu", precision="fp32", run_dir=str(run_dir),
    )
    trainer: Trainer | None = None

    def stop(event: object) -> None:
        if isinstance(event, StepEvent) and event.step == stop_at:
            trainer.request_stop()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(config, stop, init_from=str(init))
        trainer.run()
    finally:
        torch.set_num_threads(threads)
    assert read_status(run_dir)["state"] == "stopped"
    return run_dir


def cli_generate(capsys, checkpoint: Path, max_new_tokens: int) -> str:
    """What ``gpt-tui generate --checkpoint RUN --temperature 0`` prints after the prompt."""
    from gpt_tui.cli import main

    capsys.readouterr()
    assert main(["generate", "--prompt", PROMPT, "--checkpoint", str(checkpoint), "--temperature", "0",
                 "--max-new-tokens", str(max_new_tokens), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(PROMPT) and out.endswith("\n")
    return out[len(PROMPT):-1]


# ----- pure formatting -----
def test_format_age_and_visible_names():
    assert format_age(5) == "just now"
    assert format_age(90) == "1 min ago"
    assert format_age(3 * 3600 + 5) == "3 h ago"
    assert format_age(2 * 86400 + 10) == "2 days ago"
    assert format_age(-30) == "just now"  # a clock that went back
    shown = visible("run\x1b[31mred\x07\ttab\u202e")
    assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown
    assert shown == "run\\x1b[31mred\\x07\\ttab\\u202e"
    assert visible("plain-20260101-tiny") == "plain-20260101-tiny"


def test_run_size_counts_files_and_never_follows_links(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "metrics.jsonl").write_bytes(b"x" * 100)
    (run / "checkpoints" / "step-00000001.safetensors").write_bytes(b"y" * 1000)
    outside = tmp_path / "big"
    outside.write_bytes(b"z" * 50_000)
    (run / "link").symlink_to(outside)
    (run / "dirlink").symlink_to(tmp_path)
    assert 1100 <= run_size(run) < 1100 + 400  # two files, plus the links themselves at most


def test_the_reader_reads_again_only_runs_whose_files_changed(tmp_path):
    """The Runs screen refreshes every few seconds: ended runs come from the cache until a file of theirs changes."""
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        write_status(tmp_path / name, "stopped", step=1)
        (tmp_path / name / "metrics.jsonl").write_text("")
    reader = RunsReader(tmp_path)
    assert len(reader.read()) == 3 and reader.reread == 3
    assert len(reader.read()) == 3 and reader.reread == 0
    with open(tmp_path / "b" / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"type": "step", "step": 2}) + "\n")
    write_status(tmp_path / "c", "finished", step=1)
    rows = reader.read()
    assert reader.reread == 2 and {r.info.name: r.info.status for r in rows}["c"] == "finished"
    shutil.rmtree(tmp_path / "a")
    assert sorted(r.info.name for r in reader.read()) == ["b", "c"] and reader.reread == 0


# ----- the REPL on an attached run -----
@pytest.mark.anyio
async def test_a_prompt_right_after_attaching_gets_the_runs_checkpoint(corpus_and_init, fast_tui_settings, tmp_path, capsys, monkeypatch):
    """The reply equals `gpt-tui generate` greedy on the run's newest checkpoint, even when typed at once."""
    from gpt_tui.tui import weight_actions as app_module
    from gpt_tui.tui import model_source

    corpus, init = corpus_and_init
    run_dir = stopped_run(corpus, init, tmp_path / "stopped")
    expected = cli_generate(capsys, run_dir, fast_tui_settings.sampling.max_new_tokens)
    app = new_app()
    real_load = model_source.load_model_file

    def load_once_the_reply_started(source: str, device: str):
        """The checkpoint loads only after the reply's worker exists: the prompt always comes first."""
        deadline = time.monotonic() + 30
        while app._reply_worker is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return real_load(source, device)

    monkeypatch.setattr(model_source, "load_model_file", load_once_the_reply_started)
    monkeypatch.setattr(app_module, "load_model_file", load_once_the_reply_started)

    async with app.run_test(size=(110, 34)) as pilot:
        attach_to(app, run_dir)
        app.repl.input.value = PROMPT
        await pilot.press("enter")  # before the checkpoint can have loaded
        await wait_until(pilot, lambda: app.repl.last_reply is not None and bool(app.repl.last_reply.footer),
                         what="the reply")
        assert app.repl.last_reply.text == expected
        assert "step-00000003" in app.repl.last_reply.footer
        await wait_until(pilot, lambda: "Attached to run stopped (step 3)" in screen_text(app), what="the note")


# ----- the Runs screen -----
@pytest.fixture
def runs_on_disk(corpus_and_init, fast_tui_settings):
    """Under the data dir's runs/: a stopped run, a stale copy of it, a damaged one, one with an escape in its name."""
    corpus, init = corpus_and_init
    root = paths.runs_dir()
    root.mkdir(parents=True)
    stopped = stopped_run(corpus, init, root / "alpha")
    stale = root / "beta"
    shutil.copytree(stopped, stale)
    write_status(stale, "running", pid=2**22 + 12345, step=3)  # its process is long gone
    damaged = root / "gamma"
    damaged.mkdir()
    (damaged / "status.json").write_text("[1, 2, 3]\n")
    (damaged / "config.json").write_bytes(b"\xff\xfe not json")
    (damaged / "metrics.jsonl").write_text('{"type": "step", "step": "seven"}\n')
    odd = root / "odd\x1b[31mname"
    odd.mkdir()
    (odd / "config.json").write_text(json.dumps({"model": "tiny\x07"}))
    return {"alpha": stopped, "beta": stale, "gamma": damaged, "odd": odd}


async def open_runs(pilot, app: GptTuiApp) -> RunsScreen:
    await pilot.press("f4")
    await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loads > 0, what="the runs list")
    return app.screen


@pytest.mark.anyio
async def test_the_runs_screen_lists_every_run_and_opens_one(runs_on_disk):
    app = new_app()
    async with app.run_test(size=(120, 36)) as pilot:
        assert "F4 lists your runs" in screen_text(app)
        screen = await open_runs(pilot, app)
        states = {row.info.name: row.info.status for row in screen.rows}
        assert states == {"alpha": "stopped", "beta": "stale", "gamma": "damaged", "odd\x1b[31mname": states["odd\x1b[31mname"]}
        by_name = {row.info.name: row for row in screen.rows}
        assert by_name["alpha"].info.step == 3 and by_name["alpha"].size > 1000
        text = screen_text(app)
        for shown in ("alpha", "stopped", "3/20", "beta", "stale", "gamma", "damaged", "odd\\x1b[31mname", "Open/attach", "Delete"):
            assert shown in text, shown
        assert "\x1b" not in "".join(cell.plain for row in screen.query_one("DataTable")._data.values() for cell in row.values())

        screen.select("alpha")
        await pilot.press("o")
        await wait_until(pilot, lambda: not isinstance(app.screen, RunsScreen), what="the screen to close")
        attachment = app.query_one(RunAttachment)
        assert attachment.run_dir == runs_on_disk["alpha"]
        await wait_until(pilot, lambda: app.progress.step == 3 and app.progress.state == "stopped", what="the run's state")
        await wait_until(pilot, lambda: "step-00000003" in app.model_source.describe(), what="its checkpoint in the REPL")
        assert app.resume_from == str(runs_on_disk["alpha"])  # F5 would continue it

        screen = await open_runs(pilot, app)
        screen.select("alpha")
        await pilot.press("c")  # the run on the chart: nothing to compare
        await wait_until(pilot, lambda: "is the one on the chart" in screen_text(app), what="the refusal")
        screen.select("beta")
        await pilot.press("c")
        await wait_until(pilot, lambda: "beta train" in screen_text(app), what="beta's curves on the chart")
        assert [c.run_dir for c in app.query(ComparedRun)] == [runs_on_disk["beta"]]


@pytest.mark.anyio
async def test_the_runs_screen_deletes_after_asking_and_refuses_live_and_linked_runs(runs_on_disk, tmp_path):
    root = paths.runs_dir()
    live = root / "delta"
    live.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(live)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    (outside / "keep.txt").write_text("precious")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        write_status(live, "running", pid=holder.pid, step=1, total_steps=10)

        app = new_app()
        async with app.run_test(size=(120, 36)) as pilot:
            screen = await open_runs(pilot, app)
            await wait_until(pilot, lambda: {r.info.name for r in screen.rows} >= {"delta", "linked", "beta"}, what="all runs")

            screen.select("beta")
            await pilot.press("d")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the question")
            await pilot.press("n")  # no: nothing goes
            await wait_until(pilot, lambda: app.screen is screen)
            assert runs_on_disk["beta"].is_dir()
            screen.select("beta")
            await pilot.press("d")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the question")
            await pilot.press("y")
            await wait_until(pilot, lambda: not runs_on_disk["beta"].exists(), what="the folder to go")
            await wait_until(pilot, lambda: "beta" not in {r.info.name for r in screen.rows}, what="the list to follow")

            screen.select("delta")
            await pilot.press("d")
            await wait_until(pilot, lambda: "is training" in screen_text(app), what="the refusal")
            assert app.screen is screen and live.is_dir()

            screen.select("linked")
            await pilot.press("d")
            await wait_until(pilot, lambda: "is a link" in screen_text(app), what="the refusal")
            assert app.screen is screen and (outside / "keep.txt").read_text() == "precious"
            assert (root / "linked").is_symlink()
    finally:
        holder.kill()
        holder.wait()
    assert live.is_dir() and runs_on_disk["alpha"].is_dir()


@pytest.mark.anyio
async def test_the_palette_and_help_point_to_the_runs_screen(fast_tui_settings):
    app = new_app()
    async with app.run_test(size=(120, 36)) as pilot:
        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        assert "F4" in commands["Runs"].help
        commands["Runs"].callback()
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen), what="the Runs screen")
        await wait_until(pilot, lambda: "No runs yet" in screen_text(app), what="the empty list")
        await pilot.press("escape")
        await pilot.press("f1")
        await wait_until(pilot, lambda: "app.runs" in screen_text(app), what="F4 in the help")


# ----- a live run hands out its weights -----
def test_a_live_run_writes_its_weights_when_asked(corpus_and_init, tmp_path):
    """The "weights" request: a model-only snapshot of the current weights, the run goes on unharmed."""
    import torch

    from gpt_tui.engine.checkpoint import load_checkpoint

    corpus, init = corpus_and_init
    run_dir = tmp_path / "live"
    config = TrainConfig(
        data=str(corpus), context_length=16, batch_size=2, max_steps=8, eval_freq=4, eval_iter=1, lr=5e-3,
        warmup_steps=0, sample_tokens=0, device="cpu", precision="fp32", run_dir=str(run_dir),
    )
    at_two = threading.Event()
    trainer: Trainer | None = None

    def pause_at_two(event: object) -> None:
        if isinstance(event, StepEvent) and event.step == 2:
            trainer.pause()
            at_two.set()

    trainer = Trainer(config, pause_at_two, init_from=str(init))
    worker = threading.Thread(target=trainer.run)
    worker.start()
    try:
        assert at_two.wait(60)
        request_control(run_dir, "weights")
        target = run_dir / WEIGHTS_FILE
        deadline = time.monotonic() + 30
        while not target.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        saved = load_checkpoint(target)
        assert saved.kind == "model" and saved.train_state["step"] == 2
        current = trainer.snapshot_model().state_dict()
        assert set(saved.model_state) <= set(current)
        for name, tensor in saved.model_state.items():
            assert torch.equal(tensor, current[name]), name
    finally:
        trainer.unpause()
        worker.join(60)
    assert read_status(run_dir)["state"] == "finished" and trainer.step == 8
    assert not target.exists()  # a model-sized file only a live run needs: gone once the run ends


LIVE_TRAINER = (
    "import sys\n"
    "from gpt_tui.engine.events import StepEvent\n"
    "from gpt_tui.engine.trainer import Trainer, TrainConfig\n"
    "corpus, init, run_dir = sys.argv[1:4]\n"
    "config = TrainConfig(data=corpus, context_length=16, batch_size=2, max_steps=1000, eval_freq=500, eval_iter=1,\n"
    "                     lr=5e-3, warmup_steps=0, sample_tokens=0, device='cpu', precision='fp32', run_dir=run_dir)\n"
    "trainer = None\n"
    "def on_event(event):\n"
    "    if isinstance(event, StepEvent) and event.step == 2:\n"
    "        trainer.pause()\n"
    "        print('paused', flush=True)\n"
    "trainer = Trainer(config, on_event, init_from=init)\n"
    "trainer.run()\n"
)


@pytest.mark.anyio
@pytest.mark.slow  # a training process of its own: seconds to start on a busy machine
async def test_a_prompt_to_an_attached_live_run_gets_its_current_weights(corpus_and_init, fast_tui_settings, tmp_path, capsys):
    """A run training in another process: the reply comes from the weights it has now, asked for through its control channel."""
    corpus, init = corpus_and_init
    run_dir = tmp_path / "live"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    trainer = subprocess.Popen([sys.executable, "-c", LIVE_TRAINER, str(corpus), str(init), str(run_dir)],
                               stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert trainer.stdout.readline().strip() == "paused"

        app = new_app()
        async with app.run_test(size=(110, 34)) as pilot:
            attach_to(app, run_dir)
            app.repl.input.value = PROMPT
            await pilot.press("enter")
            await wait_until(pilot, lambda: app.repl.last_reply is not None and bool(app.repl.last_reply.footer),
                             what="the reply")
            assert "live weights (step 2)" in app.repl.last_reply.footer
            reply = app.repl.last_reply.text
            await wait_until(pilot, lambda: "Attached to run live (training in another process, step 2)" in screen_text(app),
                             what="the note")
            assert app.progress.state in ("running", "paused")
        assert (run_dir / WEIGHTS_FILE).is_file()
        assert reply == cli_generate(capsys, run_dir / WEIGHTS_FILE, fast_tui_settings.sampling.max_new_tokens)
        assert trainer.poll() is None  # quitting the app left it training
        request_control(run_dir, "stop")
        assert trainer.wait(60) == 0
    finally:
        if trainer.poll() is None:
            trainer.kill()


@pytest.mark.anyio
async def test_attaching_from_the_runs_screen_and_quitting_says_the_run_goes_on(fast_tui_settings, capsys):
    """A live run in another process: listed as running, attached from the screen; quitting leaves it and says how to come back."""
    root = paths.runs_dir()
    live = root / "epsilon"
    live.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(live)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        write_status(live, "running", pid=holder.pid, step=1, total_steps=10)

        capsys.readouterr()
        app = new_app()
        async with app.run_test(size=(120, 36)) as pilot:
            screen = await open_runs(pilot, app)
            assert [(r.info.name, r.info.status, r.live) for r in screen.rows] == [("epsilon", "running", True)]
            await pilot.press("r")  # it trains elsewhere: not resumed here
            await wait_until(pilot, lambda: "training already" in screen_text(app), what="the refusal")
            await pilot.press("enter")
            await wait_until(pilot, lambda: app.progress.state == "running" and bool(app.query(RunAttachment)), what="the attached run")
            await pilot.press("ctrl+q")
        assert holder.poll() is None and not (live / "control").exists()
        note = " ".join(capsys.readouterr().err.split())  # printed once the app has closed
        assert "Run epsilon keeps training in the background; `gpt-tui attach epsilon` or the Runs screen (F4) shows it again." in note
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.anyio
@pytest.mark.slow
async def test_a_background_run_is_in_the_runs_screen_and_quitting_says_it_goes_on(fast_tui_settings, monkeypatch, capsys):
    """The palette's "Train: in the background": listed live in F4, attached from there, still training after quit."""
    from dataclasses import replace

    from gpt_tui.engine import runlock
    from gpt_tui.tui.config import save_settings

    save_settings(replace(fast_tui_settings, training=replace(fast_tui_settings.training, max_steps=100_000)))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    started: list[Path] = []

    capsys.readouterr()
    try:
        app = new_app()
        async with app.run_test(size=(120, 36)) as pilot:
            app.action_train_background()
            await wait_until(pilot, lambda: bool(app.query(RunAttachment)) and app.query_one(RunAttachment).live,
                             timeout=120, what="the background run to train")
            run_dir = app.query_one(RunAttachment).run_dir
            started.append(run_dir)
            screen = await open_runs(pilot, app)
            await wait_until(pilot, lambda: any(r.info.path == run_dir and r.live and not r.here for r in screen.rows),
                             what="the run listed as live")
            screen.select(run_dir.name)
            await pilot.press("o")
            await wait_until(pilot, lambda: not isinstance(app.screen, RunsScreen), what="the screen to close")
            await wait_until(pilot, lambda: [a.run_dir for a in app.query(RunAttachment)] == [run_dir] and app.progress.active,
                             what="the run attached again")
            await wait_until(pilot, lambda: runlock.holder(run_dir) not in (None, os.getpid()), timeout=120,
                             what="its trainer to take the run")
            await pilot.press("ctrl+q")  # no question: the run is not this app's to stop
        run_dir = started[0]
        assert runlock.holder(run_dir) not in (None, os.getpid())  # it trains on
        note = " ".join(capsys.readouterr().err.split())
        assert f"Run {run_dir.name} keeps training in the background; `gpt-tui attach {run_dir.name}`" in note
    finally:
        for run_dir in started:  # a trainer drops requests left before it started: ask once it holds the run
            deadline = time.monotonic() + 120
            while runlock.holder(run_dir) is None and read_status(run_dir).get("state") == "starting" and time.monotonic() < deadline:
                time.sleep(0.1)
            request_control(run_dir, "stop")
            while runlock.holder(run_dir) is not None and time.monotonic() < deadline:
                time.sleep(0.1)
            pid = runlock.holder(run_dir)
            if pid:
                os.kill(pid, signal.SIGKILL)


@pytest.mark.anyio
async def test_resume_from_the_runs_screen_continues_the_same_run(runs_on_disk):
    """r on a stopped run: it trains on in the app, in its own folder, from its checkpoint, no step twice."""
    alpha = runs_on_disk["alpha"]

    app = new_app()
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_runs(pilot, app)
        screen.select("gamma")
        await pilot.press("r")
        await wait_until(pilot, lambda: "no checkpoint" in screen_text(app), what="the refusal")
        screen.select("alpha")
        await pilot.press("r")
        await wait_until(pilot, lambda: app.progress.state == "finished", timeout=120, what="the resumed run to finish")
        assert app.progress.run_dir == str(alpha) and app.progress.step == 20
    steps = [json.loads(line)["step"] for line in (alpha / "metrics.jsonl").read_text().splitlines()
             if json.loads(line).get("type") == "step"]
    assert steps == list(range(1, 21))
    assert read_status(alpha)["state"] == "finished"
