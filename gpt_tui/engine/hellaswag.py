"""HellaSwag scored as a completion: which of four endings does the model find least surprising after the context?

This is the "completion style" of llm.c's and build-nanogpt's scorers, not the
multiple-choice prompt of EleutherAI's harness. For each ending the model reads
the context's tokens followed by those of " " + ending, and only the ending's
tokens are scored: their summed cross-entropy picks the answer for ``acc``, and
their mean per token (which does not favour short endings) for ``acc_norm``.
The four candidates of an item go through the model as one padded batch;
right padding leaves every real position's logits as they would be alone,
since attention only looks back. The forward passes run in the evaluation's
precision, as ``gpt-tui eval``'s loss path does (``autocast``); losses are summed in fp32.

The input is HellaSwag's published JSONL (one item per line, fields ``ctx``,
``endings`` and ``label``, with ``ctx_a``/``ctx_b`` standing in when ``ctx`` is
absent); a line that is not such an item stops the run before any scoring
with one message naming the file and line.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from gpt_tui.errors import UserError

if TYPE_CHECKING:
    import torch

    from gpt_tui.engine.model import GPTModel

NUM_ENDINGS = 4


@dataclass(frozen=True)
class Item:
    """One HellaSwag question: a context, its candidate endings, the right one's index, and where it was read."""

    context: str
    endings: tuple[str, ...]
    label: int
    line: int  # 1-based line of the file


@dataclass(frozen=True)
class ItemScore:
    """How the model judged one item: each ending's summed and mean loss, and the two answers they give."""

    line: int
    label: int
    sum_losses: list[float]
    mean_losses: list[float]
    pred: int  # lowest summed loss
    pred_norm: int  # lowest mean loss per token

    def to_record(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Score:
    count: int
    correct: int
    correct_norm: int

    @property
    def acc(self) -> float:
        return self.correct / self.count if self.count else 0.0

    @property
    def acc_norm(self) -> float:
        return self.correct_norm / self.count if self.count else 0.0


def _bad(path: Path, line: int, what: str) -> UserError:
    return UserError(
        f"{path}:{line}: {what}; each line must be a HellaSwag item: a JSON object with \"ctx\" (text), "
        f"\"endings\" ({NUM_ENDINGS} texts) and \"label\" (0-{NUM_ENDINGS - 1})."
    )


def _context(record: dict[str, Any]) -> str | None:
    if isinstance(record.get("ctx"), str):
        return record["ctx"]
    a, b = record.get("ctx_a"), record.get("ctx_b")
    if isinstance(a, str) and (b is None or isinstance(b, str)):
        return f"{a} {b}" if b else a  # the published ctx is ctx_a, a space, then ctx_b
    return None


def _label(value: Any) -> int | None:
    """The answer's index; a numeric string ("2", as some re-publications store it) is accepted too."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def parse_item(text: str, path: Path, line: int) -> Item:
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise _bad(path, line, f"not JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise _bad(path, line, f"a JSON {type(record).__name__}, not an object")
    context = _context(record)
    if context is None:
        raise _bad(path, line, "no \"ctx\" text (nor \"ctx_a\")")
    endings = record.get("endings")
    if endings is None:
        raise _bad(path, line, "no \"endings\"")
    if not isinstance(endings, list) or not all(isinstance(e, str) for e in endings):
        raise _bad(path, line, "\"endings\" is not a list of texts")
    if len(endings) != NUM_ENDINGS:
        raise _bad(path, line, f"{len(endings)} endings, not {NUM_ENDINGS}")
    if "label" not in record:
        raise _bad(path, line, "no \"label\" (the test split has none: score the validation split)")
    label = _label(record["label"])
    if label is None or not 0 <= label < NUM_ENDINGS:
        raise _bad(path, line, f"label {record['label']!r} is not 0-{NUM_ENDINGS - 1}")
    if not context.strip():
        raise _bad(path, line, "the context is empty")
    return Item(context, tuple(endings), label, line)


def read_items(path: str | Path) -> list[Item]:
    """Every item of a HellaSwag JSONL file, checked before any is scored; blank lines are skipped."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; give the path of a HellaSwag .jsonl file (e.g. hellaswag_val.jsonl).") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder; give the path of a HellaSwag .jsonl file.") from None
    except OSError as exc:
        raise UserError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _bad(path, line, "not UTF-8 text") from None
    items = [parse_item(line, path, n) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not items:
        raise UserError(f"{path} holds no items; give a HellaSwag .jsonl file, one JSON object per line.")
    return items


def candidates(item: Item, context_length: int) -> list[tuple[list[int], int]]:
    """Each ending's token ids (context, then " " + ending) and where the ending starts.

    A sequence longer than the model's context loses tokens from its start,
    the context's first; the ending keeps what fits.
    """
    from gpt_tui.engine.tokenizer import encode

    context = encode(item.context)
    out = []
    for ending in item.endings:
        tokens = context + encode(" " + ending)
        start = len(context)
        drop = max(0, len(tokens) - context_length)
        out.append((tokens[drop:], max(1, start - drop)))  # the first token has nothing before it to predict it
    return out


def score_item(model: "GPTModel", item: Item, device: "torch.device") -> ItemScore:
    """The item's four endings in one forward pass: padded on the right, the ending's positions masked in."""
    import torch
    import torch.nn.functional as F

    rows = candidates(item, model.config.context_length)
    width = max(len(tokens) for tokens, _ in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, (tokens, start) in enumerate(rows):
        ids[i, : len(tokens)] = torch.tensor(tokens)
        mask[i, start : len(tokens)] = True
    ids, mask = ids.to(device), mask.to(device)
    logits = model(ids).float()
    # Position t's logits predict token t + 1: shift so that each scored token meets its prediction.
    losses = F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten(), reduction="none").view(len(rows), -1)
    scored = mask[:, 1:]
    sums = (losses * scored).sum(dim=1)
    counts = scored.sum(dim=1).clamp(min=1)
    means = sums / counts
    sum_list, mean_list = sums.tolist(), means.tolist()
    return ItemScore(
        line=item.line, label=item.label, sum_losses=sum_list, mean_losses=mean_list,
        pred=min(range(len(rows)), key=sum_list.__getitem__), pred_norm=min(range(len(rows)), key=mean_list.__getitem__),
    )


def score_items(
    model: "GPTModel", items: Iterable[Item], device: "torch.device", autocast: contextlib.AbstractContextManager[Any] | None = None
) -> Iterator[ItemScore]:
    """Score items one at a time, in eval mode and without gradients, so a caller can show progress.

    ``autocast`` is the evaluation's precision (gpt_tui.engine.precision.autocast_for), entered per item
    as the loss path enters it per batch; None: fp32.
    """
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for item in items:
                with autocast if autocast is not None else contextlib.nullcontext():
                    scored = score_item(model, item, device)
                yield scored  # outside the context: the caller's code runs in its own precision
    finally:
        model.train(was_training)


def evaluate(
    model: "GPTModel",
    items: list[Item],
    device: "torch.device",
    on_item: Callable[[ItemScore, Score], None] | None = None,
    autocast: contextlib.AbstractContextManager[Any] | None = None,
) -> tuple[Score, list[ItemScore]]:
    """The totals and each item's result; ``on_item`` hears of every item with the running totals."""
    results: list[ItemScore] = []
    correct = correct_norm = 0
    for result in score_items(model, items, device, autocast):
        results.append(result)
        correct += result.pred == result.label
        correct_norm += result.pred_norm == result.label
        if on_item is not None:
            on_item(result, Score(len(results), correct, correct_norm))
    return Score(len(results), correct, correct_norm), results
