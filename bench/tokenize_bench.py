"""Bench 4: tokenizing a big corpus into the cache — throughput and peak memory.

    python bench/tokenize_bench.py              # a 1 GB synthetic corpus
    python bench/tokenize_bench.py --mb 200     # smaller, quicker

Writes an English-like text file of the requested size into a temporary
folder (deleted afterwards; free disk is checked first), runs
``gpt_tui.engine.data.tokenize_corpus`` on it in a child process with an
empty cache, and reports MB/s (hashing, reading, encoding and writing the
cache all included) and the child's peak resident memory, against the
targets: at least 5 MB/s on 2 cores, at most 2 bytes per token + 200 MB.
A second call (a cache hit) and a pass of batches over the memory-mapped
result are timed too.
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from common import emit_result, load_average, machine_line, now, run_worker, table, warn_if_busy  # noqa: E402

MB = 1 << 20


def write_corpus(path: Path, size: int, seed: int = 0, blocks_made: int = 16, block_bytes: int = 8 * MB) -> None:
    """English-like text: words drawn with their frequencies in Python's own docs, in lines and paragraphs.

    ``blocks_made`` different blocks of ``block_bytes`` are written in a shuffled order until the file has ``size`` bytes.
    """
    from gpt_tui.engine.corpus import default_corpus_text

    rng = random.Random(seed)
    words = default_corpus_text().split()
    blocks = []
    for _ in range(blocks_made):
        drawn = rng.choices(words, k=block_bytes // 5)  # ~6 bytes per word with its space
        for i in range(0, len(drawn), 12):  # a line break after every ~12 words, a blank line now and then
            drawn[i] += "\n\n" if rng.random() < 0.15 else "\n"
        blocks.append(" ".join(drawn).encode("utf-8"))
    written = 0
    with open(path, "wb") as out:
        while written < size:
            block = blocks[rng.randrange(len(blocks))][: size - written]
            if written + len(block) >= size:  # end on a whole character
                block = block.decode("utf-8", errors="ignore").encode("utf-8")
            out.write(block)
            written += len(block)


def peak_rss() -> int:
    """This process's peak resident memory in bytes: VmHWM on Linux (ru_maxrss would also count
    the parent's pages at fork time), ru_maxrss elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def worker_write(path: str, size: str) -> None:
    start = time.perf_counter()
    write_corpus(Path(path), int(size))
    emit_result({"seconds": time.perf_counter() - start})


def worker_tokenize(path: str) -> None:
    from gpt_tui.engine.data import tokenize_corpus

    start = time.perf_counter()
    tokens = tokenize_corpus(path)
    cold = time.perf_counter() - start
    peak_cold = peak_rss()
    start = time.perf_counter()
    again = tokenize_corpus(path)
    warm = time.perf_counter() - start
    assert len(again) == len(tokens)
    emit_result({"tokens": int(len(tokens)), "cold_s": cold, "warm_s": warm, "peak_rss": peak_cold})


def worker_batches(path: str) -> None:
    """Read 200 shuffled batches of 16 x 1024 from the memory-mapped cache, as gpt2-small training on a GPU would."""
    from gpt_tui.engine.data import make_loaders, tokenize_corpus

    tokens = tokenize_corpus(path)
    splits = make_loaders(tokens, context_length=1024, stride=1024, batch_size=16, seed=1)
    batches = splits.train.batches(0, 0)
    next(batches)  # the first batch imports torch
    start = time.perf_counter()
    n = 0
    for _ in range(200):
        next(batches)
        n += 1
    elapsed = time.perf_counter() - start
    emit_result({"batches": n, "ms_per_batch": 1000 * elapsed / n, "peak_rss": peak_rss()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=1024, help="corpus size in MiB")
    parser.add_argument("--worker", nargs="*")
    args = parser.parse_args()
    if args.worker is not None:
        {"write": worker_write, "tokenize": worker_tokenize, "batches": worker_batches}[args.worker[0]](*args.worker[1:])
        return
    size = args.mb * MB
    script = Path(__file__).resolve()
    tmp_root = Path(tempfile.gettempdir())
    free = shutil.disk_usage(tmp_root).free
    needed = int(size * 1.8) + 256 * MB  # the text, ~0.5 bytes of tokens per byte, headroom
    if free < needed:
        raise SystemExit(f"Not enough free disk in {tmp_root}: {free / MB:,.0f} MB free, {needed / MB:,.0f} MB needed.")
    print(f"Bench 4, tokenizing a {args.mb:,} MB corpus — {now()}")
    print(machine_line())
    print(f"free disk in {tmp_root}: {free / (1 << 30):,.1f} GB; load average at start: {load_average()}")
    warn_if_busy()
    workdir = Path(tempfile.mkdtemp(prefix="gpt-tui-tokenize-"))
    try:
        env = {f"GPT_TUI_{d}_DIR": str(workdir / d.lower()) for d in ("CACHE", "DATA", "CONFIG")}
        corpus = workdir / "corpus.txt"
        wrote = run_worker(script, ["write", str(corpus), str(size)], env)
        print(f"wrote {corpus.stat().st_size / MB:,.0f} MB of text in {wrote['seconds']:.1f}s")
        result = run_worker(script, ["tokenize", str(corpus)], env, timeout=3600)
        loading = run_worker(script, ["batches", str(corpus)], env)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    tokens = result["tokens"]
    rate = size / MB / result["cold_s"]
    limit = 2 * tokens + 200 * MB
    rows = [
        ["tokenize (cache miss)", f"{result['cold_s']:.1f} s", f"{rate:.1f} MB/s", f"{tokens / result['cold_s'] / 1e6:.2f} M tokens/s",
         f"{result['peak_rss'] / MB:,.0f} MB", f"{limit / MB:,.0f} MB"],
        ["tokenize again (cache hit)", f"{result['warm_s'] * 1000:.0f} ms", "-", "-", "-", "-"],
        ["batches 16x1024 from the memmap", f"{loading['ms_per_batch']:.2f} ms/batch", "-",
         f"{16 * 1024 / loading['ms_per_batch'] / 1e3:.1f} M tokens/s", f"{loading['peak_rss'] / MB:,.0f} MB", "-"],
    ]
    print()
    print(f"{tokens:,} tokens ({size / tokens:.2f} bytes of text per token)")
    print(table(["step", "time", "throughput", "tokens", "peak RSS", "RSS limit (2 B/token + 200 MB)"], rows, text_columns=1))
    print()
    print(f"throughput >= 5 MB/s: {rate:.1f} MB/s -> {'MET' if rate >= 5 else 'MISSED'}")
    print(f"peak RSS <= 2 bytes/token + 200 MB: {result['peak_rss'] / MB:,.0f} MB <= {limit / MB:,.0f} MB -> "
          f"{'MET' if result['peak_rss'] <= limit else 'MISSED'}")
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()
