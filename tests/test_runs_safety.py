"""A run's files decide nothing dangerous alone: stop signals only the run's own process, damaged runs are named.

The stop tests run the real ``gpt-tui stop`` in a subprocess against unrelated
live processes. That subprocess refuses to send any signal to a pid of 1 or
below (those address many processes at once), so that a regression fails the
test instead of signalling every process of the user.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gpt_tui import paths
from gpt_tui.cli import main
from gpt_tui.engine.events import EvalEvent, StepEvent, event_to_record, record_to_event
from gpt_tui.engine.process_identity import start_time
from gpt_tui.engine.runlock import LOCK_FILE
from gpt_tui.engine.runs import read_metrics, read_run, read_status, request_control, run_is_live, write_status

ROOT = Path(__file__).resolve().parents[1]
GUARDED_CLI = (
    "import os, signal, sys\n"
    "real_kill = os.kill\n"
    "def kill(pid, sig):\n"
    "    if isinstance(pid, int) and pid <= 1 and sig != 0:\n"
    "        sys.stderr.write(f'GUARD: refused signal {sig} to pid {pid}\\n')\n"
    "        os._exit(99)\n"
    "    return real_kill(pid, sig)\n"
    "os.kill = kill\n"
    "from gpt_tui.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _gpt_tui(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", GUARDED_CLI, *args], capture_output=True, text=True, env=env,
                          timeout=60, stdin=subprocess.DEVNULL)


def _run_folder(root: Path, name: str, status: object, **files: str) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"model": "tiny"}), encoding="utf-8")
    (run / "status.json").write_text(status if isinstance(status, str) else json.dumps(status), encoding="utf-8")
    for file_name, text in files.items():
        (run / file_name.replace("_", ".")).write_text(text, encoding="utf-8")
    return run


@pytest.fixture
def bystander():
    """A live process that has nothing to do with gpt-tui."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _assert_survives(proc: subprocess.Popen) -> None:
    """The process does not end within a moment (a signal sent to it would have ended it by then)."""
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.5)


@pytest.mark.parametrize("pid", [-1, 0, 1], ids=["minus-one", "zero", "one"])
def test_stop_never_signals_a_pid_that_addresses_many_processes(tmp_path, pid, bystander):
    run = _run_folder(tmp_path, "run", {"state": "running", "pid": pid, "step": 3})
    done = _gpt_tui("stop", str(run))
    assert "GUARD" not in done.stderr, done.stderr
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpt-tui: error: Run run is stale")
    assert f"pid {pid}" in lines[0] and "nothing was signalled" in lines[0]
    _assert_survives(bystander)


@pytest.mark.parametrize("state", ["running", "paused", "starting"])
def test_stop_leaves_alone_a_live_process_that_only_shares_the_pid(tmp_path, state, bystander):
    # The pid is alive, but the run never recorded that process (or recorded another start time).
    status = {"state": state, "pid": bystander.pid, "step": 3}
    if state == "starting":
        status["pid_start"] = start_time(bystander.pid) - 1
    run = _run_folder(tmp_path, "run", status)
    assert read_run(run).status == "stale"
    done = _gpt_tui("stop", str(run))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"process {bystander.pid} is alive but is not its trainer" in lines[0]
    _assert_survives(bystander)
    assert read_status(run)["state"] == state  # nothing rewritten


def test_stop_on_a_string_pid_says_the_run_is_damaged(tmp_path, bystander):
    run = _run_folder(tmp_path, "run", {"state": "running", "pid": str(bystander.pid)})
    done = _gpt_tui("stop", str(run))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Run run is damaged" in lines[0] and "pid" in lines[0]
    _assert_survives(bystander)


