"""The chapter-5 run twice on this machine: the book's own code and ``gpt-tui train --recipe book``; both logs side by side.

The book's side imports the ``llms-from-scratch`` package and calls its
functions unchanged, in the notebook's order (seed, model, character split,
loaders, the two initial losses, a fresh seed and model, ``train_model_simple``).
Its metadata pins numpy < 2.1 and tensorflow, which this bench does not need,
so install it without dependencies into a folder of its own:

    python -m venv /tmp/bookenv
    /tmp/bookenv/bin/pip install --no-deps llms-from-scratch==1.0.19

Then, from the repository root with the project's environment active:

    python bench/book_parity.py [../shared/data/the-verdict.txt] [--book-path /tmp/bookenv/lib/python3.11/site-packages]

The book's side runs with this project's Python (its torch and tiktoken) and
that folder on its path, so both sides use the same torch build.

Continuing a saved run (exercise 5.4: load the model and optimizer, train one
more epoch with ``train_model_simple``):

    python bench/book_parity.py --continue-from model_and_optimizer.pth --epochs 1

Both sides start from that file: the book's code loads both states, seeds
``manual_seed(123)``, measures the two losses as the notebook does and calls
``train_model_simple`` again; gpt-tui runs ``train --recipe book --resume FILE``.
Besides the printed lines, the loss of every update is compared to full
precision (the book's from its ``calc_loss_batch``, gpt-tui's from metrics.jsonl).

Each side runs in a fresh process on the CPU in fp32 with the same thread
count (``--threads``, default 1, so the two can run at once without sharing a
matmul's blocking choices). The table shows every printed line of both logs
and marks the lines that differ; for a loss line, by how much.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, cpu_model, load_average

DEFAULT_TEXT = REPO.parent / "shared" / "data" / "the-verdict.txt"
DEFAULT_BOOK_PATH = f"/tmp/bookenv/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"


def book_loaders(text_path: str):  # noqa: ANN201  (the book's DataLoaders)
    """The notebook's split and loaders, after its ``torch.manual_seed(123)``."""
    import torch
    from llms_from_scratch.ch02 import create_dataloader_v1

    text_data = Path(text_path).read_text(encoding="utf-8")
    split_idx = int(0.90 * len(text_data))
    train_data, val_data = text_data[:split_idx], text_data[split_idx:]
    torch.manual_seed(123)
    train_loader = create_dataloader_v1(train_data, batch_size=2, max_length=256, stride=256, drop_last=True,
                                        shuffle=True, num_workers=0)
    val_loader = create_dataloader_v1(val_data, batch_size=2, max_length=256, stride=256, drop_last=False,
                                      shuffle=False, num_workers=0)
    return train_loader, val_loader


