"""``gpt-tui eval --hellaswag``: the batched scorer agrees, item by item, with a plain one written here."""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn.functional as F

from gpt_tui.cli import main
from gpt_tui.engine.checkpoint import save_checkpoint
from gpt_tui.engine.hellaswag import evaluate, read_items
from gpt_tui.engine.model import GPTConfig, GPTModel
from gpt_tui.engine.tokenizer import encode

CONTEXTS = [
    ("A man is sitting on a roof. he", ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.",
                                        "is holding a rubik's cube.", "starts pulling up roofing on a roof."]),
    ("A woman pours water into a glass and", ["drinks it slowly.", "the glass", "throws the chair across a very long room.",
                                               "smiles."]),
    ("The dog runs across the field", ["chasing a ball.", "and sleeps.", "to fetch the newspaper from the porch.", "."]),
    ("Two kids build a sandcastle at the beach. they", ["dig a moat around it.", "fly away.",
                                                         "go home and eat dinner with their parents.", "laugh."]),
    ("How to bake bread. Mix the flour and water.", ["Knead the dough for ten minutes.", "Paint the wall blue.",
                                                      "Let it rise.", "Drive to the store and buy a car."]),
    ("Someone plays the guitar on a stage while", ["the crowd cheers.", "a cat", "it rains on the audience all night long.",
                                                    "he sings."]),
]


@pytest.fixture(scope="module")
def model() -> GPTModel:
    torch.manual_seed(3)
    return GPTModel(GPTConfig(context_length=48, emb_dim=16, n_layers=1, n_heads=2, drop_rate=0.0, tie_weights=True)).eval()


def plain_scores(model: GPTModel, context: str, endings: list[str]) -> tuple[list[float], list[float]]:
    """Each ending alone through the model; the cross-entropy of each of its tokens, added up one by one."""
    sums, means = [], []
    for ending in endings:
        ctx = encode(context)
        ids = ctx + encode(" " + ending)
        with torch.no_grad():
            logits = model(torch.tensor([ids]))[0]
        losses = []
        for position in range(len(ctx), len(ids)):
            log_probs = F.log_softmax(logits[position - 1].double(), dim=-1)
            losses.append(-float(log_probs[ids[position]]))
        sums.append(sum(losses))
        means.append(sum(losses) / len(losses))
    return sums, means


def argmin(values: list[float]) -> int:
    return min(range(len(values)), key=values.__getitem__)


@pytest.fixture(scope="module")
def dataset(model, tmp_path_factory):
    """A file whose labels are the plain scorer's mean-loss choice on even lines and a wrong one on odd lines."""
    folder = tmp_path_factory.mktemp("hellaswag")
    expected, lines = [], []
    for i, (context, endings) in enumerate(CONTEXTS):
        sums, means = plain_scores(model, context, endings)
        label = argmin(means) if i % 2 == 0 else (argmin(means) + 1) % 4
        expected.append({"label": label, "sums": sums, "means": means, "pred": argmin(sums), "pred_norm": argmin(means)})
        a, _, b = context.rpartition(". ")
        lines.append(json.dumps({"ind": i, "activity_label": "test", "ctx_a": a, "ctx_b": b, "ctx": context,
                                 "split": "val", "endings": endings, "label": label}))
    path = folder / "hellaswag_val.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    init = folder / "init.safetensors"
    save_checkpoint(init, model)
    return path, init, expected


def test_engine_agrees_with_the_plain_scorer_on_every_item(model, dataset):
    path, _, expected = dataset
    score, results = evaluate(model, read_items(path), torch.device("cpu"))
    assert len(results) == len(expected) == score.count
    for result, want in zip(results, expected):
        assert (result.pred, result.pred_norm, result.label) == (want["pred"], want["pred_norm"], want["label"])
        assert result.sum_losses == pytest.approx(want["sums"], rel=1e-4)
        assert result.mean_losses == pytest.approx(want["means"], rel=1e-4)
    assert score.correct_norm == sum(w["pred_norm"] == w["label"] for w in expected) == 3
    assert score.correct == sum(w["pred"] == w["label"] for w in expected)


def test_cli_reports_both_accuracies_and_writes_each_item(dataset, tmp_path, capsys):
    path, init, expected = dataset
    out = tmp_path / "items.jsonl"
    code = main(["eval", "--checkpoint", str(init), "--hellaswag", str(path), "--hellaswag-out", str(out), "--device", "cpu"])
    assert code == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["line"], r["pred"], r["pred_norm"]) for r in records] == [
        (i + 1, w["pred"], w["pred_norm"]) for i, w in enumerate(expected)
    ]
    stdout = capsys.readouterr().out
    match = re.search(r"(\d+) items; acc ([\d.]+) \((\d+)/\d+\), acc_norm ([\d.]+) \((\d+)/\d+\)", stdout)
    assert match, stdout
    correct = sum(w["pred"] == w["label"] for w in expected)
    assert int(match[1]) == len(expected) and int(match[3]) == correct and int(match[5]) == 3
    assert float(match[4]) == pytest.approx(3 / len(expected), abs=1e-4)
    assert float(match[2]) == pytest.approx(correct / len(expected), abs=1e-4)


def _good() -> dict:
    return {"ctx": "A cat sits on a mat. it", "endings": ["purrs.", "sleeps.", "eats.", "leaves."], "label": 1}


BAD_LINES = {
    "not JSON": ('{"ctx": "A cat", "endings": [', "not JSON"),
    "missing field": (json.dumps({k: v for k, v in _good().items() if k != "endings"}), 'no "endings"'),
    "label out of range": (json.dumps({**_good(), "label": 4}), "label 4 is not 0-3"),
    "three endings": (json.dumps({**_good(), "endings": ["a.", "b.", "c."]}), "3 endings, not 4"),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_a_malformed_line_gets_one_line_naming_file_and_line(case, dataset, tmp_path, capsys):
    _, init, _ = dataset
    bad, message = BAD_LINES[case]
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(_good()) + "\n\n" + bad + "\n" + json.dumps(_good()) + "\n", encoding="utf-8")
    out = tmp_path / "items.jsonl"
    capsys.readouterr()
    code = main(["eval", "--checkpoint", str(init), "--hellaswag", str(path), "--hellaswag-out", str(out)])
    stdout, err = capsys.readouterr()
    assert code == 2, (stdout, err)
    assert err.count("\n") == 1 and err.startswith("gpt-tui: error:") and "Traceback" not in err
    assert f"{path}:3:" in err and message in err
    assert not out.exists() and stdout == ""