def test_stop_signals_a_starting_run_whose_launcher_recorded_that_very_process(tmp_path, bystander):
    run = tmp_path / "run"
    run.mkdir()
    # As the detach launcher records its child: the pid and its start time.
    write_status(run, "starting", pid=bystander.pid, pid_start=start_time(bystander.pid))
    assert read_run(run).status == "starting"
    done = _gpt_tui("stop", str(run))
    assert done.returncode == 0, done.stderr
    assert f"process {bystander.pid}" in done.stdout
    assert bystander.wait(timeout=10) != 0  # it got the SIGTERM
    assert read_status(run)["state"] == "stopped"


# ----- damaged run folders -----
GOOD_STEP = json.dumps(event_to_record(StepEvent(step=4, epoch=1, tokens_seen=64, loss=5.0, lr=1e-3, grad_norm=1.0,
                                                 tokens_per_sec=10.0, elapsed=1.0, total_steps=4))) + "\n"
GOOD_EVAL = json.dumps(event_to_record(EvalEvent(step=4, epoch=1, tokens_seen=64, train_loss=5.0, val_loss=5.5))) + "\n"
DAMAGES = {
    "status-list": ({"status": "[1, 2]"}, "status.json is not a JSON object"),
    "status-bytes": ({"status": "\x00\x9f garbage {"}, "status.json"),
    "status-string-pid": ({"status": {"state": "running", "pid": "1234"}}, "pid"),
    "status-bool-pid": ({"status": {"state": "running", "pid": True}}, "pid"),
    "status-state-number": ({"status": {"state": 3, "pid": 5}}, "state"),
    "config-list": ({"config": "[]"}, "config.json is not a JSON object"),
    "config-bytes": ({"config": "{not json"}, "config.json"),
    "metrics-string-step": ({"metrics": GOOD_STEP.replace('"step": 4', '"step": "4"', 1)}, "metrics.jsonl line 1: step"),
    "metrics-list-line": ({"metrics": GOOD_STEP + "[1, 2]\n"}, "metrics.jsonl line 2"),
}


def _damaged_folder(root: Path, name: str, damage: dict) -> Path:
    run = root / name
    run.mkdir(parents=True)
    status = damage.get("status", {"state": "finished", "pid": 12345, "step": 4, "total_steps": 4})
    config = damage.get("config", json.dumps({"model": "tiny"}))
    metrics = damage.get("metrics", GOOD_STEP)
    (run / "status.json").write_bytes(status.encode("latin-1") if isinstance(status, str) else json.dumps(status).encode())
    (run / "config.json").write_text(config, encoding="utf-8")
    (run / "metrics.jsonl").write_text(metrics, encoding="utf-8")
    return run


@pytest.mark.parametrize("name", sorted(DAMAGES))
def test_each_kind_of_damage_is_reported_with_its_reason(tmp_path, name):
    damage, why = DAMAGES[name]
    info = read_run(_damaged_folder(tmp_path, name, damage))
    assert info.status == "damaged"
    assert info.problem is not None and why in info.problem and len(info.problem) < 80


def test_runs_lists_damaged_runs_as_damaged_and_the_others_normally(tmp_path, capsys):
    root = tmp_path / "runs"
    for name, (damage, _why) in DAMAGES.items():
        _damaged_folder(root, name, damage)
    _damaged_folder(root, "healthy", {"metrics": GOOD_STEP + GOOD_EVAL})
    assert main(["runs", "--dir", str(root)]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert set(rows) == {*DAMAGES, "healthy"}
    assert rows["healthy"].split()[1:4] == ["finished", "4/4", "5.500"] and " tiny " in rows["healthy"]
    for name, (_damage, why) in DAMAGES.items():
        assert rows[name].split()[1] == "damaged" and why in rows[name], rows[name]


def test_attach_on_a_damaged_run_is_one_error_line(tmp_path):
    run = _damaged_folder(tmp_path, "broken", {"status": "[1, 2]"})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "gpt_tui", "attach", str(run)], capture_output=True, text=True,
                          env=env, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [f"gpt-tui: error: Run broken is damaged (status.json is not a JSON object); repair or remove {run}."]


