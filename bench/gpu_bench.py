"""GPU bench: training throughput and MFU of gpt2-small at context 1024, plus batch-1 decoding.

    python bench/gpu_bench.py                  # on a machine with torch + CUDA, from the repo root
    python bench/gpu_bench.py --no-compile     # skip the torch.compile row (saves about a minute)
    python bench/gpu_bench.py --device cpu --preset tiny --context 128 --batch 4 --steps 6   # a dry run

Rows (each in its own process, so an out-of-memory error or a compiler failure
costs one row, not the run):

- gpt-tui ``Trainer`` end to end (bf16 autocast, TF32, fused AdamW, flash SDPA,
  the fused cross-entropy with the vocabulary padded to a multiple of 64,
  pinned + prefetched batches, one host sync per step for the log line),
  eager and with ``--compile``;
- the chapter-5 reference training step on the same GPU (fp32, default AdamW, manual attention);
- batch-1 greedy decoding with gpt-tui's KV cache, fp32 and bf16.

The model is GPT-2 124M as released (q/k/v bias, tied head, no dropout).
MFU follows nanoGPT's ``estimate_mfu``: 6N + 12·L·H·Q·T FLOPs per token (N
without the position table), against the GPU's dense bf16 peak (H100 SXM
989 TFLOP/s; pass ``--peak-tflops`` for a GPU the table does not know).
Needs nothing beyond gpt-tui's own dependencies; finishes in 2-4 minutes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from common import emit_result, load_average, median, now, run_worker, table  # noqa: E402

MB = 1 << 20
WARMUP_STEPS = 3


def gpu_peak(name: str) -> float | None:
    """The dense bf16 peak from gpt-tui's own datasheet table (gpt_tui.engine.mfu)."""
    from gpt_tui.engine.mfu import datasheet_peak

    peak = datasheet_peak(name, "bf16")
    return peak.flops if peak else None


def flops_per_token(params_without_positions: int, n_layers: int, emb_dim: int, context: int) -> float:
    from gpt_tui.engine import mfu

    return mfu.flops_per_token(params_without_positions, n_layers, emb_dim, context)


def _model_config(preset: str, context: int):
    from gpt_tui.engine.model import get_preset

    return get_preset(preset, context_length=context, qkv_bias=True, tie_weights=True, drop_rate=0.0)


# --- workers --------------------------------------------------------------------------

def worker_trainer(device: str, preset: str, batch: int, context: int, steps: int, compile_flag: bool, workdir: str) -> None:
    import torch

    from gpt_tui.engine import events as ev
    from gpt_tui.engine.checkpoint import save_checkpoint
    from gpt_tui.engine.model import GPTModel
    from gpt_tui.engine.trainer import TrainConfig, Trainer
    from tokenize_bench import write_corpus

    corpus = Path(workdir) / "corpus.txt"
    if not corpus.exists():
        write_corpus(corpus, 6 * MB, blocks_made=1, block_bytes=6 * MB)
    config = _model_config(preset, context)
    torch.manual_seed(0)
    init = save_checkpoint(Path(workdir) / f"init-{preset}.safetensors", GPTModel(config))
    seen: list = []
    train_config = TrainConfig(
        data=str(corpus), model=preset, context_length=context, batch_size=batch, max_steps=steps,
        eval_freq=10**9, eval_iter=1, sample_tokens=0, device=device, precision="auto", drop_rate=0.0,
        run_dir=str(Path(workdir) / f"run-{int(time.time() * 1000)}"), compile=compile_flag, checkpoint_every=0,
    )
    trainer = Trainer(train_config, seen.append, init_from=str(init))
    trainer.run()
    steps_seen = [e for e in seen if isinstance(e, ev.StepEvent)]
    elapsed = [e.elapsed for e in steps_seen]
    times = [b - a for a, b in zip([0.0] + elapsed[:-1], elapsed)]
    model = trainer.model
    assert model is not None
    params = model.num_parameters() - model.pos_emb.weight.numel()
    emit_result({
        "times": times, "tokens_per_step": batch * context, "params": params, "layers": config.n_layers,
        "emb_dim": config.emb_dim, "loss_first": steps_seen[0].loss, "loss_last": steps_seen[-1].loss,
        "peak_mem": torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0,
    })


def worker_reference(device: str, preset: str, batch: int, context: int, steps: int) -> None:
    import torch

    from reference import ReferenceGPT, make_optimizer, reference_config, train_step

    config = _model_config(preset, context)
    torch.manual_seed(0)
    model = ReferenceGPT(reference_config(
        emb_dim=config.emb_dim, n_layers=config.n_layers, n_heads=config.n_heads, context_length=context,
        drop_rate=0.0, qkv_bias=True,
    )).to(device).train()
    optimizer = make_optimizer(model)
    times = []
    for _ in range(steps):
        x = torch.randint(0, 50257, (batch, context), device=device)
        y = torch.randint(0, 50257, (batch, context), device=device)
        start = time.perf_counter()
        train_step(model, optimizer, x, y)  # .item() inside waits for the GPU
        times.append(time.perf_counter() - start)
    # The book's head is untied: it counts as a matmul, the token table (a lookup) does not.
    params = sum(p.numel() for p in model.parameters()) - model.pos_emb.weight.numel() - model.tok_emb.weight.numel()
    emit_result({"times": times, "tokens_per_step": batch * context, "params": params,
                 "layers": config.n_layers, "emb_dim": config.emb_dim,
                 "peak_mem": torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0})


