"""Bench 5: batch-1 greedy decoding, gpt-tui against llama.cpp, format by format, on the same weights.

    python bench/decode_vs_llamacpp.py                  # 400 tokens, two rounds, one thread and all threads
    python bench/decode_vs_llamacpp.py --modes one      # one thread only (CPU time; what a shared machine allows)
    python bench/decode_vs_llamacpp.py --profile always # and where a gpt-tui token's time goes, every format

The weights are a seeded random GPT-2 124M (q/k/v bias, tied head), saved
as a gpt-tui checkpoint and written by ``gpt-tui export --to gguf`` in f32,
bf16 and q8_0. llama.cpp (through llama-cpp-python's ``Llama``) loads each
file; gpt-tui decodes the checkpoint with its counterpart: fp32,
``--precision bf16`` and ``--quantize int8`` (``prepare_for_inference``, then
``stream_generate``). Both sides get the same prompt token ids and decode
greedily. Every measurement runs in a fresh process, after a short warm-up
call; the sides take turns, format by format, over the rounds, and each keeps
its best round.

- one thread: llama.cpp with ``n_threads=1``, torch with one thread, each
  timed by its own process CPU time, which other load on the machine hardly
  moves: tokens per CPU-second;
- all threads: every core on both sides, timed by the wall clock (a busy
  machine shows here, so the load average is printed).

The first 40 greedy tokens of the two sides are compared for every format.
Where gpt-tui misses in a format (or with ``--profile always``), a profile of
its decoded token follows: time in weight matmuls and the GB/s they stream,
against the GB/s llama.cpp's one-thread rate implies, and the time outside them.
Needs llama-cpp-python (``pip install "gpt-tui[llamacpp]"``; it builds
llama.cpp from source, see bench/README.md) and gguf (``gpt-tui[gguf]``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from common import cpu_model, emit_result, load_average, now, run_worker, table, warn_if_busy  # noqa: E402

PROMPT = "Every effort moves you"
SEED = 123
FORMATS = {  # GGUF type -> (gpt-tui precision, gpt-tui quantize, label of gpt-tui's side)
    "f32": ("fp32", "none", "gpt-tui fp32"),
    "bf16": ("bf16", "none", "gpt-tui --precision bf16"),
    "q8_0": ("auto", "int8", "gpt-tui --quantize int8"),
}
COMPARED = 40  # greedy tokens that must agree
WARMUP_TOKENS = 8


def _clock(mode: str):
    return time.process_time if mode == "one" else time.perf_counter


def worker_llama(path: str, prompt: list[int], tokens: int, mode: str) -> None:
    import llama_cpp

    threads = 1 if mode == "one" else (os.cpu_count() or 1)
    llm = llama_cpp.Llama(model_path=path, n_ctx=len(prompt) + tokens + WARMUP_TOKENS, n_threads=threads,
                          n_threads_batch=threads, verbose=False)

    def call(n: int) -> list[int]:
        out = []
        llm.reset()
        for token in llm.generate(prompt, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
            out.append(int(token))
            if len(out) == n:
                break
        return out

    call(WARMUP_TOKENS)
    clock = _clock(mode)
    start = clock()
    out = call(tokens)
    emit_result({"seconds": clock() - start, "tokens": out, "threads": threads})


def worker_gpt_tui(checkpoint: str, prompt: list[int], tokens: int, mode: str, gguf_type: str) -> None:
    import torch

    from gpt_tui.engine.generation import SamplingConfig, stream_generate
    from gpt_tui.engine.precision import prepare_for_inference
    from gpt_tui.engine.weights import load_model

    if mode == "one":
        torch.set_num_threads(1)
    precision, quantize, _ = FORMATS[gguf_type]
    fast = prepare_for_inference(load_model(checkpoint).model, precision, quantize)
    ids = torch.tensor([prompt])

    def call(n: int) -> list[int]:
        return [int(t[0]) for t in stream_generate(fast, ids, SamplingConfig(max_new_tokens=n, temperature=0.0))]

    call(WARMUP_TOKENS)
    clock = _clock(mode)
    start = clock()
    out = call(tokens)
    emit_result({"seconds": clock() - start, "tokens": out, "threads": torch.get_num_threads()})


# Ops that multiply by a weight matrix, as torch's profiler names them.
WEIGHT_OPS = ("mkldnn::_linear_pointwise", "mkl::_mkl_linear", "quantized::linear_dynamic",
              "aten::_weight_int8pack_mm", "aten::addmm", "aten::mm", "aten::mv", "aten::addmv")
# Bytes a decoded token reads per weight of a linear layer: gpt-tui's and llama.cpp's format.
BYTES_PER_WEIGHT = {"f32": (4.0, 4.0), "bf16": (2.0, 2.0), "q8_0": (1.0, 34 / 32)}  # q8_0: 32 int8 + one f16 scale


def worker_profile(checkpoint: str, prompt: list[int], tokens: int, gguf_type: str) -> None:
    """One thread: where a decoded token's CPU time goes, weight matmuls against the rest."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from gpt_tui.engine.generation import SamplingConfig, decoding_model, stream_generate
    from gpt_tui.engine.precision import prepare_for_inference
    from gpt_tui.engine.weights import load_model

    torch.set_num_threads(1)
    precision, quantize, _ = FORMATS[gguf_type]
    model = load_model(checkpoint).model
    fast = prepare_for_inference(model, precision, quantize)
    sampling = SamplingConfig(max_new_tokens=tokens + 1, temperature=0.0)
    ids = torch.tensor([prompt])
    list(stream_generate(fast, ids, sampling.with_(max_new_tokens=WARMUP_TOKENS)))
    start = time.process_time()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        list(stream_generate(fast, ids, sampling))
    total = time.process_time() - start
    # The profiler clocks ops by the wall; their shares are scaled to the process's CPU time.
    ops = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    share = total / sum(ops.values())
    ops = {k: v * share for k, v in ops.items()}
    matmul = sum(ops.get(k, 0) for k in WEIGHT_OPS)
    decoded = decoding_model(fast, sampling)
    weights = sum(m.in_features * m.out_features for m in decoded.modules() if hasattr(m, "out_features"))
    top = sorted(((1e3 * v / tokens, k) for k, v in ops.items() if k not in WEIGHT_OPS), reverse=True)[:6]
    emit_result({"ms_token": 1e3 * total / tokens, "matmul_ms": 1e3 * matmul / tokens, "weights": weights,
                 "top": [[k, round(ms, 3)] for ms, k in top]})


