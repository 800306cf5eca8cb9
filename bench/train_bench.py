"""Bench 1: CPU training speed of gpt-tui against the chapter-5 code, same weights, same batches.

    python bench/train_bench.py            # gpt2-small shape (context 256) at batch 2, 8 and 16, and the tiny preset
    python bench/train_bench.py --steps 8  # fewer steps when time is short
    python bench/train_bench.py --cpu-time --setups gpt2-small,gpt2-small-b8  # one thread, by CPU time
    python bench/train_bench.py --cpu-time --setups gpt2-small-b16            # batch 16 alone (~15 GB)

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

The sides take turns: every round runs each of them once (and the matmul
peaks), so a change in the machine's load during the bench falls on all of
them alike. A setup is skipped, saying so, when the memory it needs is not
available.

MFU uses 6N + 12·L·d·T FLOPs per token (N: parameters of all matmuls,
the head included), against the fp32 and bf16 matmul peaks measured in
the same run. The second table says where each side's step goes: the last
step of every measurement runs under torch's profiler (and is left out of
the timing), which splits it into time in matmuls and time outside them.
From those, "ceiling" is the ratio gpt-tui would reach against the
reference if it spent nothing outside its matmuls: the bound that the
bf16:fp32 matmul peak ratio of the machine and the reference's own
overhead set.
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
REFERENCE = "chapter-5 reference (fp32)"
AUTO = "gpt-tui (defaults: auto precision)"
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addbmm")


def memory_needed_gb(batch: int) -> float:
    """About what the larger side (the reference's fp32 logits and attention maps) holds at gpt2-small, context 256."""
    return 2.0 + 0.85 * batch


def memory_available_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    return None


class StepProfile:
    """torch's profiler around one step: the share of its op time spent in matmuls."""

    def __init__(self) -> None:
        from torch.profiler import ProfilerActivity, profile

        self._prof = profile(activities=[ProfilerActivity.CPU])
        self.active = False

    def start(self) -> None:
        self._prof.start()
        self.active = True

    def matmul_share(self) -> float:
        self._prof.stop()
        self.active = False
        totals = self._prof.key_averages()
        everything = sum(e.self_cpu_time_total for e in totals)
        in_matmuls = sum(e.self_cpu_time_total for e in totals if e.key in MATMUL_OPS)
        return in_matmuls / everything if everything else float("nan")


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
    profiler = StepProfile()
    for step in range(steps):
        inputs, targets = next(batches)
        if step == steps - 1:
            profiler.start()
        start = clock()
        losses.append(train_step(model, optimizer, inputs, targets))
        times.append(clock() - start)
    share = profiler.matmul_share()
    emit_result({"times": times[:-1], "losses": losses, "threads": torch.get_num_threads(), "matmul_share": share})


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

    profiler = StepProfile()
    shares: list[float] = []

    def on_event(event: object) -> None:
        if isinstance(event, ev.StepEvent):
            stamps.append(clock())
            if profiler.active:
                shares.append(profiler.matmul_share())
            elif len(stamps) == steps - 1:  # the last step runs profiled (and is not timed)
                profiler.start()
        seen.append(event)

    train_config = TrainConfig(
        data=None, model=preset, context_length=ref_cfg["context_length"], batch_size=batch, max_steps=steps,
        lr=4e-4, weight_decay=0.1, grad_clip=None, eval_freq=10**9, eval_iter=1, sample_tokens=0, seed=SEED,
        device="cpu", precision=precision, drop_rate=ref_cfg["drop_rate"],
        run_dir=tempfile.mkdtemp(prefix=f"run-{setup}-{precision}-", dir=workdir),  # a fresh one every round
    )
    Trainer(train_config, on_event, init_from=str(init)).run()
    step_events = [e for e in seen if isinstance(e, ev.StepEvent)]
    times = [b - a for a, b in zip(stamps, stamps[1:])]  # from one step's end to the next: the whole loop
    emit_result({
        "times": times[:-1],
        "losses": [e.loss for e in step_events],
        "precision": resolve_precision(torch.device("cpu"), precision),
        "threads": torch.get_num_threads(),
        "matmul_share": shares[-1] if shares else float("nan"),
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
    parser.add_argument("--steps", type=int, default=8,
                        help="steps per side and round: the first 2 are warm-up, the last runs profiled (at least 5)")
    parser.add_argument("--big-steps", type=int, default=5, help=f"steps per measurement at batch {BIG_BATCH} and above")
    parser.add_argument("--setups", default="gpt2-small,gpt2-small-b8,gpt2-small-b16,tiny")
    parser.add_argument("--rounds", type=int, default=2, help="rounds in which every side runs once, interleaved")
    parser.add_argument("--forced", default="fp32,bf16", help="precisions gpt-tui also runs forced at gpt2-small ('' for none)")
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

    if min(args.steps, args.big_steps) < 5 or args.rounds < 1:
        parser.error("--steps and --big-steps need at least 5 (2 warm-up, 1 profiled), --rounds at least 1")
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
        print(f"sides interleaved: {args.rounds} round(s), each side once per round, matmul peaks measured every round")
        all_peaks: list[dict] = []
        rows, why_rows, verdicts = [], [], []
        for setup in args.setups.split(","):
            preset, ref_cfg, batch = SETUPS[setup]
            available = memory_available_gb()
            if preset == "gpt2-small" and available is not None and available < memory_needed_gb(batch):
                print(f"{setup}: skipped, it needs about {memory_needed_gb(batch):.0f} GB and {available:.1f} GB is "
                      f"available now; run it alone later (--setups {setup})")
                continue
            steps = args.big_steps if batch >= BIG_BATCH else args.steps
            tokens_per_step = batch * ref_cfg["context_length"]
            fpt = flops_per_token(ref_cfg["emb_dim"], ref_cfg["n_layers"], ref_cfg["context_length"])
            jobs = {
                REFERENCE: ["reference", setup, str(steps)],
                AUTO: ["gpt-tui", setup, str(steps), "auto", workdir],
            }
            if preset == "gpt2-small":
                for forced in filter(None, args.forced.split(",")):
                    jobs[f"gpt-tui --precision {forced}"] = ["gpt-tui", setup, str(steps), forced, workdir]
            results: dict[str, dict] = {}
            for _ in range(args.rounds):
                all_peaks.append(work(["peaks"]))
                for name, job in jobs.items():
                    auto = results.get(AUTO, {}).get("precision")
                    if name == f"gpt-tui --precision {auto}":
                        continue  # what auto already ran
                    merge_round(results.setdefault(name, {}), work(job))
            peaks = {kind: max(p[kind] for p in all_peaks) for kind in ("fp32", "bf16")}
            ref_losses = results[REFERENCE]["losses"]
            ref_rate = ref_median_rate = None
            ref_best = min(results[REFERENCE]["times"])
            for name, result in results.items():
                timed = result["times"]
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
                why_rows.append(why_row(setup, batch, label, result, min(timed), None if name == REFERENCE else ref_best,
                                        tokens_per_step * fpt, peaks))
                if preset == "gpt2-small" and name.startswith("gpt-tui (defaults"):
                    verdicts.append(f"{setup} [auto: {result['precision']}] target >= 4.0x the reference: "
                                    f"{rate / ref_rate:.2f}x on best steps, "
                                    f"{median_rate / ref_median_rate:.2f}x on medians -> "
                                    f"{'MET' if rate / ref_rate >= 4.0 else 'MISSED'} (ceiling with nothing outside "
                                    f"matmuls {why_rows[-1][-1]}; bf16:fp32 matmul peak {peaks['bf16'] / peaks['fp32']:.2f}x)")
        if not rows:
            return
        peaks = {kind: max(p[kind] for p in all_peaks) for kind in ("fp32", "bf16")}
        print(f"matmul peaks (2048², best over {len(all_peaks)} rounds): fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, "
              f"bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s, bf16:fp32 {peaks['bf16'] / peaks['fp32']:.2f}x")
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
        print()
        print("Where a step goes (the profiled last step of each measurement, scaled to the best step):")
        print(table(
            ["setup", "implementation", "in matmuls", "matmul s/step", "outside matmuls s/step",
             "matmuls at % of their peak", "ceiling vs ref"],
            why_rows,
        ))
        print("'matmuls at % of their peak': the step's FLOPs over its time in matmuls, against the 2048² peak of the")
        print("format it computes in. 'ceiling vs ref': the reference's best step over this side's matmul time alone,")
        print("the ratio it would reach with nothing outside its matmuls. A forced precision that auto already picked")
        print("is not run twice.")
        for line in verdicts:
            print(line)
        print(f"load average at end: {load_average()}")


def merge_round(into: dict, result: dict) -> None:
    """One round's measurement added to a side's: its timed steps pooled, the first round's losses kept."""
    timed = result["times"][WARMUP_STEPS:]
    if "times" not in into:
        into.update(result, times=list(timed), matmul_shares=[result["matmul_share"]])
        return
    into["times"].extend(timed)
    into["matmul_shares"].append(result["matmul_share"])


def why_row(setup: str, batch: int, label: str, result: dict, best: float, ref_best: float | None, flops: float,
            peaks: dict) -> list:
    share = median(result["matmul_shares"])
    in_matmuls = share * best
    kind = "bf16" if result.get("precision", "fp32") == "bf16" else "fp32"
    at_peak = flops / in_matmuls / peaks[kind] if in_matmuls else float("nan")
    return [
        f"{setup} b{batch}", label, f"{100 * share:.0f}%", f"{in_matmuls:.3f}", f"{best - in_matmuls:.3f}",
        f"{100 * at_peak:.0f}% of {kind}", f"{ref_best / in_matmuls:.2f}x" if in_matmuls and ref_best else "-",
    ]

if __name__ == "__main__":
    main()
