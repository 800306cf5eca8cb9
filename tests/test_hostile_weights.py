"""Hostile or damaged weight files: one clear line, bounded cost, nothing read outside the folder given.

Every file here is crafted by the test from a valid one. Each case must end
with exit status 2 and a single ``gpt-tui: error:`` line naming the cause,
no traceback, and no file written anywhere but where the run lives:

- cost: files that claim gigabytes (a TensorFlow tensor of 3 GiB or 4 TiB, a
  million layers, a zip of deflated zeros, 100,000 repeated index entries)
  each run in their own process, which measures its own peak memory
  (getrusage) and time: under 300 MB and 10 s, refused before allocating;
- values: checkpoint headers, resume state, config.json, hparams.json and
  TensorFlow entries of the wrong type or range;
- paths: an index naming a shard elsewhere, a cache ``refs/main`` of
  ``../..``, a TensorFlow ``checkpoint`` file with an absolute path.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

import hostile_files as hf
from gpt_tui.cli import main
from gpt_tui.engine.checkpoint import latest_checkpoint, save_checkpoint
from gpt_tui.engine.model import GPTConfig, GPTModel
from gpt_tui.engine.trainer import Trainer, TrainConfig
from textgen import sample_text

REPO = Path(__file__).resolve().parent.parent
SMALL = GPTConfig(context_length=16, emb_dim=16, n_layers=1, n_heads=2, drop_rate=0.0, tie_weights=True)
PEAK_MB = 300
SECONDS = 10.0


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    corpus = root / "corpus.txt"
    corpus.write_text(sample_text(1500, seed=3), encoding="utf-8")
    torch.manual_seed(0)
    init = save_checkpoint(root / "init.safetensors", GPTModel(SMALL))
    run = root / "run"
    config = TrainConfig(data=str(corpus), context_length=16, batch_size=2, max_steps=2, eval_freq=2, eval_iter=1,
                         sample_tokens=0, device="cpu", precision="fp32", run_dir=str(run))
    Trainer(config, init_from=str(init)).run()
    return {"root": root, "corpus": corpus, "init": init, "run": run}


def fingerprint(folder: Path, skip: Path | None = None) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not (skip and p.is_relative_to(skip))}


def user_dirs() -> list[Path]:
    return [Path(os.environ[k]) for k in ("GPT_TUI_DATA_DIR", "GPT_TUI_CACHE_DIR", "GPT_TUI_CONFIG_DIR")]


def generate(source: Path | str) -> list[str]:
    return ["generate", "--checkpoint", str(source), "--prompt", "The painter", "--max-new-tokens", "2"]


def resume_copy(w: dict[str, Path], tmp: Path, header=lambda h: h, tensors=lambda t: t) -> Path:
    """A copy of the world's run whose newest checkpoint is rewritten; the path of that checkpoint."""
    run = tmp / "run-copy"
    shutil.copytree(w["run"], run)
    newest = latest_checkpoint(run)
    hf.rewrite_checkpoint(newest, newest, header, tensors)
    return newest


def resume(w: dict[str, Path], tmp: Path, header=lambda h: h, tensors=lambda t: t) -> list[str]:
    """``train --resume`` of a crafted copy of the world's newest checkpoint, on the run's own corpus."""
    return ["train", "--resume", str(resume_copy(w, tmp, header, tensors)), "--data", str(w["corpus"]), "--quiet"]


def native(w: dict[str, Path], tmp: Path, header=lambda h: h, tensors=lambda t: t) -> Path:
    return hf.rewrite_checkpoint(w["init"], tmp / "crafted.safetensors", header, tensors)