def print_profiles(script: Path, env: dict[str, str], shared: dict, prompt: str, formats: list[str],
                   llama_rates: dict[str, float], tokens: int) -> None:
    """Per token, for each format: time in weight matmuls and its GB/s, llama.cpp's implied GB/s, the rest."""
    rows = []
    for gguf_type in formats:
        got = run_worker(script, ["profile", shared["checkpoint"], prompt, str(tokens), gguf_type], env)
        ours, theirs = BYTES_PER_WEIGHT[gguf_type]
        gbs = got["weights"] * ours / (got["matmul_ms"] / 1e3) / 1e9
        rate = llama_rates.get(gguf_type)
        implied = f"{got['weights'] * theirs * rate / 1e9:.1f}" if rate else "-"
        rest = ", ".join(f"{k.split('::')[-1]} {ms:.2f}" for k, ms in got["top"])
        rows.append([FORMATS[gguf_type][2], f"{got['ms_token']:.2f}", f"{got['matmul_ms']:.2f}", f"{gbs:.1f}",
                     implied, f"{got['ms_token'] - got['matmul_ms']:.2f}", rest])
    print()
    print("Profile of a decoded token, one thread (torch.profiler's op shares of the process CPU time, prefill included):")
    print(table(["gpt-tui side", "ms/token", "weight matmuls ms", "their GB/s", "llama.cpp implied GB/s (all in matmuls)",
                 "outside matmuls ms", "largest outside (ms/token)"], rows))


