import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from gpt_tui.engine import checkpoint as ckpt
from gpt_tui.engine.model import GPTConfig, GPTModel
from gpt_tui.errors import UserError

SMALL = GPTConfig(vocab_size=1000, context_length=16, emb_dim=32, n_layers=2, n_heads=2)


def _trained_model(tie: bool = False):
    torch.manual_seed(0)
    model = GPTModel(SMALL.with_(tie_weights=tie))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, 1000, (2, 16))
    for _ in range(2):
        optimizer.zero_grad()
        model(x).logsumexp(-1).mean().backward()
        optimizer.step()
    return model, optimizer, x


@pytest.mark.parametrize("tie", [False, True])
def test_full_checkpoint_round_trip(tmp_path, tie):
    model, optimizer, x = _trained_model(tie)
    torch.manual_seed(42)
    expected_rng = torch.get_rng_state()
    path = ckpt.save_checkpoint(tmp_path / "a.safetensors", model, optimizer=optimizer, train_state={"step": 2, "epoch": 0})
    torch.rand(10)  # move the RNG on

    loaded = ckpt.load_checkpoint(path)
    assert loaded.kind == "full" and loaded.train_state == {"step": 2, "epoch": 0}
    assert loaded.config == model.config
    copy = ckpt.build_model(loaded)
    model.eval()
    assert torch.equal(copy(x), model(x))
    assert (copy.head.weight is copy.tok_emb.weight) == tie

    fresh_opt = torch.optim.AdamW(copy.parameters(), lr=1e-3)
    ckpt.restore_optimizer(fresh_opt, copy, loaded)
    for a, b in zip(optimizer.state_dict()["state"].values(), fresh_opt.state_dict()["state"].values()):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])
    ckpt.restore_rng(loaded)
    assert torch.equal(torch.get_rng_state(), expected_rng)


def test_model_only_checkpoint_cannot_resume(tmp_path):
    model, optimizer, _ = _trained_model()
    path = ckpt.save_checkpoint(tmp_path / "w.safetensors", model)
    loaded = ckpt.load_checkpoint(path)
    assert loaded.kind == "model" and loaded.optimizer_state is None
    with pytest.raises(UserError, match="weights only"):
        ckpt.restore_optimizer(torch.optim.AdamW(model.parameters()), model, loaded)
    # the optimizer's moments make a full checkpoint about three times the size
    full = ckpt.save_checkpoint(tmp_path / "f.safetensors", model, optimizer=optimizer)
    assert 2.5 * path.stat().st_size < full.stat().st_size


def test_damaged_files_give_one_clear_error(tmp_path):
    model, optimizer, _ = _trained_model()
    good = ckpt.save_checkpoint(tmp_path / "good.safetensors", model, optimizer=optimizer)
    data = good.read_bytes()

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated.safetensors.*corrupt or truncated"):
        ckpt.load_checkpoint(truncated)

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="garbage.safetensors"):
        ckpt.load_checkpoint(garbage)

    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(UserError, match="not a gpt-tui checkpoint"):
        ckpt.load_checkpoint(foreign)

    with pytest.raises(UserError, match="does not exist"):
        ckpt.load_checkpoint(tmp_path / "missing.safetensors")


def test_latest_checkpoint_skips_a_damaged_newest(tmp_path):
    model, optimizer, _ = _trained_model()
    folder = tmp_path / ckpt.CHECKPOINTS_SUBDIR
    first = ckpt.save_checkpoint(folder / ckpt.checkpoint_name(5), model, optimizer=optimizer)
    second = ckpt.save_checkpoint(folder / ckpt.checkpoint_name(10), model, optimizer=optimizer)
    assert ckpt.latest_checkpoint(tmp_path) == second
    second.write_bytes(second.read_bytes()[:1000])
    assert ckpt.latest_checkpoint(tmp_path) == first
    ckpt.prune_checkpoints(tmp_path, keep=1)
    assert ckpt.list_checkpoints(tmp_path) == [second]
    with pytest.raises(UserError, match="No usable checkpoint"):
        ckpt.latest_checkpoint(tmp_path)


SAVER = textwrap.dedent(
    """
    import sys, torch
    from gpt_tui.engine.checkpoint import save_checkpoint
    from gpt_tui.engine.model import GPTConfig, GPTModel
    path = sys.argv[1]
    # ~40 MB with the optimizer state: each save takes long enough to be killed inside it
    model = GPTModel(GPTConfig(vocab_size=20000, context_length=16, emb_dim=128, n_layers=2, n_heads=2))
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.zeros(1, 4, dtype=torch.long)).sum().backward()
    optimizer.step()
    n = 0
    print("ready", flush=True)
    while True:
        n += 1
        with torch.no_grad():
            model.tok_emb.weight.fill_(float(n))
        save_checkpoint(path, model, optimizer=optimizer, train_state={"n": n})
    """
)


def test_save_killed_midway_leaves_previous_checkpoint_loadable(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    for delay in (0.2, 0.45, 0.7):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE, env=env)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not path.exists():
            continue  # killed before the first save finished: nothing to check yet
        loaded = ckpt.load_checkpoint(path)
        n = loaded.train_state["n"]
        assert torch.all(loaded.model_state["tok_emb.weight"] == float(n))
    assert path.exists()