def test_metrics_readers_skip_records_of_the_wrong_shape(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    bad_loss = GOOD_STEP.replace('"loss": 5.0', '"loss": "high"', 1)
    (run / "metrics.jsonl").write_text(bad_loss + "17\n" + '{"type": ["step"]}\n' + GOOD_STEP, encoding="utf-8")
    problems: list[str] = []
    events, offset = read_metrics(run, problems=problems)
    assert [type(e) for e in events] == [StepEvent] and offset == (run / "metrics.jsonl").stat().st_size
    assert problems == ["metrics.jsonl line 1: loss is not a number", "metrics.jsonl line 2: not a JSON object"]
    with pytest.raises(ValueError, match="step is not an integer"):
        record_to_event({**json.loads(GOOD_STEP), "step": True})


# ----- live or not: the lock and the recorded identity decide, never a bare pid -----
def test_a_finished_run_whose_old_pid_lives_again_is_not_live(tmp_path, bystander):
    run = _run_folder(tmp_path, "run", {"state": "finished", "pid": bystander.pid, "step": 4})
    assert not run_is_live(run, read_status(run))
    for state in ("running", "paused"):
        write_status(run, state, pid=bystander.pid, pid_start=None)  # an older run's record, no start time
        assert read_run(run).status == "stale"


@pytest.mark.anyio
async def test_attach_shows_a_finished_run_as_finished_though_its_pid_lives(tmp_path, bystander):
    from pilot import new_app, wait_until
    from gpt_tui.tui.attach import attach_to

    run = _run_folder(tmp_path, "run", {"state": "finished", "pid": bystander.pid, "step": 4, "total_steps": 4},
                      metrics_jsonl=GOOD_STEP)

    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        attachment = attach_to(app, run)
        await wait_until(pilot, lambda: attachment.polls >= 2, what="the attachment to read the run")
        assert app.progress.state == "finished" and not attachment.live and app.trainer is None


def test_a_paused_run_says_paused_in_its_status_and_in_runs(corpus_and_init, tmp_path):
    from gpt_tui.engine.trainer import Trainer, TrainConfig

    corpus, init = corpus_and_init
    run = tmp_path / "run"
    seen: list = []
    config = TrainConfig(data=str(corpus), context_length=16, batch_size=2, max_steps=100_000, eval_freq=50, eval_iter=1,
                         sample_tokens=0, device="cpu", precision="fp32", run_dir=str(run))
    trainer = Trainer(config, seen.append, init_from=str(init))
    thread = threading.Thread(target=trainer.run)
    thread.start()

    def wait(predicate, what: str) -> None:
        deadline = time.monotonic() + 60
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.02)

    try:
        wait(lambda: any(isinstance(e, StepEvent) for e in seen), "a step")
        me = [str(os.getpid()), str(start_time(os.getpid()))]  # the trainer's identity, in its lock and its status
        assert (run / LOCK_FILE).read_text(encoding="ascii").split() == me
        assert [str(read_status(run)["pid"]), str(read_status(run)["pid_start"])] == me
        request_control(run, "pause")
        wait(lambda: read_status(run).get("state") == "paused", "status.json to say paused")
        assert trainer.paused and read_run(run).status == "paused"
        request_control(run, "resume")
        wait(lambda: read_status(run).get("state") == "running", "status.json to say running again")
        assert read_run(run).status == "running"
    finally:
        trainer.request_stop()
        thread.join(timeout=60)
    assert read_run(run).status == "stopped"