def assert_one_error_line(code: int, out: str, err: str, cause: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err, err
    assert len(lines) == 1 and lines[0].startswith("gpt-tui: error: "), err
    assert re.search(cause, lines[0]), lines[0]


# ---------------------------------------------------------------------------
# Bounded cost: each case in its own process, which reports its own peak and time.

CHILD = r"""
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # a safety net for the machine, far above the bound
import gpt_tui.cli, gpt_tui.engine.weights  # torch: imported before the clock starts, counted in the peak
start, code = time.perf_counter(), 1
try:
    code = gpt_tui.cli.main(sys.argv[2:])
finally:
    # This process's own peak: getrusage's ru_maxrss keeps the peak of the process that started it (Linux carries
    # it across exec), so the kernel's high-water mark of this address space, VmHWM, is read instead.
    status = open("/proc/self/status").read()
    peak_kb = int(status.split("VmHWM:")[1].split()[0])
    with open(sys.argv[1], "w") as f:
        json.dump({"code": code, "seconds": time.perf_counter() - start, "peak_mb": peak_kb / 1024,
                   "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, f)
sys.exit(code)
"""

BIG = 3 << 30  # bytes a crafted TensorFlow tensor claims


def _tf_claims(w, t, size: int) -> list[str]:
    entry = hf.tf_entry(1, [size // 4], 0, size)
    return generate(hf.tf_bundle(t, [(b"model/wte", entry)]))


def _tf_repeated_handles(w, t) -> list[str]:
    entries = [(f"model/h{i:06d}".encode(), hf.tf_entry(1, [1], 0, 4)) for i in range(2000)]
    return generate(hf.tf_bundle(t, entries, handle_copies=100_000))


def _tf_repeated_keys(w, t) -> list[str]:
    return generate(hf.tf_bundle(t, [(b"model/wte", hf.tf_entry(1, [1], 0, 4))] * 100_000))


def _million_layers(w, t) -> list[str]:
    return generate(native(w, t, hf.edit(config__n_layers=1_000_000)))


COSTLY: dict[str, tuple[Callable[[Any, Path], list[str]], str]] = {
    "tf-index-claims-3-GiB": (lambda w, t: _tf_claims(w, t, BIG), r"claims bytes 0\.\.3221225472 but the file has 16"),
    "tf-index-claims-4-TiB": (lambda w, t: _tf_claims(w, t, 4 << 40), r"claims bytes 0\.\.4398046511104 but the file has 16"),
    "tf-index-100000-handles-to-one-block": (_tf_repeated_handles, r"model\.ckpt\.index is damaged.*overlaps or repeats"),
    "tf-index-100000-repeated-entries": (_tf_repeated_keys, r"model\.ckpt\.index is damaged.*'model/wte' is repeated"),
    "header-claims-a-million-layers": (_million_layers, r"crafted\.safetensors: n_layers is 1000000, but it must be a whole number from 1 to 256"),
    "torch-zip-of-deflated-zeros": (lambda w, t: generate(hf.torch_zip_bomb(t / "bomb.pt", 512)),
                                    r"bomb\.pt would unpack to 536,87\d,\d{3} bytes from a file of"),
}


@pytest.mark.parametrize("case", list(COSTLY))
def test_crafted_file_is_refused_within_bounded_memory_and_time(case, world, tmp_path):
    build, cause = COSTLY[case]
    argv = build(world, tmp_path)
    before = fingerprint(tmp_path)
    report = tmp_path.parent / f"{tmp_path.name}-usage.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(report), *argv], capture_output=True, text=True,
                          env=env, timeout=120)
    assert_one_error_line(proc.returncode, proc.stdout, proc.stderr, cause)
    usage = json.loads(report.read_text())
    print(f"{case}: peak {usage['peak_mb']:.0f} MB, {usage['seconds']:.2f} s")
    assert usage["peak_mb"] < PEAK_MB, usage
    assert usage["seconds"] < SECONDS, usage
    assert fingerprint(tmp_path) == before
    assert not any(d.exists() and any(d.iterdir()) for d in user_dirs())


# ---------------------------------------------------------------------------
# Values of the wrong type or range, each at the one place its format is checked.

_CONFIG = json.loads((hf.HF_FIXTURE / "config.json").read_text())
_HPARAMS = json.loads((hf.TF_FIXTURE / "hparams.json").read_text())


def _rng(size: int) -> Callable[[dict], dict]:
    return lambda t: {**t, "rng.torch": torch.zeros(size, dtype=torch.uint8)}


def _half(name: str) -> Callable[[dict], dict]:
    return lambda t: {**t, name: t[name].half()}


def _tf_plain(w, t, name: bytes, dtype: int, shape: list[int], size: int) -> Path:
    data = b"\x00" * 16
    return hf.tf_bundle(t, [(name, hf.tf_entry(dtype, shape, 0, size, crc_of=data[:size]))], data=data)


R = re.escape
VALUES: dict[str, tuple[Callable[[Any, Path], list[str]], str]] = {
    # gpt-tui checkpoint headers
    "header-is-a-list": (lambda w, t: generate(native(w, t, lambda h: [1, 2])), r"crafted\.safetensors: the gpt_tui header is \[1, 2\]"),
    "header-is-a-string": (lambda w, t: generate(native(w, t, lambda h: "model")), r"the gpt_tui header is 'model'"),
    "header-without-config": (lambda w, t: generate(native(w, t, hf.edit(config=hf.DELETE))), r"crafted\.safetensors has no model config"),
    "config-is-a-list": (lambda w, t: generate(native(w, t, hf.edit(config=[16]))), r"config is \[16\], but it must be a JSON object"),
    "n_layers-beyond-the-file": (lambda w, t: generate(native(w, t, hf.edit(config__n_layers=200))),
                                 r"the header says n_layers 200 but the file holds 1 transformer blocks"),
    "n_heads-zero": (lambda w, t: generate(native(w, t, hf.edit(config__n_heads=0))), r"crafted\.safetensors: n_heads is 0"),
    "n_heads-negative": (lambda w, t: generate(native(w, t, hf.edit(config__n_heads=-2))), r"n_heads is -2, but it must be a whole number from 1"),
    "n_heads-not-dividing": (lambda w, t: generate(native(w, t, hf.edit(config__n_heads=3))), r"emb_dim 16 is not divisible by n_heads 3"),
    "emb_dim-text": (lambda w, t: generate(native(w, t, hf.edit(config__emb_dim="abc"))), r"emb_dim is 'abc'"),
    "context_length-fractional": (lambda w, t: generate(native(w, t, hf.edit(config__context_length=16.5))), r"context_length is 16\.5"),
    "vocab_size-missing": (lambda w, t: generate(native(w, t, hf.edit(config__vocab_size=hf.DELETE))), r"model config has no vocab_size"),
    "n_layers-true": (lambda w, t: generate(native(w, t, hf.edit(config__n_layers=True))), r"n_layers is True"),
    "drop_rate-above-one": (lambda w, t: generate(native(w, t, hf.edit(config__drop_rate=2))), r"drop_rate is 2"),
    "tie_weights-text": (lambda w, t: generate(native(w, t, hf.edit(config__tie_weights="yes"))), r"tie_weights is 'yes', but it must be true or false"),
    "kind-unknown": (lambda w, t: generate(native(w, t, hf.edit(kind=7))), r"kind is 7, but it must be one of full, model"),
    "version-text": (lambda w, t: generate(native(w, t, hf.edit(version="1"))), r"version is '1'"),
    "meta-a-list": (lambda w, t: generate(native(w, t, hf.edit(meta=[]))), r"meta is \[\]"),
    "tensor-shape-off-config": (lambda w, t: generate(native(w, t, hf.edit(config__context_length=32))),
                                r"model\.pos_emb\.weight has shape \[16, 16\] but the header's config needs \[32, 16\]"),
    "mixed-fp16-fp32": (lambda w, t: generate(native(w, t, tensors=_half("model.ln_f.bias"))), r"model tensors of dtypes F16, F32"),
    "integer-weights": (lambda w, t: generate(native(w, t, tensors=lambda d: {k: v.long() for k, v in d.items()})),
                        r"model tensors of dtypes I64"),
    # resume state
    "step-missing": (lambda w, t: resume(w, t, hf.edit(train_state__step=hf.DELETE)),
                     r"the training state has no step"),
    "step-text": (lambda w, t: resume(w, t, hf.edit(train_state__step="7")),
                  r"train_state\.step is '7'"),
    "batch_in_epoch-negative": (lambda w, t: resume(w, t, hf.edit(train_state__batch_in_epoch=-1)),
                                r"train_state\.batch_in_epoch is -1"),
    "tokens_seen-fractional": (lambda w, t: resume(w, t, hf.edit(train_state__tokens_seen=1.5)),
                               r"train_state\.tokens_seen is 1\.5"),
    "elapsed-text": (lambda w, t: resume(w, t, hf.edit(train_state__elapsed="long")),
                     r"train_state\.elapsed is 'long'"),
    "train_state-a-list": (lambda w, t: resume(w, t, hf.edit(train_state=[1])),
                           r"train_state is \[1\]"),
    "rng-state-7-bytes": (lambda w, t: resume(w, t, tensors=_rng(7)),
                          r"rng\.torch is U8 of shape \[7\], not 5056 bytes"),
    "optimizer-lr-text": (lambda w, t: resume(w, t, hf.edit(param_groups__0__lr="abc")),
                          r"param_groups\[0\]\.lr is 'abc'"),
    "optimizer-names-missing": (lambda w, t: resume(w, t, hf.edit(param_groups__0__param_names=hf.DELETE)),
                                r"param_groups\[0\]\.param_names is None"),
    # config.json
    "n_head-text": (lambda w, t: generate(hf.hf_folder(t, n_head="abc")), r"config\.json: n_head is 'abc'"),
    "n_head-zero": (lambda w, t: generate(hf.hf_folder(t, n_head=0)), r"config\.json: n_head is 0"),
    "n_head-fractional": (lambda w, t: generate(hf.hf_folder(t, n_head=2.5)), r"config\.json: n_head is 2\.5"),
    "layer_norm_epsilon-list": (lambda w, t: generate(hf.hf_folder(t, layer_norm_epsilon=[1e-5])), r"layer_norm_epsilon is \[1e-05\]"),
    "activation_function-list": (lambda w, t: generate(hf.hf_folder(t, activation_function=["gelu"])), r"activation_function is \['gelu'\]"),
    "vocab_size-1e400": (lambda w, t: generate(hf.hf_folder(t, config_text=hf.raw_json(_CONFIG, vocab_size="1e400"))),
                         r"config\.json: vocab_size is inf"),
    "n_layer-NaN": (lambda w, t: generate(hf.hf_folder(t, config_text=hf.raw_json(_CONFIG, n_layer="NaN"))), r"n_layer is nan"),
    "n_embd-true": (lambda w, t: generate(hf.hf_folder(t, n_embd=True)), r"n_embd is True"),
    "tie_word_embeddings-text": (lambda w, t: generate(hf.hf_folder(t, tie_word_embeddings="no")), r"tie_word_embeddings is 'no'"),
    "model_type-number": (lambda w, t: generate(hf.hf_folder(t, model_type=2)), r"model_type is 2, but it must be a string"),
    # hparams.json
    "hparams-n_head-text": (lambda w, t: generate(hf.tf_folder(t, n_head="abc")), r"hparams\.json: n_head is 'abc'"),
    "hparams-n_head-zero": (lambda w, t: generate(hf.tf_folder(t, n_head=0)), r"hparams\.json: n_head is 0"),
    "hparams-n_vocab-1e400": (lambda w, t: generate(hf.tf_folder(t, hparams_text=hf.raw_json(_HPARAMS, n_vocab="1e400"))),
                              r"hparams\.json: n_vocab is inf"),
    "hparams-n_layer-NaN": (lambda w, t: generate(hf.tf_folder(t, hparams_text=hf.raw_json(_HPARAMS, n_layer="NaN"))),
                            r"hparams\.json: n_layer is nan"),
    # TensorFlow entries
    "tf-variable-named-model": (lambda w, t: generate(_tf_plain(w, t, b"model", 1, [2], 8)), R("has a variable 'model' that is not part of GPT-2")),
    "tf-dims-wrap-to-zero": (lambda w, t: generate(_tf_plain(w, t, b"model/wte", 1, [1 << 32, 1 << 32], 0)),
                             r"'model/wte' of shape \[4294967296, 4294967296\] claims 0 bytes"),
    "tf-dim-minus-one": (lambda w, t: generate(_tf_plain(w, t, b"model/wte", 1, [(1 << 64) - 1], 4)), r"'model/wte' of shape \[18446744073709551615\] claims 4 bytes"),
    "tf-too-many-dims": (lambda w, t: generate(_tf_plain(w, t, b"model/wte", 1, [1] * 70, 4)), r"more than 8 dimensions"),
}


@pytest.mark.parametrize("case", list(VALUES))
def test_bad_value_in_a_file_gets_one_line_naming_it(case, world, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    build, cause = VALUES[case]
    argv = build(world, tmp_path)
    before, world_before = fingerprint(tmp_path, skip=tmp_path / "run-copy"), fingerprint(world["root"])
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    assert_one_error_line(code, out, err, cause)
    assert fingerprint(tmp_path, skip=tmp_path / "run-copy") == before
    assert fingerprint(world["root"]) == world_before


# ---------------------------------------------------------------------------
# Paths a file names are followed only within the folder the user gave.


def _outside_hf(t: Path) -> Path:
    outside = t / "outside"
    shutil.copytree(hf.HF_FIXTURE, outside)
    return outside


def _index_naming(t: Path, shard: str) -> Path:
    folder = hf.hf_folder(t)
    (folder / "model.safetensors").unlink()
    weight_map = {"transformer.wte.weight": shard}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def _shard_link(t: Path) -> Path:
    folder = _index_naming(t, "model-00001-of-00001.safetensors")
    (folder / "model-00001-of-00001.safetensors").symlink_to(_outside_hf(t) / "model.safetensors")
    return folder


def _cache_entry(t: Path, monkeypatch, ref: str) -> Path:
    cache = t / "hub"
    entry = cache / "models--openai-community--gpt2"
    (entry / "refs").mkdir(parents=True)
    (entry / "snapshots").mkdir()
    (entry / "refs" / "main").write_text(ref)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return entry


def _tf_checkpoint_file(t: Path, named: str) -> Path:
    outside = t / "outside-tf"
    shutil.copytree(hf.TF_FIXTURE, outside)
    folder = t / "tf-named"
    folder.mkdir()
    shutil.copy(hf.TF_FIXTURE / "hparams.json", folder / "hparams.json")
    (folder / "checkpoint").write_text(f'model_checkpoint_path: "{named.format(outside=outside)}"\n')
    return folder


PATHS: dict[str, tuple[Callable[[Path, Any], list[str]], str]] = {
    "index-names-a-parent-shard": (lambda t, m: (_outside_hf(t), generate(_index_naming(t, "../outside/model.safetensors")))[1],
                                   r"model\.safetensors\.index\.json names .*outside/model\.safetensors, which leads outside"),
    "index-names-an-absolute-shard": (lambda t, m: generate(_index_naming(t, str(_outside_hf(t) / "model.safetensors"))),
                                      r"index\.json names .*outside/model\.safetensors, which leads outside"),
    "index-shard-is-a-link-out": (lambda t, m: generate(_shard_link(t)), r"names .*model-00001-of-00001\.safetensors, which leads outside"),
    "cache-refs-main-climbs-out": (lambda t, m: (_outside_hf(t), generate(_cache_entry(t, m, "../../../outside")))[1],
                                   r"refs/main names '\.\./\.\./\.\./outside', which is not a snapshot"),
    "tf-checkpoint-file-absolute": (lambda t, m: generate(_tf_checkpoint_file(t, "{outside}/model.ckpt")),
                                    r"checkpoint names .*outside-tf/model\.ckpt, which is not in .*tf-named"),
    "tf-checkpoint-file-climbs-out": (lambda t, m: generate(_tf_checkpoint_file(t, "../outside-tf/model.ckpt")),
                                      r"checkpoint names \.\./outside-tf/model\.ckpt, which is not in .*tf-named"),
}


@pytest.mark.parametrize("case", list(PATHS))
def test_paths_in_a_file_stay_inside_the_folder_given(case, world, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    build, cause = PATHS[case]
    argv = build(tmp_path, monkeypatch)
    before = fingerprint(tmp_path)
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    assert_one_error_line(code, out, err, cause)
    assert fingerprint(tmp_path) == before


def test_the_valid_originals_still_load(world, tmp_path, capsys, monkeypatch):
    """The files every case above starts from load, so each refusal is the crafted change's doing."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for source in (world["init"], hf.HF_FIXTURE, hf.TF_FIXTURE, hf.hf_folder(tmp_path), hf.tf_folder(tmp_path)):
        assert main(generate(source)) == 0, capsys.readouterr().err
    run = latest_checkpoint(world["run"])
    header, tensors = hf.read_checkpoint(run)
    assert header["kind"] == "full" and tuple(tensors["rng.torch"].shape) == (5056,)