def worker_generate(device: str, preset: str, precision: str, new_tokens: int) -> None:
    import torch

    from gpt_tui.engine.generation import SamplingConfig, stream_generate
    from gpt_tui.engine.precision import prepare_for_inference
    from gpt_tui.engine.model import GPTModel
    from gpt_tui.engine.tokenizer import text_to_token_ids

    torch.manual_seed(0)
    model = prepare_for_inference(GPTModel(_model_config(preset, 1024)).to(device).eval(), precision)
    prompt = text_to_token_ids("Every effort moves you")
    sampling = SamplingConfig(max_new_tokens=new_tokens)
    for token in stream_generate(model, prompt, sampling.with_(max_new_tokens=8)):  # warm-up
        pass
    start = time.perf_counter()
    first = None
    count = 0
    for token in stream_generate(model, prompt, sampling):
        int(token[0])
        if first is None:
            first = time.perf_counter() - start
        count += 1
    total = time.perf_counter() - start
    emit_result({"tokens_per_s": count / total, "first_ms": 1000 * (first or 0.0),
                 "dtype": str(model.tok_emb.weight.dtype).replace("torch.", "")})


# --- main -------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--preset", default="gpt2-small")
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=16, help="sequences per step (16 x 1024 fits an 80 GB GPU easily)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, if the table does not know it")
    parser.add_argument("--worker", nargs="*")
    args = parser.parse_args()
    if args.worker is not None:
        kind, rest = args.worker[0], args.worker[1:]
        if kind == "trainer":
            worker_trainer(rest[0], rest[1], int(rest[2]), int(rest[3]), int(rest[4]), rest[5] == "1", rest[6])
        elif kind == "reference":
            worker_reference(rest[0], rest[1], int(rest[2]), int(rest[3]), int(rest[4]))
        elif kind == "generate":
            worker_generate(rest[0], rest[1], rest[2], int(rest[3]))
        return

    import torch

    started = time.perf_counter()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("No CUDA GPU here; run on a GPU machine, or pass --device cpu for a dry run.")
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU (dry run)"
    peak = args.peak_tflops * 1e12 if args.peak_tflops else gpu_peak(name)
    print(f"GPU bench — {now()}")
    cuda = f", CUDA {torch.version.cuda}" if torch.version.cuda else ""
    peak_text = f"bf16 peak used for MFU: {peak / 1e12:.0f} TFLOP/s" if peak else "bf16 peak unknown (pass --peak-tflops)"
    print(f"device: {name}; torch {torch.__version__}{cuda}; {peak_text}")
    print(f"model: {args.preset} (GPT-2 as released: q/k/v bias, tied head, no dropout), "
          f"context {args.context}, batch {args.batch}; host load average {load_average()}")
    script = Path(__file__).resolve()
    rows = []
    mfus = {}
    with tempfile.TemporaryDirectory(prefix="gpt-tui-gpu-bench-") as workdir:
        env = {f"GPT_TUI_{d}_DIR": str(Path(workdir) / d.lower()) for d in ("CACHE", "DATA", "CONFIG")}
        common = [args.device, args.preset, str(args.batch), str(args.context)]
        jobs = [("gpt-tui Trainer, eager", ["trainer", *common, str(args.steps), "0", workdir])]
        if not args.no_compile:
            jobs.append(("gpt-tui Trainer, --compile", ["trainer", *common, str(args.steps + 10), "1", workdir]))
        if not args.no_reference:
            jobs.append(("chapter-5 reference (fp32)", ["reference", *common, str(min(args.steps, 12))]))
        for label, job in jobs:
            try:
                r = run_worker(script, job, env, timeout=600)
            except (SystemExit, Exception) as exc:  # one failed row must not lose the others
                rows.append([label, "failed", "-", "-", "-", "-", str(exc)[:60]])
                continue
            skip = WARMUP_STEPS + (10 if "compile" in label else 0)
            timed = r["times"][skip:] or r["times"][-1:]
            step_s = median(timed)
            rate = r["tokens_per_step"] / step_s
            fpt = flops_per_token(r["params"], r["layers"], r["emb_dim"], args.context)
            mfu = rate * fpt / peak if peak else None
            mfus[label] = mfu
            rows.append([label, len(timed), f"{step_s * 1000:.1f}", f"{rate:,.0f}",
                         f"{100 * mfu:.1f}%" if mfu is not None else "n/a", f"{r['peak_mem'] / (1 << 30):.1f}",
                         f"loss {r['loss_first']:.2f} -> {r['loss_last']:.2f}" if "loss_first" in r else ""])
        print()
        print(table(["training", "steps timed", "ms/step", "tokens/s", "MFU (bf16 peak)", "peak GiB", "note"], rows, text_columns=1))
        gen_rows = []
        for precision in ("fp32", "auto"):
            try:
                g = run_worker(script, ["generate", args.device, args.preset, precision, "200"], env, timeout=300)
            except (SystemExit, Exception) as exc:
                gen_rows.append([precision, "failed", str(exc)[:60], ""])
                continue
            gen_rows.append([f"{precision} ({g['dtype']})", "200", f"{g['tokens_per_s']:.1f}", f"{g['first_ms']:.1f}"])
        print()
        print(table(["decoding, batch 1, greedy", "new tokens", "tokens/s", "first token ms"], gen_rows, text_columns=1))
    print()
    best = max((m for m in mfus.values() if m is not None), default=None)
    if best is not None:
        print(f"best MFU {100 * best:.1f}% (target >= 45% for gpt2-small at context 1024): {'MET' if best >= 0.45 else 'MISSED'}")
    print(f"finished in {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