def book_side(text_path: str, epochs: int, save_to: str | None) -> None:
    """The notebook's cells that draw random numbers or print, in the notebook's order."""
    import tiktoken
    import torch

    from gpt_tui.engine.tokenizer import get_tokenizer

    # tiktoken fetches GPT-2's files on first use; gpt-tui ships the same files (tiktoken's hashes), offline
    tiktoken.get_encoding = lambda name: get_tokenizer()
    from llms_from_scratch.ch04 import GPTModel
    from llms_from_scratch.ch05 import calc_loss_loader, train_model_simple

    cfg = {"vocab_size": 50257, "context_length": 256, "emb_dim": 768, "n_heads": 12, "n_layers": 12,
           "drop_rate": 0.1, "qkv_bias": False}
    torch.manual_seed(123)
    model = GPTModel(cfg)
    model.eval()
    train_loader, val_loader = book_loaders(text_path)
    device = torch.device("cpu")
    model.to(device)
    torch.manual_seed(123)
    with torch.no_grad():
        train_loss = calc_loss_loader(train_loader, model, device)
        val_loss = calc_loss_loader(val_loader, model, device)
    print("Training loss:", train_loss)
    print("Validation loss:", val_loss)
    torch.manual_seed(123)
    model = GPTModel(cfg)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0004, weight_decay=0.1)
    train_model_simple(model, train_loader, val_loader, optimizer, device, num_epochs=epochs, eval_freq=5,
                       eval_iter=5, start_context="Every effort moves you", tokenizer=get_tokenizer())
    if save_to:
        torch.save({"model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict()}, save_to)


def book_continue(text_path: str, epochs: int, from_file: str) -> None:
    """Exercise 5.4: both states loaded, a fresh seed, the notebook's two losses, ``train_model_simple`` again."""
    import tiktoken
    import torch

    from gpt_tui.engine.tokenizer import get_tokenizer

    tiktoken.get_encoding = lambda name: get_tokenizer()
    from llms_from_scratch import ch05
    from llms_from_scratch.ch04 import GPTModel

    batch_loss = ch05.calc_loss_batch

    def printing_loss(input_batch, target_batch, model, device):  # each update's loss, as it was computed
        loss = batch_loss(input_batch, target_batch, model, device)
        if torch.is_grad_enabled():
            print(f"Update loss: {loss.item()!r}")
        return loss

    ch05.calc_loss_batch = printing_loss  # train_model_simple calls it by its module's name
    cfg = {"vocab_size": 50257, "context_length": 256, "emb_dim": 768, "n_heads": 12, "n_layers": 12,
           "drop_rate": 0.1, "qkv_bias": False}
    device = torch.device("cpu")
    checkpoint = torch.load(from_file, weights_only=True)
    model = GPTModel(cfg)
    model.load_state_dict(checkpoint["model_state_dict"])
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0004, weight_decay=0.1)
    optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
    train_loader, val_loader = book_loaders(text_path)
    model.eval()
    torch.manual_seed(123)
    with torch.no_grad():
        print("Training loss:", ch05.calc_loss_loader(train_loader, model, device))
        print("Validation loss:", ch05.calc_loss_loader(val_loader, model, device))
    torch.manual_seed(123)
    ch05.train_model_simple(model, train_loader, val_loader, optimizer, device, num_epochs=epochs, eval_freq=5,
                            eval_iter=5, start_context="Every effort moves you", tokenizer=get_tokenizer())


def gpt_tui_command(text_path: str, epochs: int, run_dir: str, resume: str | None = None) -> list[str]:
    return [sys.executable, "-m", "gpt_tui", "train", "--recipe", "book", "--data", text_path, "--model", "gpt2-small",
            "--context-length", "256", "--batch-size", "2", "--epochs", str(epochs), "--device", "cpu",
            "--precision", "fp32", "--run-dir", run_dir, "--quiet"] + (["--resume", resume] if resume else [])


def update_losses(run_dir: str) -> list[str]:
    """gpt-tui's loss of each update, from the run's metrics, as the book side prints them."""
    import json

    from gpt_tui.engine.runs import METRICS_FILE

    lines = []
    for row in (Path(run_dir) / METRICS_FILE).read_text(encoding="utf-8").splitlines():
        event = json.loads(row)
        if event.get("type") == "step":
            lines.append(f"Update loss: {event['loss']!r}")
    return lines


def update_table(book: list[str], ours: list[str]) -> tuple[str, int]:
    """Every update's loss side by side, to all the digits a float has."""
    rows, differing = [], 0
    for i in range(max(len(book), len(ours))):
        b = float(book[i].split(":", 1)[1]) if i < len(book) else None
        o = float(ours[i].split(":", 1)[1]) if i < len(ours) else None
        if b is None or o is None:
            mark, differing = "one side only", differing + 1
        else:
            mark = "same" if b == o else f"|d|={abs(b - o):.2e}"
            differing += 0 if f"{b:.3f}" == f"{o:.3f}" else 1
        rows.append(f"| {i + 1} | {b!r} | {o!r} | {mark} |")
    return "| update | book's code | gpt-tui | |\n|---|---|---|---|\n" + "\n".join(rows), differing


LOG_LINE = re.compile(r"^(Training loss:|Validation loss:|Ep \d+ \(Step \d+\):)")


def comparable(lines: list[str]) -> list[str]:
    """The lines the book prints: the two initial losses, each evaluation and each epoch's sample."""
    out = []
    for line in lines:
        if LOG_LINE.match(line) or line.startswith("Every effort moves you"):
            out.append(line.rstrip("\n"))
    return out


def numbers(line: str) -> list[float]:
    body = line.split("):", 1)[-1] if line.startswith("Ep ") else line.split(":", 1)[-1]
    return [float(x) for x in re.findall(r"-?\d+\.\d+", body)]


def table(book: list[str], ours: list[str]) -> tuple[str, int]:
    rows, differing = [], 0
    for i in range(max(len(book), len(ours))):
        b = book[i] if i < len(book) else "(missing)"
        o = ours[i] if i < len(ours) else "(missing)"
        if i >= len(book) or i >= len(ours):
            mark = "one side only (that run stopped early)"
            differing += 1
        elif b == o:
            mark = "same"
        elif b.startswith(("Training loss:", "Validation loss:")) and o.split(":")[0] == b.split(":")[0]:
            nb, no = numbers(b), numbers(o)
            same3 = nb and no and f"{nb[0]:.3f}" == f"{no[0]:.3f}"
            mark = f"{'same at 3 decimals' if same3 else 'DIFFERS'}, |d|={abs(nb[0] - no[0]):.2e}" if nb and no else "DIFFERS"
            differing += 0 if same3 else 1
        else:
            nb, no = numbers(b), numbers(o)
            mark = "DIFFERS" + (f" by {', '.join(f'{abs(x - y):.3f}' for x, y in zip(nb, no))}" if nb and no else "")
            differing += 1
        rows.append(f"| {i + 1} | {b[:90]} | {o[:90]} | {mark} |")
    head = "| # | book's code | gpt-tui --recipe book | |\n|---|---|---|---|"
    return head + "\n" + "\n".join(rows), differing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("text", nargs="?", default=str(DEFAULT_TEXT), help="the corpus (default: %(default)s)")
    parser.add_argument("--book-path", default=DEFAULT_BOOK_PATH,
                        help="the folder llms_from_scratch is installed in (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of each run (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each side (default: %(default)s)")
    parser.add_argument("--book-log", help="the book side's log from an earlier run, instead of running it again")
    parser.add_argument("--ours-log", help="gpt-tui's log from an earlier run, instead of running it again")
    parser.add_argument("--save-book", help="where the book side saves model_and_optimizer.pth (default: not saved)")
    parser.add_argument("--continue-from", metavar="FILE",
                        help="both sides continue the book's model_and_optimizer.pth FILE for --epochs more epochs")
    parser.add_argument("--side", choices=("book",), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.continue_from and (args.save_book or args.book_log or args.ours_log):
        parser.error("--continue-from runs both sides afresh from FILE; leave out --save-book, --book-log and --ours-log")
    if args.side == "book":
        import torch

        torch.set_num_threads(args.threads)
        if args.continue_from:
            book_continue(args.text, args.epochs, args.continue_from)
        else:
            book_side(args.text, args.epochs, args.save_book)
        return 0
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs; {args.threads} thread(s) per side; load {load_average()}")
    with tempfile.TemporaryDirectory(prefix="book-parity-") as tmp:
        procs = {}
        if args.book_log is None:
            cmd = [sys.executable, __file__, args.text, "--side", "book", "--epochs", str(args.epochs),
                   "--threads", str(args.threads)] + (["--save-book", args.save_book] if args.save_book else []) + (
                   ["--continue-from", args.continue_from] if args.continue_from else [])
            procs["book"] = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=dict(env, PYTHONPATH=args.book_path))
        ours_env = dict(env, GPT_TUI_DATA_DIR=tmp, GPT_TUI_CACHE_DIR=tmp + "/cache", GPT_TUI_CONFIG_DIR=tmp + "/config",
                        PYTHONPATH=str(REPO))
        if args.ours_log is None:
            procs["ours"] = subprocess.Popen(gpt_tui_command(args.text, args.epochs, tmp + "/run", args.continue_from),
                                             stdout=subprocess.PIPE, text=True, env=ours_env, cwd=REPO)
        out = {name: proc.communicate()[0] for name, proc in procs.items()}
        for name, proc in procs.items():
            if proc.returncode:
                print(f"the {name} side failed (exit {proc.returncode}):\n{out[name]}")
                return 1
        ours_updates = update_losses(tmp + "/run") if args.continue_from else []
    book_text = Path(args.book_log).read_text() if args.book_log else out["book"]
    ours_text = Path(args.ours_log).read_text() if args.ours_log else out["ours"]
    text, differing = table(comparable(book_text.splitlines()), comparable(ours_text.splitlines()))
    print(text)
    if args.continue_from:
        book_updates = [line for line in book_text.splitlines() if line.startswith("Update loss:")]
        updates, differing_updates = update_table(book_updates, ours_updates)
        print(updates)
        differing += differing_updates
    print(f"{differing} line(s) differ; load {load_average()}")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
