"""Text from a model, a file name or a file never reaches the terminal raw.

A crafted but valid checkpoint's greedy output retitles the window (OSC 0),
writes the clipboard (OSC 52), recolours (SGR) and clears the screen
(``ESC[2J``); a run folder can be named with the same escapes. Every place
that prints or draws such text shows the escapes written out instead, and
keeps the newlines and tabs of prose.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gpt_tui.cli import main
from gpt_tui.engine.checkpoint import save_checkpoint
from gpt_tui.engine.events import SampleEvent
from gpt_tui.engine.model import GPTConfig, GPTModel
from gpt_tui.engine.tokenizer import encode
from pilot import new_app, screen_text, wait_until
from textgen import sample_text

REPO = Path(__file__).resolve().parents[1]
# OSC 0 (title), OSC 52 (clipboard), SGR colours, clear screen, a C1 CSI, DEL, a bidi override, a lone CR
PAYLOAD = "\x1b]0;pwned\x07\x1b]52;c;cHduZWQ=\x07\x1b[31mred\x1b[0m\x1b[2J\x9b1m\x7f\u202eok\r"
SHOWN = ("\\x1b]0;pwned\\x07", "\\x1b]52;c;cHduZWQ=\\x07", "\\x1b[31mred\\x1b[0m\\x1b[2J", "\\x9b1m\\x7f\\u202eok")
RAW = ("\x1b", "\x07", "\x9b", "\x7f", "\u202e")


def _assert_shown_not_raw(text: str) -> None:
    for raw in RAW:
        assert raw not in text
    for shown in SHOWN:
        assert shown in text


def _hostile_model(ids: list[int]) -> GPTModel:
    """A valid model whose greedy output after a one-token prompt is ``ids``, whatever the tokens so far.

    Token embeddings are zero and the blocks add nothing, so position p reaches
    the head as a spike in dimension p, and the head maps dimension p to ids[p].
    """
    width = 64
    assert len(ids) <= width
    config = GPTConfig(context_length=width, emb_dim=width, n_layers=1, n_heads=2, drop_rate=0.0, tie_weights=False)
    model = GPTModel(config)
    with torch.no_grad():
        model.tok_emb.weight.zero_()
        model.pos_emb.weight.copy_(torch.eye(width) * 4)
        for block in model.blocks:
            for layer in (block.attn.proj, block.mlp.proj):
                layer.weight.zero_()
                layer.bias.zero_()
        model.head.weight.zero_()
        for position, token in enumerate(ids):
            model.head.weight[token, position] += 10.0
    return model.eval()


@pytest.fixture(scope="module")
def hostile_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "hostile.safetensors"
    save_checkpoint(path, _hostile_model(encode(PAYLOAD)))
    return path


@pytest.mark.parametrize("text, shown", [
    ("a\x1b[2Jb", "a\\x1b[2Jb"),
    ("line one\n\tline two", "line one\n\tline two"),  # prose keeps its layout
    ("windows\r\nline", "windows\r\nline"),
    ("over\rwrite", "over\\rwrite"),  # a lone CR would draw over what was shown
    ("\x9b31m\x85\x7f", "\\x9b31m\\x85\\x7f"),  # C1 controls and DEL
    ("abc\u202edef\u2066\u2028", "abc\\u202edef\\u2066\\u2028"),  # bidi overrides and isolates, line separator
    ("family \U0001f468\u200d\U0001f469", "family \U0001f468\u200d\U0001f469"),  # the joiner of an emoji stays
    ("\ud800", "\\ud800"),  # a lone surrogate could not even be encoded for the terminal
])
def test_printable_escapes_controls_and_keeps_prose(text, shown):
    from gpt_tui.textsafe import printable

    assert printable(text) == shown


def test_a_streamed_escape_split_across_chunks_stays_neutralised():
    from gpt_tui.textsafe import printable, visible

    chunks = [PAYLOAD[i:i + 3] for i in range(0, len(PAYLOAD), 3)]
    joined = "".join(printable(c) for c in chunks)
    _assert_shown_not_raw(joined)
    assert visible("a\nb\tc") == "a\\nb\\tc"  # names and values stay on one line


def test_generate_prints_a_hostile_models_escapes_visibly(hostile_checkpoint):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "gpt_tui", "generate", "--checkpoint", str(hostile_checkpoint), "--prompt", "x",
         "--max-new-tokens", str(len(encode(PAYLOAD))), "--temperature", "0", "--device", "cpu"],
        capture_output=True, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for byte in (b"\x1b", b"\x07", b"\x9b", b"\x7f"):
        assert byte not in done.stdout
    _assert_shown_not_raw(done.stdout.decode("utf-8"))


def test_the_training_sample_is_printed_visibly(hostile_checkpoint, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(sample_text(160, seed=3), encoding="utf-8")
    code = main([
        "train", "--init-from", str(hostile_checkpoint), "--data", str(corpus), "--context-length", "8",
        "--batch-size", "16", "--epochs", "1", "--lr", "1e-12", "--weight-decay", "0", "--eval-iter", "1",
        "--start-context", "x", "--sample-tokens", str(len(encode(PAYLOAD))), "--device", "cpu",
        "--precision", "fp32", "--quiet", "--run-dir", str(tmp_path / "run"),
    ])
    out, err = capsys.readouterr()
    assert code == 0, err
    _assert_shown_not_raw(out)


def test_runs_prints_a_hostile_folder_name_visibly(tmp_path, capsys):
    run = tmp_path / "runs" / "evil\x1b[2J\x1b]0;pwned\x07name"
    run.mkdir(parents=True)
    (run / "config.json").write_text('{"model": "tiny\\u001b[31m"}', encoding="utf-8")
    assert main(["runs", "--dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "evil\\x1b[2J\\x1b]0;pwned\\x07name" in out


def test_an_error_quoting_a_hostile_file_name_stays_one_visible_line(tmp_path, capsys):
    missing = tmp_path / "no\x1b[2Jsuch\nfile.txt"
    code = main(["train", "--data", str(missing), "--device", "cpu", "--quiet", "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("gpt-tui: error:")
    assert "\x1b" not in err and "no\\x1b[2Jsuch" in err


@pytest.mark.anyio
async def test_the_reply_box_and_a_sample_note_show_escapes_visibly(fast_tui_settings, hostile_checkpoint):
    from gpt_tui.tui.model_source import load_model_file

    app = new_app()
    async with app.run_test(size=(160, 40)) as pilot:
        app.model_source.use_loaded(load_model_file(str(hostile_checkpoint), "cpu"))
        app.repl.input.value = f"/max {len(encode(PAYLOAD))}"
        await pilot.press("enter")
        app.repl.input.value = "x"
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.repl.last_reply is not None, what="the reply to finish")
        assert app.repl.last_reply.text == PAYLOAD  # kept as it came, for copying; only what is drawn changes
        shown = screen_text(app)
        for raw in RAW:
            assert raw not in shown
        assert "\\x1b]0;pwned\\x07\\x1b]52;c;cHduZWQ=\\x07" in shown
        app._show_sample(SampleEvent(step=3, epoch=1, prompt="x", text="x" + PAYLOAD))
        await wait_until(pilot, lambda: "sample after epoch 1" in screen_text(app), what="the sample note")
        shown = screen_text(app)
        for raw in RAW:
            assert raw not in shown
        assert shown.count("\\x1b]0;pwned\\x07") == 2
