"""Bench 4: tokenizing a big corpus into the cache — throughput and peak memory, one file and a folder.

    python bench/tokenize_bench.py              # a 1 GB synthetic corpus, and a folder of 2,000 files of 1 GB
    python bench/tokenize_bench.py --mb 200     # smaller, quicker

Writes an English-like text file of the requested size into a temporary
folder (deleted afterwards; free disk is checked first), runs
``gpt_tui.engine.data.tokenize_corpus`` on it in a child process with an
empty cache, and reports MB/s (hashing, reading, encoding and writing the
cache all included) and the child's peak resident memory, against the
targets: at least 5 MB/s on 2 cores, at most 2 bytes per token + 200 MB.
A second call (a cache hit) and a pass of batches over the memory-mapped
result are timed too.

The same amount of text as a folder of ``--files`` files (sizes drawn from a
fixed seed) is then tokenized through ``tokenize_parts`` in a child of its
own: its MB/s against the single file's in the same run (target: at least
equal), its peak memory against the same limit, and a re-run after one more
file is added (target: under 5% of the full time). Times are wall clock and
CPU (all threads), with the load average printed, as the machine may be shared.
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


def write_folder(folder: Path, size: int, files: int, seed: int = 1) -> None:
    """``files`` text files in 20 sub-folders, ``size`` bytes in all, each 0.25 to 1.75 times the mean size."""
    rng = random.Random(seed)
    weights = [rng.uniform(0.25, 1.75) for _ in range(files)]
    scale = size / sum(weights)
    sizes = [max(1024, int(w * scale)) for w in weights]
    sizes[-1] += size - sum(sizes)
    source = folder.parent / "folder-source.txt"
    write_corpus(source, size, seed=seed, blocks_made=4)  # fewer distinct blocks: the text is made 4x quicker
    with open(source, "rb") as text:
        for i, n in enumerate(sizes):
            path = folder / f"shelf{i % 20:02d}" / f"book{i:05d}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_whole_characters(text.read(n)))
    source.unlink()


def _whole_characters(data: bytes) -> bytes:
    return data.decode("utf-8", errors="ignore").encode("utf-8")


def worker_write_folder(path: str, size: str, files: str) -> None:
    start = time.perf_counter()
    write_folder(Path(path), int(size), int(files))
    emit_result({"seconds": time.perf_counter() - start})


def worker_tokenize_folder(path: str) -> None:
    """The folder tokenized with an empty cache: wall and CPU seconds, tokens, peak RSS."""
    from gpt_tui.engine.corpus_parts import resolve_sources
    from gpt_tui.engine.corpus_tokens import tokenize_parts

    start, cpu = time.perf_counter(), time.process_time()
    tokens = tokenize_parts(resolve_sources([path]))
    emit_result({
        "tokens": len(tokens.stream), "parts": tokens.parts, "tokenized": tokens.tokenized_parts,
        "cold_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu, "peak_rss": peak_rss(),
    })


def worker_add_one(path: str) -> None:
    """One more file in the folder, and the folder tokenized again: only that file is tokenized."""
    from gpt_tui.engine.corpus_parts import resolve_sources
    from gpt_tui.engine.corpus_tokens import tokenize_parts

    extra = Path(path) / "shelf00" / "zz-added.txt"
    write_corpus(extra, 512 * 1024, seed=99, blocks_made=1, block_bytes=MB)
    start, cpu = time.perf_counter(), time.process_time()
    tokens = tokenize_parts(resolve_sources([path]))
    emit_result({
        "seconds": time.perf_counter() - start, "cpu_s": time.process_time() - cpu, "tokenized": tokens.tokenized_parts,
        "cached": tokens.cached_parts, "peak_rss": peak_rss(),
    })


def worker_tokenize(path: str) -> None:
    from gpt_tui.engine.token_cache import tokenize_corpus  # not engine.data: that imports torch, 200 MB of RSS

    start, cpu = time.perf_counter(), time.process_time()
    tokens = tokenize_corpus(path)
    cold = time.perf_counter() - start
    cold_cpu = time.process_time() - cpu
    peak_cold = peak_rss()
    start = time.perf_counter()
    again = tokenize_corpus(path)
    warm = time.perf_counter() - start
    assert len(again) == len(tokens)
    emit_result({"tokens": int(len(tokens)), "cold_s": cold, "cpu_s": cold_cpu, "warm_s": warm, "peak_rss": peak_cold})


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
    parser.add_argument("--files", type=int, default=2000, help="files in the folder case (0: no folder case)")
    parser.add_argument("--worker", nargs="*")
    args = parser.parse_args()
    if args.worker is not None:
        workers = {
            "write": worker_write, "tokenize": worker_tokenize, "batches": worker_batches,
            "write_folder": worker_write_folder, "tokenize_folder": worker_tokenize_folder, "add_one": worker_add_one,
        }
        workers[args.worker[0]](*args.worker[1:])
        return
    size = args.mb * MB
    script = Path(__file__).resolve()
    tmp_root = Path(tempfile.gettempdir())
    free = shutil.disk_usage(tmp_root).free
    needed = int(size * 1.8) + 256 * MB  # the text, ~0.5 bytes of tokens per byte, headroom (one case at a time)
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
        corpus.unlink()
        shutil.rmtree(workdir / "cache", ignore_errors=True)
        folder_rows = _folder_case(script, workdir, size, args.files, result) if args.files else []
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
    rows[0][1] += f" ({result['cpu_s']:.1f} s CPU)"
    print(table(["step", "time", "throughput", "tokens", "peak RSS", "RSS limit (2 B/token + 200 MB)"], rows + folder_rows,
                text_columns=1))
    print()
    print(f"throughput >= 5 MB/s: {rate:.1f} MB/s -> {'MET' if rate >= 5 else 'MISSED'}")
    print(f"peak RSS <= 2 bytes/token + 200 MB: {result['peak_rss'] / MB:,.0f} MB <= {limit / MB:,.0f} MB -> "
          f"{'MET' if result['peak_rss'] <= limit else 'MISSED'}")
    for line in _folder_verdicts:
        print(line)
    print(f"load average at end: {load_average()}")


_folder_verdicts: list[str] = []


def _folder_case(script: Path, workdir: Path, size: int, files: int, single: dict) -> list[list[str]]:
    """The folder rows of the table, and its verdicts against the single file measured above."""
    env = {f"GPT_TUI_{d}_DIR": str(workdir / d.lower()) for d in ("CACHE", "DATA", "CONFIG")}
    folder = workdir / "folder"
    wrote = run_worker(script, ["write_folder", str(folder), str(size), str(files)], env, timeout=3600)
    print(f"wrote a folder of {files:,} files, {size / MB:,.0f} MB, in {wrote['seconds']:.1f}s; load average {load_average()}")
    full = run_worker(script, ["tokenize_folder", str(folder)], env, timeout=7200)
    added = run_worker(script, ["add_one", str(folder)], env, timeout=3600)
    rate, single_rate = size / MB / full["cold_s"], size / MB / single["cold_s"]
    cpu_rate, single_cpu_rate = size / MB / full["cpu_s"], size / MB / single["cpu_s"]
    limit = 2 * full["tokens"] + 200 * MB
    share = added["seconds"] / full["cold_s"]
    _folder_verdicts.extend([
        f"folder MB/s >= single file's: {rate:.1f} vs {single_rate:.1f} MB/s wall, {cpu_rate:.1f} vs {single_cpu_rate:.1f} "
        f"MB per CPU-second -> {'MET' if rate >= single_rate else 'MISSED'} (wall)",
        f"folder peak RSS <= 2 bytes/token + 200 MB: {full['peak_rss'] / MB:,.0f} MB <= {limit / MB:,.0f} MB -> "
        f"{'MET' if full['peak_rss'] <= limit else 'MISSED'}",
        f"re-run after adding one file < 5% of the full time: {added['seconds']:.2f} s = {100 * share:.2f}% "
        f"({added['tokenized']} part tokenized, {added['cached']} from the cache) -> {'MET' if share < 0.05 else 'MISSED'}",
    ])
    return [
        [f"folder of {full['parts']:,} files (cache miss)", f"{full['cold_s']:.1f} s ({full['cpu_s']:.1f} s CPU)",
         f"{rate:.1f} MB/s", f"{full['tokens'] / full['cold_s'] / 1e6:.2f} M tokens/s", f"{full['peak_rss'] / MB:,.0f} MB",
         f"{limit / MB:,.0f} MB"],
        ["folder + 1 file (re-run)", f"{added['seconds']:.2f} s ({added['cpu_s']:.1f} s CPU)", "-", "-",
         f"{added['peak_rss'] / MB:,.0f} MB", "-"],
    ]


if __name__ == "__main__":
    main()