# ----- import does not replace a model without being told to -----
def test_import_refuses_to_replace_a_model_without_force(corpus_and_init, tmp_path, capsys):
    _corpus, init = corpus_and_init
    assert main(["import", str(init), "--name", "mine"]) == 0
    target = paths.models_dir() / "mine.safetensors"
    before = target.read_bytes()
    other = tmp_path / "other.safetensors"
    _save_other_model(other)
    capsys.readouterr()
    assert main(["import", str(other), "--name", "mine"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(target) in err[0] and "--force" in err[0]
    assert target.read_bytes() == before
    assert main(["import", str(other), "--name", "mine", "--force"]) == 0
    assert target.read_bytes() != before


def _save_other_model(path: Path) -> None:
    import torch

    from gpt_tui.engine.checkpoint import save_checkpoint
    from gpt_tui.engine.model import GPTConfig, GPTModel

    torch.manual_seed(1)
    save_checkpoint(path, GPTModel(GPTConfig(context_length=16, emb_dim=16, n_layers=1, n_heads=2, drop_rate=0.0, tie_weights=True)))


@pytest.mark.anyio
async def test_the_app_asks_before_an_import_replaces_a_model(corpus_and_init, tmp_path):
    from pilot import new_app, wait_until
    from gpt_tui.engine.weights import import_weights
    from gpt_tui.tui.checkpoints import CheckpointsPanel
    from gpt_tui.tui.dialogs import ConfirmDialog

    _corpus, init = corpus_and_init
    target = import_weights(init)
    other = tmp_path / "elsewhere" / init.name  # the same default name, other weights
    other.parent.mkdir()
    _save_other_model(other)
    before = target.read_bytes()

    app = new_app()
    async with app.run_test(size=(110, 34)) as pilot:
        app.post_message(CheckpointsPanel.Requested("import", str(other)))
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the question")
        assert target.name in app.screen.question
        await pilot.press("n")
        await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmDialog), what="the answer")
        assert target.read_bytes() == before and app.model_source.kind != "loaded"
        app.post_message(CheckpointsPanel.Requested("import", str(other)))
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the question again")
        await pilot.press("y")
        await wait_until(pilot, lambda: app.model_source.kind == "loaded", what="the replaced model in the REPL")
        assert target.read_bytes() != before


# ----- generate and eval take a run name as `gpt-tui runs` prints it -----
def test_generate_and_eval_accept_a_run_name(corpus_and_init, capsys):
    from gpt_tui.engine.trainer import Trainer, TrainConfig

    corpus, init = corpus_and_init
    run = paths.runs_dir() / "20260101-000000-tiny"
    Trainer(TrainConfig(data=str(corpus), context_length=16, batch_size=2, max_steps=2, eval_freq=50, eval_iter=1,
                        sample_tokens=0, device="cpu", precision="fp32", run_dir=str(run)), init_from=str(init)).run()
    assert main(["runs"]) == 0
    assert run.name in capsys.readouterr().out
    outputs = {}
    for source in (run.name, str(run)):
        assert main(["generate", "--checkpoint", source, "--prompt", "Every effort", "--max-new-tokens", "4",
                     "--device", "cpu", "--precision", "fp32"]) == 0
        generated = capsys.readouterr().out
        assert main(["eval", "--checkpoint", source, "--device", "cpu", "--num-batches", "2"]) == 0
        outputs[source] = (generated, capsys.readouterr().out)
    assert outputs[run.name] == outputs[str(run)]
    assert "val:" in outputs[run.name][1]


def test_a_reader_probing_the_lock_at_the_same_moment_does_not_make_a_dead_run_live(tmp_path):
    """`gpt-tui runs` in one terminal and the app's runs screen in another probe the same lock; neither trains."""
    import fcntl

    from gpt_tui.engine import runlock

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    runlock.acquire(run_dir).release()  # a trainer ran here and ended: the lock file stays, unheld
    write_status(run_dir, "running", pid=os.getpid(), step=3)  # its status never got to say so
    other_reader = os.open(run_dir / LOCK_FILE, os.O_RDONLY)
    try:
        fcntl.flock(other_reader, fcntl.LOCK_SH | fcntl.LOCK_NB)  # another reader, caught in the middle of its probe
        assert runlock.holder(run_dir) is None
        assert read_run(run_dir).status == "stale"
    finally:
        os.close(other_reader)
    with runlock.acquire(run_dir):  # a trainer that really holds it is still seen, by a probe or by another trainer
        assert runlock.holder(run_dir) == os.getpid()
        assert not run_is_live(tmp_path) and run_is_live(run_dir)