def worker_export(workdir: str) -> None:
    """The shared weights: a gpt-tui checkpoint and its three GGUF files."""
    import torch

    from gpt_tui.engine.checkpoint import save_checkpoint
    from gpt_tui.engine.gguf_export import export_gguf
    from gpt_tui.engine.model import GPTModel, get_preset
    from gpt_tui.engine.tokenizer import encode

    torch.manual_seed(SEED)
    model = GPTModel(get_preset("gpt2-small", qkv_bias=True, tie_weights=True, drop_rate=0.0)).eval()
    checkpoint = save_checkpoint(Path(workdir) / "gpt2-random.safetensors", model)
    files = {t: str(export_gguf(checkpoint, Path(workdir) / f"gpt2-random-{t}.gguf", t)) for t in FORMATS}
    emit_result({"checkpoint": str(checkpoint), "files": files, "prompt": encode(PROMPT),
                 "torch": torch.__version__, "torch_threads": torch.get_num_threads()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=400, help="new tokens per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; in each, every side runs once per format, in turn")
    parser.add_argument("--modes", default="one,all", help="one (one thread, CPU time), all (all threads, wall clock)")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                        help="profile gpt-tui's decoded token per format: where one misses (auto), always, or never")
    parser.add_argument("--worker", nargs="*")
    args = parser.parse_args()
    if args.worker is not None:
        kind, rest = args.worker[0], args.worker[1:]
        if kind == "export":
            worker_export(rest[0])
        else:
            prompt = [int(x) for x in rest[1].split(",")]
            if kind == "llama":
                worker_llama(rest[0], prompt, int(rest[2]), rest[3])
            elif kind == "profile":
                worker_profile(rest[0], prompt, int(rest[2]), rest[3])
            else:
                worker_gpt_tui(rest[0], prompt, int(rest[2]), rest[3], rest[4])
        return

    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        raise SystemExit('llama-cpp-python is not installed: pip install "gpt-tui[llamacpp]" (see bench/README.md).')
    if importlib.util.find_spec("gguf") is None:
        raise SystemExit('gguf is not installed: pip install "gpt-tui[gguf]".')
    import llama_cpp

    script = Path(__file__).resolve()
    formats = args.formats.split(",")
    modes = args.modes.split(",")
    with tempfile.TemporaryDirectory(prefix="gpt-tui-bench-") as workdir:
        env = {f"GPT_TUI_{d}_DIR": str(Path(workdir) / d.lower()) for d in ("CACHE", "DATA", "CONFIG")}
        print(f"Bench 5, batch-1 greedy decoding, gpt-tui against llama.cpp, GPT-2 124M (random, seeded) — {now()}")
        print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs; llama-cpp-python {llama_cpp.__version__}")
        print(f"load average at start: {load_average()}")
        warn_if_busy()
        shared = run_worker(script, ["export", workdir], env)
        print(f"torch {shared['torch']}; prompt {PROMPT!r} = {len(shared['prompt'])} token ids, the same on both sides")
        prompt = ",".join(str(t) for t in shared["prompt"])
        best: dict[tuple[str, str, str], dict] = {}
        seconds: dict[tuple[str, str, str], list[float]] = {}
        for round_ in range(args.rounds):
            for mode in modes:
                for gguf_type in formats:
                    jobs = [
                        ("llama.cpp", ["llama", shared["files"][gguf_type], prompt, str(args.tokens), mode]),
                        ("gpt-tui", ["gpt-tui", shared["checkpoint"], prompt, str(args.tokens), mode, gguf_type]),
                    ]
                    if round_ % 2:  # the other side goes first in odd rounds
                        jobs.reverse()
                    for side, job in jobs:
                        got = run_worker(script, job, env)
                        key = (mode, gguf_type, side)
                        seconds.setdefault(key, []).append(got["seconds"])
                        if key not in best or got["seconds"] < best[key]["seconds"]:
                            best[key] = got
            print(f"  round {round_ + 1} done, load average {load_average()}")

        rows = []
        verdicts = []
        for mode in modes:
            unit = "tokens per CPU-second (1 thread)" if mode == "one" else "tokens/s wall (all threads)"
            for gguf_type in formats:
                ours, theirs = best[(mode, gguf_type, "gpt-tui")], best[(mode, gguf_type, "llama.cpp")]
                rate_ours, rate_theirs = args.tokens / ours["seconds"], args.tokens / theirs["seconds"]
                spread = {side: max(seconds[(mode, gguf_type, side)]) / min(seconds[(mode, gguf_type, side)]) - 1
                          for side in ("gpt-tui", "llama.cpp")}
                agree = sum(a == b for a, b in zip(ours["tokens"][:COMPARED], theirs["tokens"][:COMPARED]))
                rows.append([unit, f"llama.cpp {gguf_type}", f"{rate_theirs:.1f}", "1.00x",
                             f"{100 * spread['llama.cpp']:.0f}%", theirs["threads"], "-"])
                rows.append([unit, FORMATS[gguf_type][2], f"{rate_ours:.1f}", f"{rate_ours / rate_theirs:.2f}x",
                             f"{100 * spread['gpt-tui']:.0f}%", ours["threads"], f"{agree}/{COMPARED}"])
                verdicts.append(f"{mode} thread{'s' if mode == 'all' else ''}, {gguf_type}: gpt-tui "
                                f"{rate_ours / rate_theirs:.2f}x llama.cpp -> "
                                f"{'MET' if rate_ours >= rate_theirs else 'MISSED'}; first {COMPARED} greedy tokens "
                                f"agree: {agree}/{COMPARED}")
        print()
        print(table(["clock", "side", f"tokens/s ({args.tokens} new)", "vs llama.cpp", "round spread", "threads",
                     f"first {COMPARED} tokens agree"], rows))
        print()
        print("Each side keeps its best round; 'round spread' is how much slower its worst round was. The one-thread")
        print("rows are CPU time of the whole process, so a shared machine hardly moves them; the all-thread rows are")
        print("wall time and are only as good as the machine was idle.")
        for line in verdicts:
            print(line)
        one_thread = {t: args.tokens / best[("one", t, "llama.cpp")]["seconds"] for t in formats if "one" in modes}
        missed = [t for t in formats if any(
            best[(m, t, "gpt-tui")]["seconds"] > best[(m, t, "llama.cpp")]["seconds"] for m in modes)]
        profiled = formats if args.profile == "always" else missed if args.profile == "auto" else []
        if profiled:
            print_profiles(script, env, shared, prompt, profiled, one_thread, min(args.tokens, 100))
        print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()
