"""Bench 1: CPU training speed of gpt-tui against the chapter-5 code, same weights, same batches.

    python bench/train_bench.py            # gpt2-small shape (context 256) at batch 2, 8 and 16, and the tiny preset
    python bench/train_bench.py --steps 8  # fewer steps when time is short
    python bench/train_bench.py --cpu-time --setups gpt2-small,gpt2-small-b8  # one thread, by CPU time

Each measurement runs in its own process. Both sides start from the same
initial weights (the reference model's, copied into gpt-tui's layout) and see
the same batches of the built-in corpus, so their loss curves can be compared
step by step. gpt-tui is timed through its real ``Trainer`` (data loading,
schedule, events included) with its defaults (``--precision auto``: the
precision its calibration measured faster for training on this machine,
printed beside the row), and with fp32 and bf16 forced for the gpt2-small
shapes. Gradient clipping is off on both sides, as in the book. Rates
use each side's best step (on a shared machine other load only slows steps
down); medians are printed beside them.
MFU uses 6N + 12·L·d·T FLOPs per token (N: parameters of all matmuls,
the head included), against the fp32 and bf16 matmul peaks measured in
the same run.
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

from common import emit_result, load_average, machine_line, median, now, run_worker, table, warn_if_busy  # noqa: E402

SETUPS = {
    # name: (gpt-tui preset, reference config overrides, batch size)
    "gpt2-small": ("gpt2-small", dict(emb_dim=768, n_layers=12, n_heads=12, context_length=256, drop_rate=0.1), 2),
    "gpt2-small-b8": ("gpt2-small", dict(emb_dim=768, n_layers=12, n_heads=12, context_length=256, drop_rate=0.1), 8),
    "gpt2-small-b16": ("gpt2-small", dict(emb_dim=768, n_layers=12, n_heads=12, context_length=256, drop_rate=0.1), 16),
    "tiny": ("tiny", dict(emb_dim=128, n_layers=2, n_heads=4, context_length=128, drop_rate=0.0), 8),
}
SEED = 123
WARMUP_STEPS = 2
BIG_BATCH = 8  # from this batch on a step is long: --big-steps apply


def flops_per_token(emb_dim: int, n_layers: int, context_length: int, vocab: int = 50257) -> float:
    matmul_params = n_layers * 12 * emb_dim * emb_dim + vocab * emb_dim
    return 6 * matmul_params + 12 * n_layers * emb_dim * context_length


# --- workers (each in its own process) -------------------------------------------------

def _batches(context: int, batch: int):
    from gpt_tui.engine.data import make_loaders, tokenize_corpus

    splits = make_loaders(tokenize_corpus(None), context_length=context, stride=context, batch_size=batch, train_ratio=0.9, seed=SEED)
    return splits.train.batches(0, 0)


def _reference_model(setup: str):
    import torch

    from reference import ReferenceGPT, reference_config

    torch.manual_seed(SEED)
    return ReferenceGPT(reference_config(**SETUPS[setup][1]))


def _clock(cpu_time: bool):
    """Wall time; or, with ``--cpu-time``, this process's CPU time on one thread (other load hardly moves it)."""
    import torch

    if cpu_time:
        torch.set_num_threads(1)
        return time.process_time
    return time.perf_counter


def worker_reference(setup: str, steps: int, cpu_time: bool) -> None:
    import torch

    from reference import make_optimizer, train_step

    clock = _clock(cpu_time)

    model = _reference_model(setup).train()
    optimizer = make_optimizer(model)
    batches = _batches(SETUPS[setup][1]["context_length"], SETUPS[setup][2])
    times, losses = [], []
    for _ in range(steps):
        inputs, targets = next(batches)
        start = clock()
        losses.append(train_step(model, optimizer, inputs, targets))
        times.append(clock() - start)
    emit_result({"times": times, "losses": losses, "threads": torch.get_num_threads()})


def worker_gpt_tui(setup: str, steps: int, precision: str, workdir: str, cpu_time: bool) -> None:
    from gpt_tui.engine import events as ev
    from gpt_tui.engine.checkpoint import save_checkpoint
    from gpt_tui.engine.model import GPTModel, get_preset
    from gpt_tui.engine.precision import resolve_precision
    from gpt_tui.engine.trainer import TrainConfig, Trainer
    from reference import to_gpt_tui_state

    import torch

    preset, ref_cfg, batch = SETUPS[setup]
    config = get_preset(preset, context_length=ref_cfg["context_length"], drop_rate=ref_cfg["drop_rate"])
    model = GPTModel(config)
    model.load_state_dict(to_gpt_tui_state(_reference_model(setup)))
    init = save_checkpoint(Path(workdir) / f"init-{setup}.safetensors", model)
    del model
    clock = _clock(cpu_time)
    seen: list = []
    stamps: list[float] = []

    def on_event(event: object) -> None:
        if isinstance(event, ev.StepEvent):
            stamps.append(clock())
        seen.append(event)

    train_config = TrainConfig(
        data=None, model=preset, context_length=ref_cfg["context_length"], batch_size=batch, max_steps=steps,
        lr=4e-4, weight_decay=0.1, grad_clip=None, eval_freq=10**9, eval_iter=1, sample_tokens=0, seed=SEED,
        device="cpu", precision=precision, drop_rate=ref_cfg["drop_rate"], run_dir=str(Path(workdir) / f"run-{setup}-{precision}"),
    )
    Trainer(train_config, on_event, init_from=str(init)).run()
    step_events = [e for e in seen if isinstance(e, ev.StepEvent)]
    times = [b - a for a, b in zip(stamps, stamps[1:])]  # from one step's end to the next: the whole loop
    emit_result({
        "times": times,
        "losses": [e.loss for e in step_events],
        "precision": resolve_precision(torch.device("cpu"), precision),
        "threads": torch.get_num_threads(),
    })


def worker_peaks(cpu_time: bool) -> None:
    import torch

    clock = _clock(cpu_time)
    result = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(2048, 2048).to(dtype)
        b = torch.randn(2048, 2048).to(dtype)
        for _ in range(3):
            a @ b
        runs = []
        for _ in range(5):
            start = clock()
            for _ in range(4):
                a @ b
            runs.append((clock() - start) / 4)
        result[name] = 2 * 2048**3 / min(runs)
    emit_result(result)


# --- the table ----------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=14, help="steps per measurement, of which the first 2 are warm-up")
    parser.add_argument("--big-steps", type=int, default=6, help=f"steps per measurement at batch {BIG_BATCH} and above")
    parser.add_argument("--setups", default="gpt2-small,gpt2-small-b8,gpt2-small-b16,tiny")
    parser.add_argument(
        "--cpu-time", action="store_true",
        help="time every side on one thread by its own CPU time: a check that other load on the machine hardly moves",
    )
    parser.add_argument("--worker", nargs="*")
    args = parser.parse_args()
    if args.worker is not None:
        kind, rest, cpu_time = args.worker[0], args.worker[1:], args.cpu_time
        if kind == "reference":
            worker_reference(rest[0], int(rest[1]), cpu_time)
        elif kind == "gpt-tui":
            worker_gpt_tui(rest[0], int(rest[1]), rest[2], rest[3], cpu_time)
        elif kind == "peaks":
            worker_peaks(cpu_time)
        return

    script = Path(__file__).resolve()
    with tempfile.TemporaryDirectory(prefix="gpt-tui-bench-") as workdir:
        env = {f"GPT_TUI_{d}_DIR": str(Path(workdir) / d.lower()) for d in ("CACHE", "DATA", "CONFIG")}
        os.environ.update(env)
        print(f"Bench 1, training on CPU — {now()}")
        print(machine_line())
        print(f"load average at start: {load_average()}")
        warn_if_busy()
        flags = ["--cpu-time"] if args.cpu_time else []

        def work(job: list[str]) -> dict:
            return run_worker(script, job, env, flags=flags)

        if args.cpu_time:
            print("clock: each side's own CPU time on one thread (--cpu-time)")
        peaks = work(["peaks"])
        print(f"matmul peaks measured now (2048², best of 5): fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, "
              f"bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s")
        rows, verdicts = [], []
        for setup in args.setups.split(","):
            preset, ref_cfg, batch = SETUPS[setup]
            steps = args.big_steps if batch >= BIG_BATCH else args.steps
            tokens_per_step = batch * ref_cfg["context_length"]
            fpt = flops_per_token(ref_cfg["emb_dim"], ref_cfg["n_layers"], ref_cfg["context_length"])
            results = {
                "chapter-5 reference (fp32)": work(["reference", setup, str(steps)]),
                "gpt-tui (defaults: auto precision)": work(["gpt-tui", setup, str(steps), "auto", workdir]),
            }
            if preset == "gpt2-small":
                for forced in ("fp32", "bf16"):
                    results[f"gpt-tui --precision {forced}"] = work(["gpt-tui", setup, str(steps), forced, workdir])
            ref_losses = results["chapter-5 reference (fp32)"]["losses"]
            ref_rate = ref_median_rate = None
            for name, result in results.items():
                timed = result["times"][WARMUP_STEPS:]
                rate = tokens_per_step / min(timed)  # the best step: what the code does when nothing else interferes
                median_rate = tokens_per_step / median(timed)
                ref_rate = ref_rate or rate
                ref_median_rate = ref_median_rate or median_rate
                achieved = rate * fpt
                delta = max(abs(a - b) for a, b in zip(result["losses"], ref_losses))
                label = name if "precision" not in result else f"{name} [{result['precision']}]"
                rows.append([
                    f"{setup} b{batch}x{ref_cfg['context_length']}", label, len(timed),
                    f"{min(timed):.3f} / {median(timed):.3f}", f"{rate:,.0f}", f"{rate / ref_rate:.2f}x",
                    f"{median_rate / ref_median_rate:.2f}x", f"{100 * achieved / peaks['fp32']:.0f}%",
                    f"{100 * achieved / peaks['bf16']:.0f}%", f"{result['losses'][-1]:.3f}", f"{delta:.3f}",
                ])
                if preset == "gpt2-small" and name.startswith("gpt-tui (defaults"):
                    verdicts.append(f"{setup} [auto: {result['precision']}] target >= 4.0x the reference: "
                                    f"{rate / ref_rate:.2f}x on best steps, "
                                    f"{median_rate / ref_median_rate:.2f}x on medians -> "
                                    f"{'MET' if rate / ref_rate >= 4.0 else 'MISSED'}")
        print()
        print(table(
            ["setup", "implementation", "steps timed", "s/step best / median", "tokens/s", "vs ref", "vs ref (medians)",
             "MFU fp32", "MFU bf16", "last loss", "max |Δloss| vs ref"],
            rows,
        ))
        print()
        print("tokens/s, MFU and 'vs ref' use each side's best timed step (other load on a shared machine only slows")
        print("steps down); the medians are shown too. gpt-tui's steps include its whole loop (data, schedule, events).")
        print("Δloss compares per-step training losses on the same batches from the same initial weights;")
        print("with dropout (gpt2-small) the two sides draw different masks, so a few hundredths are noise.")
        for line in verdicts:
            print(line)
        print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()
